#!/usr/bin/env bash
# Builds peftc and runs every test: CUnit unit tests, lit/FileCheck IR tests and end-to-end runs
# (ctest), then the same unit and IR tests again under AddressSanitizer + UBSan.
# Usage: scripts/test.sh            (set PEFTC_NO_ASAN=1 to skip the sanitizer build)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
jobs=$(nproc 2>/dev/null || echo 2)
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$jobs"
ctest --test-dir build --output-on-failure -j"$jobs" --timeout 900
if [ "${PEFTC_NO_ASAN:-0}" != 1 ]; then
  cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DPEFTC_SANITIZE=ON >/dev/null
  cmake --build build-asan -j"$jobs"
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    ctest --test-dir build-asan --output-on-failure -j"$jobs" --timeout 900 -LE slow
fi
