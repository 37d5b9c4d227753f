#!/usr/bin/env bash
# Everything measured on a GPU machine, in one go (device time is scarce):
# unpacks .gpu-carry (see scripts/gpu-carry.sh), builds the kernels-only
# tree for sm_90, runs the gpu-labelled tests, the single-GPU training-step
# benchmark for both shapes and the PyTorch torch.compile baseline, and
# writes every result under $OUT (default ./gpu-results).
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-gpu-results}
mkdir -p "$out"
root=/tmp/vigil-blas
rm -rf "$root" && mkdir -p "$root"
for deb in .gpu-carry/debs/*.deb; do dpkg -x "$deb" "$root"; done
export LD_LIBRARY_PATH="$root/usr/lib/x86_64-linux-gnu:$root/usr/lib/x86_64-linux-gnu/openblas-openmp:${LD_LIBRARY_PATH:-}"
nvidia-smi -q | head -30 > "$out/device.txt" 2>&1
cmake -S . -B build-gpu -G Ninja -DVIGIL_KERNELS_ONLY=ON -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_CUDA_ARCHITECTURES=90 -DVIGIL_BLAS_ROOT="$root" \
  -DVIGIL_GTEST_SOURCE_DIR="$PWD/.gpu-carry/googletest" > "$out/build.txt" 2>&1 &&
  ninja -C build-gpu -j16 >> "$out/build.txt" 2>&1 || { tail -40 "$out/build.txt"; exit 1; }
(cd build-gpu && ctest -L gpu --output-on-failure) > "$out/gpu-tests.txt" 2>&1
for shape in gpt2-124m opt-125m; do
  build-gpu/bin/gpu_train_step_bench --shape "$shape" > "$out/step-$shape.txt" 2>&1
done
python3 bench/torch_train_step.py > "$out/torch-baseline.txt" 2>&1
tail -n 3 "$out"/*.txt
