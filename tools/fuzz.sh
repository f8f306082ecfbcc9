#!/usr/bin/env bash
# Runs one libFuzzer target for real: tools/fuzz.sh TARGET SECONDS [extra libFuzzer flags]
#   TARGET: fuzz_smtp_reply fuzz_envelope fuzz_dns_wire fuzz_data_encoder fuzz_journal fuzz_config
# Builds the fuzz preset (clang, ASan + UBSan) if needed, then fuzzes with the committed seeds
# (tests/fuzz/corpus/TARGET, read-only) plus a growing work corpus in build/fuzz/corpus/TARGET.
# A crash leaves build/fuzz/artifacts/TARGET-crash-*: add it to the seeds with a fix and a test.
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ $# -lt 2 ]]; then
  echo "usage: tools/fuzz.sh TARGET SECONDS [libFuzzer flags]" >&2
  exit 2
fi
target=$1
seconds=$2
shift 2
cmake --preset fuzz >/dev/null
cmake --build build/fuzz --target "$target"
mkdir -p "build/fuzz/corpus/$target" build/fuzz/artifacts
# FUZZ_JOBS=N runs N fuzzing processes in parallel (logs in fuzz-*.log); default one, in front.
parallel=()
if [[ ${FUZZ_JOBS:-0} -gt 1 ]]; then parallel=(-jobs="$FUZZ_JOBS" -workers="$FUZZ_JOBS"); fi
exec "build/fuzz/tests/fuzz/$target" -max_total_time="$seconds" -max_len=65536 -timeout=10 \
  "${parallel[@]}" -print_final_stats=1 -artifact_prefix="build/fuzz/artifacts/$target-" "$@" \
  "build/fuzz/corpus/$target" "tests/fuzz/corpus/$target"
