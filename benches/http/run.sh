#!/usr/bin/env bash
# HTTP benchmark: each telehook adapter's echo example against the same framework's bare
# handler doing the same work (check the secret, parse the JSON, answer 200 with the echo reply).
# Server pinned to CPU 0, wrk to CPU 1, telehook and bare interleaved, several rounds.
# Writes benches/http/results.md. Not a test; CI does not run it.
#
#   benches/http/run.sh                      # all adapters, defaults
#   ADAPTERS="axum hyper" ROUNDS=5 DURATION=15 benches/http/run.sh
#   RAW=saved.log benches/http/run.sh        # only re-render the table from saved result lines
set -euo pipefail
cd "$(dirname "$0")/../.."

ADAPTERS=${ADAPTERS:-"axum actix warp hyper"}
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}
CONNECTIONS=${CONNECTIONS:-32}
PORT=${PORT:-18080}
SECRET="s3cr3t_T0ken-for-tests"
OUT=benches/http/results.md

command -v wrk >/dev/null || { echo "installing wrk"; apt-get install -y -qq wrk >/dev/null; }
[ "$(nproc)" -ge 2 ] || { echo "needs 2 CPUs (server on 0, wrk on 1)" >&2; exit 1; }

if [ -n "${RAW:-}" ]; then
  raw=$(mktemp)
  grep ' RESULT ' "$RAW" >"$raw"
  ROUNDS=0
else
  for a in $ADAPTERS; do cargo build -q --release -p "$a-echo" --bins; done
  raw=$(mktemp)
fi
trap 'rm -f "$raw"; [ -n "${pid:-}" ] && kill "$pid" 2>/dev/null || true' EXIT

run_one() { # adapter variant round
  local bin="target/release/$1-echo"
  [ "$2" = bare ] && bin="$bin-bare"
  PORT=$PORT TELEHOOK_SECRET=$SECRET RUST_LOG=off taskset -c 0 "$bin" >/dev/null 2>&1 &
  pid=$!
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$PORT/healthz" >/dev/null && break; sleep 0.05; done
  taskset -c 1 wrk -t1 -c"$CONNECTIONS" -d"${WARMUP}s" -s benches/http/post.lua "http://127.0.0.1:$PORT" -- 1 "$SECRET" >/dev/null
  local result cpu0 cpu1
  cpu0=$(awk '{print $14 + $15}' "/proc/$pid/stat") # user + system clock ticks of the server
  result=$(taskset -c 1 wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" --latency -s benches/http/post.lua \
    "http://127.0.0.1:$PORT" -- 100000000 "$SECRET" | grep '^RESULT')
  cpu1=$(awk '{print $14 + $15}' "/proc/$pid/stat")
  local hwm
  hwm=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status")
  kill "$pid"; wait "$pid" 2>/dev/null || true; pid=
  echo "$1 $2 $3 $result hwm_kb=$hwm cpu_ticks=$((cpu1 - cpu0)) hz=$(getconf CLK_TCK)" | tee -a "$raw"
  if ! grep -q "non2xx=0 errors=0" <<<"$result"; then
    echo "error: $1 $2 answered non-2xx or failed requests: $result" >&2; exit 1
  fi
}

for round in $(seq "$ROUNDS"); do
  for a in $ADAPTERS; do
    run_one "$a" telehook "$round"
    run_one "$a" bare "$round"
  done
done

python3 - "$raw" "$OUT" "$([ -n "${RAW:-}" ] && echo "not recorded (table re-rendered from $RAW)" || uptime | sed 's/.*load average: //')" "$(awk '{print $3}' "$raw" | sort -u | wc -l)" "$DURATION" "$CONNECTIONS" <<'PY'
import re, statistics, sys
raw, out, load, rounds, duration, conns = sys.argv[1:]
rows = {}
for line in open(raw):
    adapter, variant, _round, *fields = line.split()
    kv = dict(f.split("=") for f in fields if "=" in f)
    r = rows.setdefault((adapter, variant), {"rps": [], "p50": [], "p99": [], "hwm": [], "cpu": []})
    if "cpu_ticks" in kv:  # server CPU time (user + system) per request, in µs
        r["cpu"].append(int(kv["cpu_ticks"]) * 1e6 / int(kv["hz"]) / int(kv["requests"]))
    r["rps"].append(float(kv["rps"])); r["p50"].append(float(kv["p50_us"]))
    r["p99"].append(float(kv["p99_us"])); r["hwm"].append(int(kv["hwm_kb"]))
med = statistics.median
lines = [
    "# HTTP benchmark: telehook adapters against their bare frameworks", "",
    f"`benches/http/run.sh` — {rounds} interleaved rounds × {duration} s, wrk 1 thread × {conns} connections "
    "pinned to CPU 1, server pinned to CPU 0, fresh `update_id` per request, compact "
    "`message_text_private.json` body, secret header checked. Load average at the end: " + load + ".", "",
    "| adapter | variant | req/s (median) | req/s of each round | p50 | p99 | peak RSS | server CPU per request | req/s ratio | p99 ratio | CPU ratio |",
    "|---|---|---|---|---|---|---|---|---|---|---|",
]
for adapter in dict.fromkeys(a for a, _ in rows):
    t, b = rows.get((adapter, "telehook")), rows.get((adapter, "bare"))
    for variant, r in (("telehook", t), ("bare", b)):
        if not r: continue
        ratio = p99r = cpur = ""
        if variant == "telehook" and b:
            ratio = f"{med(t['rps']) / med(b['rps']):.2f}"
            p99r = f"{med(t['p99']) / med(b['p99']):.2f}"
            if t["cpu"] and b["cpu"]:
                cpur = f"{med(t['cpu']) / med(b['cpu']):.2f}"
        cpu = f"{med(r['cpu']):.1f} µs" if r["cpu"] else "n/a"
        each = " / ".join(f"{v/1000:.1f}k" for v in r["rps"])
        lines.append(f"| {adapter} | {variant} | {med(r['rps']):,.0f} | {each} | {med(r['p50'])/1000:.2f} ms | "
                     f"{med(r['p99'])/1000:.2f} ms | {max(r['hwm'])/1024:.1f} MiB | {cpu} | {ratio} | {p99r} | {cpur} |")
lines += ["", "Ratios are of medians. When the rounds of one row spread by more than about 10 %, the "
          "machine was busy and the req/s ratios are not conclusive: re-run on an idle machine. Server CPU "
          "per request (user + system time of the server process over the measured window) leaves out "
          "time the server spent waiting for the CPU, so it moves less with load than req/s."]
open(out, "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
PY
