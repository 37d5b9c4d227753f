#!/usr/bin/env bash
# Configures and builds vigil.
# Usage: scripts/build.sh [--sanitize | --tsan [TARGET...] | --fuzz]
#   (default)   Release-with-debug-info build in build/
#   --sanitize  AddressSanitizer + UndefinedBehaviorSanitizer build in build-asan/
#   --tsan      ThreadSanitizer build of TARGETs (default: everything) in build-tsan/
#   --fuzz      the fuzz targets (tests/fuzz) with clang's libFuzzer, ASan and UBSan,
#               in build-fuzz/
set -euo pipefail
cd "$(dirname "$0")/.."

dir=build
flags=(-DCMAKE_BUILD_TYPE=RelWithDebInfo)
targets=()
if [ "${1:-}" = "--sanitize" ]; then
  dir=build-asan
  flags=(-DCMAKE_BUILD_TYPE=Debug -DVIGIL_SANITIZE=ON)
elif [ "${1:-}" = "--tsan" ]; then
  dir=build-tsan
  flags=(-DCMAKE_BUILD_TYPE=Debug -DVIGIL_TSAN=ON)
  targets=("${@:2}")
elif [ "${1:-}" = "--fuzz" ]; then
  dir=build-fuzz
  flags=(-DCMAKE_BUILD_TYPE=RelWithDebInfo -DVIGIL_FUZZ=ON -DCMAKE_C_COMPILER=clang-14
         -DCMAKE_CXX_COMPILER=clang++-14)
  targets=(fuzz_frames fuzz_handshake fuzz_job_spec fuzz_playbook fuzz_manifest
           fuzz_http_request fuzz_token_file)
fi
jobs=$(nproc 2>/dev/null || echo 2)
cmake -S . -B "$dir" -G Ninja "${flags[@]}" >/dev/null
ninja -C "$dir" -j"$jobs" "${targets[@]}"
