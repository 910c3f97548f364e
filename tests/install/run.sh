#!/usr/bin/env bash
# ctest "install": installs the build into a temporary prefix and uses it the way a user would,
# from a directory outside the source and build trees:
#   - the installed `peftc --version` (versions; the bundled data found under P/share/peftc),
#   - installed `peftc train`, `eval` and `generate` on the bundled defaults,
#   - the installed `peftc compile` (the installed libpeftc_aot.a and headers) and its executable,
#   - the project beside this script built with find_package(peftc), and main.c built with
#     pkg-config, both run (the data directory given by PEFTC_DATA_DIR),
#   - with strace available: the installed peftc opens nothing in the source or build tree.
# Usage: run.sh BUILD_DIR SOURCE_DIR C_COMPILER LIBDIR DATADIR   (LIBDIR, DATADIR: relative to
# the prefix, as CMake's GNUInstallDirs gives them)
set -euo pipefail
build=$(realpath "$1") src=$(realpath "$2") cc=$3 libdir=$4 datadir=$5
tmp=$(mktemp -d /tmp/peftc-install-test.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
P=$tmp/prefix
fail() { echo "install test: $*" >&2; exit 1; }

cmake --install "$build" --prefix "$P" >/dev/null
cd "$tmp"
unset PEFTC_DATA_DIR
peftc=$P/bin/peftc
data=$(realpath "$P/$datadir")

"$peftc" --version | tee version.txt
grep -Eq '^peftc [0-9]+\.[0-9]+\.[0-9]+$' version.txt || fail "no peftc version"
grep -Eq '^oneDNN [0-9]+\.[0-9]+' version.txt || fail "no oneDNN version"
grep -Eq '^LLVM [0-9]+\.[0-9]+' version.txt || fail "no LLVM version"
grep -qxF "data $data" version.txt || fail "the installed peftc does not use $data"

# the bundled model, tokenizer and tinyshakespeare, found beside the installed executable
"$peftc" train --steps 2 --eval-every 2 --eval-batches 1 --out adapter --quiet
test -f adapter/adapter_model.safetensors || fail "train wrote no adapter"
head -c 20000 "$data/tinyshakespeare/input.txt" > text.txt
"$peftc" eval --adapter adapter --data text.txt --seq 64 --json | tee eval.json
grep -q '"loss"' eval.json || fail "eval printed no loss"
"$peftc" generate --adapter adapter --prompt "ROMEO:" --tokens 12 > gen_cli.txt

# peftc compile from the installed tree; the executable generates what peftc generate does
"$peftc" compile --mode infer --adapter adapter -o gen 2>/dev/null
./gen --prompt "ROMEO:" --tokens 12 > gen_aot.txt
cmp gen_cli.txt gen_aot.txt || fail "the compiled generator differs from peftc generate"

if command -v strace >/dev/null; then
  strace -f -s 4096 -e trace=open,openat,stat,newfstatat,access,execve,readlink -o trace.txt \
    "$peftc" eval --data text.txt --seq 64 >/dev/null
  strace -f -s 4096 -e trace=open,openat,stat,newfstatat,access,execve,readlink -o trace2.txt \
    "$peftc" compile --mode infer -o gen2 2>/dev/null
  if grep -F -e "\"$src/" -e "\"$src\"" -e "\"$build/" -e "\"$build\"" trace.txt trace2.txt; then
    fail "the installed peftc touched the source or build tree (above)"
  fi
fi

# a user's project: find_package(peftc)
cmake -S "$src/tests/install" -B user -DCMAKE_C_COMPILER="$cc" -DCMAKE_PREFIX_PATH="$P" >/dev/null
cmake --build user >/dev/null
./user/peftc_user | tee user.txt
grep -q "LORA is lora" user.txt || fail "find_package build: no LoRA"
PEFTC_DATA_DIR=$data ./user/peftc_user --version | grep -qxF "data $data" || fail "PEFTC_DATA_DIR not used"
PEFTC_DATA_DIR=$data ./user/peftc_user eval --data text.txt --seq 64 --json | grep -q '"loss"' || fail "user eval"

# the same main.c through pkg-config
export PKG_CONFIG_PATH=$P/$libdir/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}
# shellcheck disable=SC2046
"$cc" -std=c17 -o pc_user "$src/tests/install/main.c" $(pkg-config --cflags --libs peftc)
./pc_user | grep -q "LORA is lora" || fail "pkg-config build: no LoRA"
echo "install test: ok"
