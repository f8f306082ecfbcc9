#!/usr/bin/env bash
# The bench suite, one command: build release, run the Google Benchmark micro benchmarks
# (medians of 5 repetitions), then the end-to-end table of bench/e2e.py. Measures, never asserts.
# Results are appended to bench/results/<UTC date-time>.txt (gitignored). Only 127.0.0.0/8.
#
#   tools/bench.sh                 # full sizes (100k x 20 KB, 3 runs; ~15-20 minutes on 2 cores)
#   tools/bench.sh --quick         # CI-sized smoke run (~1 minute)
#   tools/bench.sh --postfix       # also bench/compare-postfix.sh (--messages 20000 with --quick: 2000)
#   tools/bench.sh --haraka        # --postfix with Haraka as a third peer (needs node + npm)
#   tools/bench.sh -- --scenarios a --runs 5    # anything after -- goes to bench/e2e.py
set -euo pipefail
cd "$(dirname "$0")/.."

quick=() postfix="" peers=() e2e_args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) quick=(--quick); shift ;;
    --postfix) postfix=1; shift ;;
    --haraka) postfix=1; peers=(--peer haraka); shift ;;
    --) shift; e2e_args=("$@"); break ;;
    -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
    *) echo "bench: unknown option $1 (e2e options go after --)" >&2; exit 2 ;;
  esac
done

tools/setup.sh
tools/build.sh release
export MXB_BUILD_DIR="${MXB_BUILD_DIR:-build/release}"
B="$MXB_BUILD_DIR"

mkdir -p bench/results
out="$PWD/bench/results/$(date -u +%Y-%m-%dT%H%M%SZ)${quick:+-quick}.txt"
{
  echo "# mxburst bench suite, $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
  echo "# machine: $(nproc) cores $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(free -g | awk '/^Mem:/{print $2}') GiB, kernel $(uname -r), load $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "# tree: $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet 2>/dev/null || echo ' (with uncommitted changes)')"
} >"$out"

echo "== micro benchmarks ($B/bench/mxb_micro_bench, medians of 5 repetitions)" | tee -a "$out"
if [ -x "$B/bench/mxb_micro_bench" ]; then
  "$B/bench/mxb_micro_bench" --benchmark_repetitions=5 --benchmark_report_aggregates_only=true \
    2>&1 | tee -a "$out"
else
  echo "(no micro benchmark binary: no bench/*_bench.cc yet)" | tee -a "$out"
fi

echo "== end to end (bench/e2e.py ${quick[*]} ${e2e_args[*]})" | tee -a "$out"
bench/e2e.py "${quick[@]}" --out "$out" "${e2e_args[@]}"

if [ -n "$postfix" ]; then
  n=20000
  [ ${#quick[@]} -gt 0 ] && n=2000
  echo "== Postfix comparison (bench/compare-postfix.sh --messages $n)" | tee -a "$out"
  if [ ${#quick[@]} -gt 0 ]; then
    bench/compare-postfix.sh --messages "$n" --domains 100 "${peers[@]}" --out "$out"
  else
    bench/compare-postfix.sh --messages "$n" "${peers[@]}" --out "$out"
  fi
fi
echo "== results saved in $out"
