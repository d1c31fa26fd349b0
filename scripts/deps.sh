#!/usr/bin/env bash
# Installs what kdloss needs on Debian 12 (only the packages that are missing), as root.
# Extra package names may be passed as arguments. libtorch-dev is for the LibTorch adapter's
# example and tests only (kdloss itself needs Eigen alone); without it they are skipped.
set -euo pipefail
pkgs=(cmake ninja-build g++ clang make libeigen3-dev catch2 libbenchmark-dev libtorch-dev "$@")
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "kdloss: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
