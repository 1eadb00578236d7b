#!/usr/bin/env bash
# HTTP benchmark: each telehook adapter's echo example against the same framework's bare
# handler doing the same work (check the secret, parse the JSON, answer 200 with the echo reply).
# Two pairs per framework (PAIRS): `value` = `<a>-echo` (telehook's light Update, text read
# through serde_json::Value) against `<a>-echo-bare` (body parsed into serde_json::Value);
# `struct` = `<a>-echo-struct` (the handler takes a small struct of its own as its update type)
# against `<a>-echo-bare-struct` (body parsed into the same small borrowed struct).
# Server pinned to CPU 0, wrk to CPU 1, all variants interleaved, several rounds.
# Writes benches/http/results.md (or OUT). Not a test; CI does not run it.
#
#   benches/http/run.sh                      # all adapters and pairs, defaults
#   ADAPTERS="axum actix" PAIRS=struct ROUNDS=5 DURATION=15 benches/http/run.sh
#   BIN_DIR=/tmp/before BUILD=0 benches/http/run.sh   # binaries built elsewhere (a before/after)
#   RAW=saved.log benches/http/run.sh        # only re-render the table from saved result lines
set -euo pipefail
cd "$(dirname "$0")/../.."

ADAPTERS=${ADAPTERS:-"axum actix warp hyper"}
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}
CONNECTIONS=${CONNECTIONS:-32}
PORT=${PORT:-18080}
PAIRS=${PAIRS:-"value struct"}
BIN_DIR=${BIN_DIR:-target/release}
BUILD=${BUILD:-1}
OUT=${OUT:-benches/http/results.md}
SECRET="s3cr3t_T0ken-for-tests"

command -v wrk >/dev/null || { echo "installing wrk"; apt-get install -y -qq wrk >/dev/null; }
[ "$(nproc)" -ge 2 ] || { echo "needs 2 CPUs (server on 0, wrk on 1)" >&2; exit 1; }

if [ -n "${RAW:-}" ]; then
  raw=$(mktemp)
  grep ' RESULT ' "$RAW" >"$raw"
  ROUNDS=0
else
  if [ "$BUILD" = 1 ]; then
    for a in $ADAPTERS; do cargo build -q --release -p "$a-echo" --bins; done
  fi
  raw=$(mktemp)
fi
trap 'rm -f "$raw"; [ -n "${pid:-}" ] && kill "$pid" 2>/dev/null || true' EXIT

variants() { # pair -> its telehook variant, then its bare one
  case $1 in
    value) echo "telehook bare" ;;
    struct) echo "struct bare-struct" ;;
    *) echo "unknown pair $1 (value, struct)" >&2; exit 1 ;;
  esac
}

cpu0_busy() { # clock ticks CPU 0 spent on anything but idle and iowait
  awk '$1 == "cpu0" {print $2 + $3 + $4 + $7 + $8 + $9}' /proc/stat
}

