#!/usr/bin/env bash
# Instructions per dispatch, counted by callgrind (independent of the machine's load): runs
# `examples/dispatch_instructions.rs` in each mode at 0 and at N dispatches and prints
# (count at N - count at 0) / N, and the dispatcher's overhead over calling the handler directly.
#
#   crates/telehook-core/benches/dispatch-instructions.sh [N]   (default 10000)
set -euo pipefail
n=${1:-10000}
root=$(cd "$(dirname "$0")/../../.." && pwd)
cd "$root"
if ! out=$(cargo build --release -p telehook-core --example dispatch_instructions 2>&1); then
  echo "$out" >&2
  exit 1
fi
bin=${CARGO_TARGET_DIR:-$root/target}/release/examples/dispatch_instructions
count() {
  valgrind --tool=callgrind --callgrind-out-file=/dev/null "$bin" "$1" "$2" 2>&1 |
    sed -n 's/.*Collected : \([0-9]*\).*/\1/p'
}
declare -A per
for mode in direct webhook webhook-update; do
  zero=$(count "$mode" 0)
  full=$(count "$mode" "$n")
  per[$mode]=$(((full - zero) / n))
done
echo "| mode | instructions per dispatch (N = $n) |"
echo "|---|---|"
echo "| echo on its own struct, called directly (parse + handler + reply bytes) | ${per[direct]} |"
echo "| the same echo through the webhook dispatcher | ${per[webhook]} |"
echo "| dispatcher overhead (difference) | $((per[webhook] - per[direct])) |"
echo "| echo on the light \`Update\` view through the dispatcher | ${per[webhook-update]} |"
