#!/usr/bin/env bash
# Prepares what a bare GPU machine lacks for the kernels-only build, in
# .gpu-carry/ (ignored by git; name it in the device tool's `carry`):
# OpenBLAS (OpenMP build) as Debian packages, and GoogleTest's sources.
# Run here, where apt is reachable; bench/gpu_measure.sh unpacks them there.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .gpu-carry/debs
(cd .gpu-carry/debs && apt-get download libopenblas0-openmp libopenblas-openmp-dev libgfortran5)
rm -rf .gpu-carry/googletest
cp -r /usr/src/googletest .gpu-carry/googletest
du -sh .gpu-carry
