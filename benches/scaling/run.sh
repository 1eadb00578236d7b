#!/bin/sh
# The figures of docs/scaling.md (issue 16 §3), regenerated: builds the queue-workers example
# and its harness in release mode, then runs the harness (examples/queue-workers/examples/scaling),
# which starts and stops everything itself on free loopback ports — webhook and worker processes,
# a 3-node nats-server cluster (JetStream, stream with 3 replicas) — and rewrites the table
# between the `figures` markers of docs/scaling.md with the command, the date and the load.
#
#   benches/scaling/run.sh             # everything: about 8 minutes on 2 cores
#   benches/scaling/run.sh --quick     # fewer updates, 10 s overload, 500 updates/s
#   benches/scaling/run.sh --no-nats   # the embedded column only
#   benches/scaling/run.sh --cycles 5  # kill -9 cycles per fault (default 20)
#   benches/scaling/run.sh --no-out    # print the table, leave docs/scaling.md alone
#   benches/scaling/run.sh --only nats-node --cycles 6 --no-out   # one fault on NATS (worker, webhook, nats-node)
#   benches/scaling/run.sh --only nats-node --cycles 20   # rewrites only that row (+ a note under the table)
#   benches/scaling/run.sh --overlap ...   # NATS node kills every 4 s, overlapping (a stress test), instead
#                                          # of each kill once the cluster is healthy and the backlog drained
#   SCALING_KEEP=1 benches/scaling/run.sh ...   # keep each measurement's directory (process logs, run logs)
#   SCALING_LEASE_MS=10000 benches/scaling/run.sh ...   # the workers' lease (default 2000 ms)
#
# Needs nats-server (Debian: apt-get install nats-server; or NATS_SERVER=/path/to/nats-server)
# unless --no-nats. Not part of CI: tests/faults.rs in the example runs a short version there.
set -eu
cd "$(dirname "$0")/../.."
cargo build --release -p queue-workers --bins --examples
SCALING_COMMAND="benches/scaling/run.sh $*" exec target/release/examples/scaling "$@"
