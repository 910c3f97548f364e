#!/usr/bin/env bash
# Installs peftc's build and test dependencies from Debian (idempotent).
set -euo pipefail
PKGS=(cmake make gcc g++ clang pkg-config llvm-19-dev llvm-19-tools libdnnl-dev libffi-dev libcunit1-dev
      libpcre2-dev libjansson-dev libzstd-dev libicu-dev)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
