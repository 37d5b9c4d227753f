#!/usr/bin/env bash
# Installs every Debian package vigil's build, demo and tests need.
# Idempotent: packages already present are left alone, and apt is not touched
# at all when nothing is missing. Run as root (or through sudo) on Debian 12.
set -euo pipefail

packages=(
  # toolchain
  build-essential cmake ninja-build pkg-config git
  # libraries
  libboost-dev libprotobuf-dev protobuf-compiler libyaml-cpp-dev libspdlog-dev libfmt-dev
  libsqlite3-dev prometheus-cpp-dev libgtest-dev libgmock-dev libgloo-dev
  libopenblas-dev libopenblas-openmp-dev libcli11-dev nlohmann-json3-dev libxxhash-dev
  libssl-dev
  # tools the tests and the demo run for real
  sqlite3 prometheus procps gdb iproute2 util-linux clang-format
  # the fuzz targets: clang with libFuzzer (scripts/build.sh --fuzz)
  clang-14 libclang-rt-14-dev
  # a real Slurm cluster in the tests (munged, slurmctld, slurmd per namespace)
  slurm-wlm munge
  # renders `vigil report`'s page headless, to check it draws
  chromium
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q '^install ok installed$'; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#packages[@]} packages present"
  exit 0
fi

sudo=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "install-deps: run as root (missing: ${missing[*]})" >&2; exit 1; }
  sudo="sudo"
fi

echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -q
$sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
