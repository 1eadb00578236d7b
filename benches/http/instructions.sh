#!/usr/bin/env bash
# CPU instructions per request, telehook adapter against bare framework, counted by valgrind's
# callgrind: unlike requests/s, the count does not depend on what else the machine is doing, so it
# is the figure to compare on a busy machine. Counting starts after start-up and a warm-up, and
# covers exactly the requests wrk sent in the measured window (wrk runs unpinned, 4 connections).
# Two pairs per framework (PAIRS, as in run.sh): `value` = `<a>-echo` against `<a>-echo-bare`
# (serde_json::Value), `struct` = `<a>-echo-struct` against `<a>-echo-bare-struct` (the same
# small struct). Not a test; CI does not run it.
#
#   benches/http/instructions.sh             # all adapters and pairs
#   ADAPTERS="axum" PAIRS=struct ROUNDS=3 DURATION=8 benches/http/instructions.sh
#   BIN_DIR=/tmp/before BUILD=0 OUT=/tmp/before.md benches/http/instructions.sh
#   KEEP=/tmp/profiles benches/http/instructions.sh   # keep each callgrind file (--dump-instr=yes)
#     and its request count: benches/http/profile_diff.py /tmp/profiles/axum-echo-struct.1 \
#     /tmp/profiles/axum-echo-bare-struct.1 lists where the difference per request goes
set -euo pipefail
cd "$(dirname "$0")/../.."

ADAPTERS=${ADAPTERS:-"axum actix warp hyper"}
PAIRS=${PAIRS:-"value struct"}
DURATION=${DURATION:-6}
ROUNDS=${ROUNDS:-1}
PORT=${PORT:-18181}
BIN_DIR=${BIN_DIR:-target/release}
BUILD=${BUILD:-1}
OUT=${OUT:-benches/http/instructions.md}
KEEP=${KEEP:-}
SECRET="s3cr3t_T0ken-for-tests"

command -v wrk >/dev/null || apt-get install -y -qq wrk >/dev/null
command -v valgrind >/dev/null || apt-get install -y -qq valgrind >/dev/null
if [ "$BUILD" = 1 ]; then
  for a in $ADAPTERS; do cargo build -q --release -p "$a-echo" --bins; done
fi
[ -n "$KEEP" ] && mkdir -p "$KEEP"

work=$(mktemp -d)
trap 'rm -rf "$work"; [ -n "${pid:-}" ] && kill "$pid" 2>/dev/null || true' EXIT

count() { # bin round -> "requests instructions"
  local extra=()
  [ -n "$KEEP" ] && extra=(--dump-instr=yes)
  PORT=$PORT TELEHOOK_SECRET=$SECRET RUST_LOG=off valgrind --tool=callgrind "${extra[@]}" \
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
  if [ -n "$KEEP" ]; then
    cp "$work/cg.out.1" "$KEEP/$(basename "$1").$2.out"
    echo "$requests" >"$KEEP/$(basename "$1").$2.requests"
  fi
  rm -f "$work"/cg.out*
  echo "$requests $instructions"
}

variants() { # pair -> its telehook variant, then its bare one (binary <a>-echo-<variant>)
  case $1 in
    value) echo "telehook bare" ;;
    struct) echo "struct bare-struct" ;;
    *) echo "unknown pair $1 (value, struct)" >&2; exit 1 ;;
  esac
}

{
  echo "# HTTP benchmark: instructions per request${LABEL:+ — $LABEL}"
  echo
  echo "\`benches/http/instructions.sh\` — valgrind callgrind, counting only a ${DURATION} s window of"
  echo "wrk load after a warm-up (fresh \`update_id\` per request, compact \`message_text_private.json\`,"
  echo "secret header checked), ${ROUNDS} round(s), binaries from \`$BIN_DIR\`. Instruction counts do not"
  echo "depend on machine load (load average at the start: $(cut -d' ' -f1-3 /proc/loadavg))."
  echo
  echo "| adapter | pair | telehook binary | instr/request | bare binary | instr/request | ratio |"
  echo "|---|---|---|---|---|---|---|"
} >"$OUT"
for a in $ADAPTERS; do
  for pair in $PAIRS; do
    read -r tvar bvar < <(variants "$pair")
    ts="-$tvar" bs="-$bvar"
    [ "$tvar" = telehook ] && ts="" # the telehook echo is `<a>-echo` itself
    tv=() bv=()
    for round in $(seq "$ROUNDS"); do
      read -r tr ti < <(count "$BIN_DIR/$a-echo$ts" "$round")
      read -r br bi < <(count "$BIN_DIR/$a-echo$bs" "$round")
      tv+=("$ti/$tr") bv+=("$bi/$br")
    done
    python3 -c "
import statistics
t = [$(IFS=,; echo "${tv[*]}")]
b = [$(IFS=,; echo "${bv[*]}")]
r = [x / y for x, y in zip(t, b)]
def fmt(v):
    m = statistics.median(v)
    return f'{m:,.0f}' if len(v) == 1 else f'{m:,.0f} ({min(v):,.0f}–{max(v):,.0f})'
ratio = f'{statistics.median(r):.2f}' if len(r) == 1 else f'{statistics.median(r):.2f} ({min(r):.2f}–{max(r):.2f})'
print(f'| $a | $pair | \`$a-echo$ts\` | {fmt(t)} | \`$a-echo$bs\` | {fmt(b)} | {ratio} |')" | tee -a "$OUT"
  done
done
cat "$OUT"
