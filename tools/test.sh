#!/usr/bin/env bash
# The whole test suite: install dependencies, build (warnings are errors), run every ctest test
# (unit + integration against real servers on 127.0.0.0/8), the lock-free queue stress test
# under ThreadSanitizer, then every libFuzzer target for a few thousand inputs on its corpus
# (the fuzz preset: clang, ASan + UBSan; tools/fuzz.sh TARGET SECONDS fuzzes one for real).
set -euo pipefail
cd "$(dirname "$0")/.."

tools/setup.sh
tools/build.sh release
ctest --test-dir build/release --output-on-failure -j2 --timeout 600

echo "== ThreadSanitizer: lock-free queue stress"
cmake --preset tsan >/dev/null
cmake --build build/tsan -j"$(nproc)" --target queue_mpsc_queue_test
ctest --test-dir build/tsan --output-on-failure -R 'queue\.MpscQueue'

echo "== libFuzzer targets: seed corpora + a few thousand mutations each"
cmake --preset fuzz >/dev/null
cmake --build build/fuzz -j"$(nproc)" --target fuzz_targets
ctest --test-dir build/fuzz --output-on-failure -j2 -R '^fuzz\.'
