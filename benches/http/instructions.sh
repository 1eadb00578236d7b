#!/usr/bin/env bash
# CPU instructions per request, telehook adapter against bare framework, counted by valgrind's
# callgrind: unlike requests/s, the count does not depend on what else the machine is doing, so it
# is the figure to compare on a busy machine. Counting starts after start-up and a warm-up, and
# covers exactly the requests wrk sent in the measured window (wrk runs unpinned, 4 connections).
# Not a test; CI does not run it.
#
#   benches/http/instructions.sh             # all adapters
#   ADAPTERS="axum" DURATION=8 benches/http/instructions.sh
set -euo pipefail
cd "$(dirname "$0")/../.."

ADAPTERS=${ADAPTERS:-"axum actix warp hyper"}
DURATION=${DURATION:-6}
PORT=${PORT:-18181}
SECRET="s3cr3t_T0ken-for-tests"
OUT=benches/http/instructions.md

command -v wrk >/dev/null || apt-get install -y -qq wrk >/dev/null
command -v valgrind >/dev/null || apt-get install -y -qq valgrind >/dev/null
for a in $ADAPTERS; do cargo build -q --release -p "$a-echo" --bins; done

work=$(mktemp -d)
trap 'rm -rf "$work"; [ -n "${pid:-}" ] && kill "$pid" 2>/dev/null || true' EXIT

count() { # bin -> "requests instructions"
  PORT=$PORT TELEHOOK_SECRET=$SECRET RUST_LOG=off valgrind --tool=callgrind \
    --callgrind-out-file="$work/cg.out" "$1" >/dev/null 2>"$work/vg.err" &
  pid=$!
  for _ in $(seq 300); do curl -sf "http://127.0.0.1:$PORT/healthz" >/dev/null && break; sleep 0.1; done
  wrk -t1 -c4 -d2s -s benches/http/post.lua "http://127.0.0.1:$PORT" -- 1 "$SECRET" >/dev/null
  callgrind_control -z "$pid" >/dev/null # forget start-up and warm-up
  local result
  result=$(wrk -t1 -c4 -d"${DURATION}s" -s benches/http/post.lua "http://127.0.0.1:$PORT" \
    -- 100000000 "$SECRET" | grep '^RESULT')
  callgrind_control -d "$pid" >/dev/null # the measured window only
  kill -TERM "$pid"; wait "$pid" 2>/dev/null || true; pid=
  grep -q "non2xx=0 errors=0" <<<"$result" || { echo "error: $1: $result" >&2; exit 1; }
  local requests instructions
  requests=$(sed 's/.*requests=\([0-9]*\).*/\1/' <<<"$result")
  instructions=$(awk '/^summary:/ {print $2}' "$work"/cg.out.1)
  rm -f "$work"/cg.out*
  echo "$requests $instructions"
}

{
  echo "# HTTP benchmark: instructions per request"
  echo
  echo "\`benches/http/instructions.sh\` — valgrind callgrind, counting only a ${DURATION} s window of"
  echo "wrk load after a warm-up (fresh \`update_id\` per request, compact \`message_text_private.json\`,"
  echo "secret header checked). Instruction counts do not depend on machine load."
  echo
  echo "| adapter | telehook instr/request | bare instr/request | ratio |"
  echo "|---|---|---|---|"
} >"$OUT"
for a in $ADAPTERS; do
  read -r tr ti < <(count "target/release/$a-echo")
  read -r br bi < <(count "target/release/$a-echo-bare")
  python3 -c "
t, b = $ti / $tr, $bi / $br
print(f'| $a | {t:,.0f} | {b:,.0f} | {t / b:.2f} |')" | tee -a "$OUT"
done
cat "$OUT"
