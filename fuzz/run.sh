#!/usr/bin/env bash
# Runs the differential fuzz targets (fuzz/README.md) for a bounded time each.
#
#   fuzz/run.sh --quick [target…]    stable Rust, no AFL: replay corpus + regressions + known
#                                    inputs, then a seeded mutation loop, QUICK_SECONDS (3) each
#   fuzz/run.sh [target…]            long run with AFL++ (cargo-afl), one instance at a time:
#                                    each target until EXECS (10,000,000) executions or
#                                    SECONDS_PER_TARGET (5400) seconds, whichever comes first
#
# Disagreeing inputs are saved in $FUZZ_ARTIFACTS (default fuzz/artifacts/).
# Exit status 1 when any input disagreed (quick) or AFL++ saved a crash (long); the inputs are
# replayed and printed escaped. Prints executions per target.
# The long run needs `cargo install cargo-afl` and `cargo afl config --build` (README).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cd "$here"
# The repository's shared target directory (no second one inside the repo).
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$here/../target/fuzz}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

quick=0
if [ "${1:-}" = "--quick" ]; then quick=1; shift; fi
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then targets=(validator typed request lambda vercel); fi

if [ $quick = 1 ]; then
  cargo build --release --locked --bin quick
  exec "$CARGO_TARGET_DIR/release/quick" --seconds "${QUICK_SECONDS:-3}" "${targets[@]}"
fi

command -v cargo-afl >/dev/null || { echo "cargo-afl missing: cargo install cargo-afl && cargo afl config --build" >&2; exit 2; }
cargo afl build --release --features afl --bin afl
cargo build --release --bin quick
execs="${EXECS:-10000000}"
seconds="${SECONDS_PER_TARGET:-5400}"
out="${FUZZ_OUT:-$here/out}"
status=0
printf '%-10s %12s %10s %8s %8s %7s\n' target execs execs/s seconds paths crashes
for t in "${targets[@]}"; do
  in="$out/$t.in"
  rm -rf "$in" && mkdir -p "$in"
  for d in corpus regressions; do
    [ -d "$d/$t" ] && cp "$d/$t"/* "$in"/ 2>/dev/null || true
  done
  # -E: stop after about $execs executions; -V: at most $seconds. Seeds that disagree (the
  # known/ inputs are not seeds) would stop AFL++ at start: they are replayed by --quick.
  AFL_NO_AFFINITY=1 AFL_NO_UI=1 AFL_SKIP_CPUFREQ=1 AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1 AFL_IGNORE_SEED_PROBLEMS=1 \
    AFL_SUPPRESS_ERRORS="${AFL_SUPPRESS_ERRORS:-0}" \
    nice cargo afl fuzz -i "$in" -o "$out/$t" -x json.dict -E "$execs" -V "$seconds" \
    -- "$CARGO_TARGET_DIR/release/afl" "$t" > "$out/$t.log" 2>&1 || true
  stats="$out/$t/default/fuzzer_stats"
  get() { sed -n "s/^$1 *: *//p" "$stats"; }
  crashes=$(get saved_crashes)
  printf '%-10s %12s %10s %8s %8s %7s\n' "$t" "$(get execs_done)" "$(get execs_per_sec)" "$(get run_time)" "$(get corpus_count)" "$crashes"
  if [ "${crashes:-0}" != 0 ]; then
    status=1
    "$CARGO_TARGET_DIR/release/quick" --replay "$t" "$out/$t/default/crashes/"id:* || true
  fi
done
exit $status
