#!/usr/bin/env bash
# Installs mxburst's build and test dependencies from Debian 12 packages. Idempotent: packages
# already present are not touched, and apt-get runs only when something is missing.
set -euo pipefail

PACKAGES=(
  build-essential cmake ninja-build pkg-config
  liburing-dev libwolfssl-dev libc-ares-dev libabsl-dev
  libbenchmark-dev libgtest-dev libgmock-dev
  libtomlplusplus-dev nlohmann-json3-dev libidn2-dev
  openssl ca-certificates python3
  unbound nsd ldnsutils
)

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "setup: all ${#PACKAGES[@]} packages present"
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
echo "setup: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