run_one() { # adapter variant round
  local bin="$BIN_DIR/$1-echo"
  [ "$2" != telehook ] && bin="$bin-$2"
  PORT=$PORT TELEHOOK_SECRET=$SECRET RUST_LOG=off taskset -c 0 "$bin" >/dev/null 2>&1 &
  pid=$!
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$PORT/healthz" >/dev/null && break; sleep 0.05; done
  taskset -c 1 wrk -t1 -c"$CONNECTIONS" -d"${WARMUP}s" -s benches/http/post.lua "http://127.0.0.1:$PORT" -- 1 "$SECRET" >/dev/null
  local result cpu0 cpu1 busy0 busy1
  cpu0=$(awk '{print $14 + $15}' "/proc/$pid/stat") # user + system clock ticks of the server
  busy0=$(cpu0_busy)
  result=$(taskset -c 1 wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" --latency -s benches/http/post.lua \
    "http://127.0.0.1:$PORT" -- 100000000 "$SECRET" | grep '^RESULT')
  cpu1=$(awk '{print $14 + $15}' "/proc/$pid/stat")
  busy1=$(cpu0_busy)
  local hwm
  hwm=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status")
  kill "$pid"; wait "$pid" 2>/dev/null || true; pid=
  # other_ticks: CPU 0's busy time that was not the server's (other processes on the server's
  # core, a sign of contention); load1: the 1-minute load average after the run.
  echo "$1 $2 $3 $result hwm_kb=$hwm cpu_ticks=$((cpu1 - cpu0)) hz=$(getconf CLK_TCK)" \
    "other_ticks=$((busy1 - busy0 - (cpu1 - cpu0))) load1=$(cut -d' ' -f1 /proc/loadavg)" | tee -a "$raw"
  if ! grep -q "non2xx=0 errors=0" <<<"$result"; then
    echo "error: $1 $2 answered non-2xx or failed requests: $result" >&2; exit 1
  fi
}

load_before=$(cut -d' ' -f1-3 /proc/loadavg)
for round in $(seq "$ROUNDS"); do
  for a in $ADAPTERS; do
    for pair in $PAIRS; do
      for variant in $(variants "$pair"); do run_one "$a" "$variant" "$round"; done
    done
  done
done

python3 - "$raw" "$OUT" "$([ -n "${RAW:-}" ] && echo "not recorded (table re-rendered from $RAW)" || echo "${load_before:-?} before, $(cut -d' ' -f1-3 /proc/loadavg) after")" "$(awk '{print $3}' "$raw" | sort -u | wc -l)" "$DURATION" "$CONNECTIONS" "${LABEL:-}" "$BIN_DIR" <<'PY'
import statistics, sys
raw, out, load, rounds, duration, conns, label, bin_dir = sys.argv[1:]
rows = {}
for line in open(raw):
    adapter, variant, _round, *fields = line.split()
    kv = dict(f.split("=") for f in fields if "=" in f)
    r = rows.setdefault((adapter, variant), {"rps": [], "p50": [], "p99": [], "hwm": [], "cpu": [], "other": [], "load": []})
    if "cpu_ticks" in kv:  # server CPU time (user + system) per request, in µs
        r["cpu"].append(int(kv["cpu_ticks"]) * 1e6 / int(kv["hz"]) / int(kv["requests"]))
    if "other_ticks" in kv:  # share of CPU 0 that went to other processes during the window
        r["other"].append(max(0, int(kv["other_ticks"])) / int(kv["hz"]) / float(duration))
    if "load1" in kv:
        r["load"].append(float(kv["load1"]))
    r["rps"].append(float(kv["rps"])); r["p50"].append(float(kv["p50_us"]))
    r["p99"].append(float(kv["p99_us"])); r["hwm"].append(int(kv["hwm_kb"]))
med = statistics.median
# Each telehook variant is compared with the bare variant doing the same work.
baseline = {"telehook": "bare", "struct": "bare-struct"}
order = ["telehook", "bare", "struct", "bare-struct"]
title = "# HTTP benchmark: telehook adapters against their bare frameworks"
lines = [
    title + (f" — {label}" if label else ""), "",
    f"`benches/http/run.sh` — {rounds} interleaved rounds × {duration} s, wrk 1 thread × {conns} connections "
    "pinned to CPU 1, server pinned to CPU 0, fresh `update_id` per request, compact "
    f"`message_text_private.json` body, secret header checked, binaries from `{bin_dir}`. "
    f"Load average (1, 5, 15 min): {load}.", "",
    "Variants: `telehook` = `<a>-echo` (light `Update`, text read through `serde_json::Value`), "
    "`bare` = `<a>-echo-bare` (body parsed into `serde_json::Value`); `struct` = `<a>-echo-struct` "
    "(handler takes a small struct as its update type), `bare-struct` = `<a>-echo-bare-struct` (body "
    "parsed into the same small borrowed struct). Ratios: `telehook`/`bare` and `struct`/`bare-struct`.", "",
    "| adapter | variant | req/s (median) | req/s of each round | p99 | peak RSS | server CPU per request (median; range) | CPU 0 taken by others | load (1 min) | req/s ratio | p99 ratio | CPU ratio (median; range) |",
    "|---|---|---|---|---|---|---|---|---|---|---|---|",
]
def rng(v, fmt):
    return f"{fmt.format(min(v))}–{fmt.format(max(v))}"
for adapter in dict.fromkeys(a for a, _ in rows):
    for variant in order:
        r = rows.get((adapter, variant))
        if not r: continue
        ratio = p99r = cpur = ""
        b = rows.get((adapter, baseline.get(variant, "")))
        if b:
            ratio = f"{med(r['rps']) / med(b['rps']):.2f}"
            p99r = f"{med(r['p99']) / med(b['p99']):.2f}"
            if r["cpu"] and b["cpu"] and len(r["cpu"]) == len(b["cpu"]):
                # Per-round ratios: the two runs of one round saw about the same machine.
                per = [t / u for t, u in zip(r["cpu"], b["cpu"])]
                cpur = f"{med(r['cpu']) / med(b['cpu']):.2f}; {rng(per, '{:.2f}')}"
        cpu = f"{med(r['cpu']):.1f} µs; {rng(r['cpu'], '{:.1f}')}" if r["cpu"] else "n/a"
        other = rng([100 * o for o in r["other"]], "{:.0f}") + " %" if r["other"] else "n/a"
        load1 = rng(r["load"], "{:.1f}") if r["load"] else "n/a"
        each = " / ".join(f"{v/1000:.1f}k" for v in r["rps"])
        lines.append(f"| {adapter} | {variant} | {med(r['rps']):,.0f} | {each} | "
                     f"{med(r['p99'])/1000:.2f} ms | {max(r['hwm'])/1024:.1f} MiB | {cpu} | {other} | {load1} | "
                     f"{ratio} | {p99r} | {cpur} |")
lines += ["", "Ratios are of medians; the CPU ratio's range is of the per-round ratios (the two runs of one "
          "round saw about the same machine). Peak RSS is the server's VmHWM under wrk's overload (32 "
          "connections keep the server's core saturated). When the rounds of one row spread by more than "
          "about 10 %, the machine was busy and the req/s ratios are not conclusive. Server CPU per request "
          "(user + system time of the server process over the measured window) leaves out time the server "
          "spent waiting for the CPU, so it moves less with load than req/s, but a shared core still costs "
          "it cache misses: \"CPU 0 taken by others\" is the share of the server's core that went to other "
          "processes during the window. `benches/http/instructions.sh` gives the load-independent figure."]
open(out, "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
PY
