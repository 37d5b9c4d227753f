// Single-GPU training-step throughput for the GPT-2-124M shape (or
// OPT-125M), beside cuBLAS BF16 GEMM throughput measured in the same run at
// the model's largest matmul shape, and as MFU against the device's BF16
// dense peak (989 TFLOP/s for an H100 SXM unless --peak-tflops says
// otherwise).
//
//   build/bin/gpu_train_step_bench [--shape gpt2-124m|opt-125m] [--batch B] [--seq T]
//                                  [--steps N] [--peak-tflops P]
//
// A step is forward, backward, global-norm clipping and AdamW, all on the
// device (FP32 master weights, BF16 tensor-core matmuls). FLOPs count
// 6 * N * tokens + attention, the usual MFU accounting.
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "kernels/cuda/device.h"
#include "kernels/cuda/matmul.h"
#include "kernels/cuda/optimizer.h"
#include "worker/trainer/model_cuda.h"
#include "worker/trainer/rng.h"

namespace {

using Clock = std::chrono::steady_clock;

const char* Arg(int argc, char** argv, const char* name, const char* fallback) {
  for (int i = 1; i + 1 < argc; ++i)
    if (std::string(argv[i]) == name) return argv[i + 1];
  return fallback;
}

double Seconds(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

// The model's largest matmul (M tokens x 768 -> 3072) through the same
// kernel the model uses, best of `reps`.
double GemmTflops(int M, int K, int N, int reps) {
  float *a, *w, *out;
  cudaMalloc(&a, sizeof(float) * M * K);
  cudaMalloc(&w, sizeof(float) * N * K);
  cudaMalloc(&out, sizeof(float) * M * N);
  cudaMemset(a, 0, sizeof(float) * M * K);
  cudaMemset(w, 0, sizeof(float) * N * K);
  double best = 0;
  for (int r = 0; r < reps; ++r) {
    cudaDeviceSynchronize();
    const auto t0 = Clock::now();
    for (int i = 0; i < 10; ++i) vigil::kernels::cuda::MatmulForward(out, a, w, nullptr, M, K, N);
    cudaDeviceSynchronize();
    best = std::max(best, 10 * 2.0 * M * N * K / Seconds(t0, Clock::now()) / 1e12);
  }
  cudaFree(a);
  cudaFree(w);
  cudaFree(out);
  return best;
}

}  // namespace

int main(int argc, char** argv) {
  std::string why;
  if (!vigil::kernels::cuda::DeviceAvailable(&why)) {
    std::fprintf(stderr, "gpu_train_step_bench: no CUDA device: %s\n", why.c_str());
    return 2;
  }
  const std::string shape = Arg(argc, argv, "--shape", "gpt2-124m");
  if (shape != "gpt2-124m" && shape != "opt-125m") {
    std::fprintf(stderr, "--shape must be gpt2-124m or opt-125m\n");
    return 2;
  }
  const int B = std::atoi(Arg(argc, argv, "--batch", "16"));
  const int T = std::atoi(Arg(argc, argv, "--seq", "1024"));
  const int steps = std::atoi(Arg(argc, argv, "--steps", "10"));
  const double peak = std::atof(Arg(argc, argv, "--peak-tflops", "989"));
  cudaDeviceProp prop{};
  cudaGetDeviceProperties(&prop, 0);

  const bool opt = shape == "opt-125m";
  vigil::trainer::ModelConfig cfg{opt ? 50272 : 50304, T, 768, 12, 12, opt};
  vigil::trainer::CudaDecoderModel model(cfg);
  model.InitParameters(1, 0.02f);
  const long n = static_cast<long>(model.params().size());
  vigil::kernels::cuda::DeviceVector<float> m, v;
  m.assign(n, 0.0f);
  v.assign(n, 0.0f);
  std::vector<int32_t> in(static_cast<size_t>(B) * T), tgt(in.size());
  vigil::trainer::Rng rng(3);
  for (auto& x : in) x = static_cast<int32_t>(rng.Next() % cfg.vocab);
  for (auto& x : tgt) x = static_cast<int32_t>(rng.Next() % cfg.vocab);

  std::printf("%s on %s: %.1fM parameters, batch %d x seq %d = %d tokens/step\n", shape.c_str(),
              prop.name, n / 1e6, B, T, B * T);
  const double gemm_before = GemmTflops(B * T, 768, 3072, 5);
  double best = 1e30;
  for (int s = 0; s <= steps; ++s) {  // step 0 warms up
    cudaDeviceSynchronize();
    const auto t0 = Clock::now();
    model.ForwardBackward(in.data(), tgt.data(), B, T);
    vigil::kernels::cuda::ClipGradNorm(model.grads().data(), n, 1.0f);
    vigil::kernels::cuda::AdamWUpdate(model.params().data(), model.grads().data(), m.data(),
                                      v.data(), n, 1e-4f, 0.9f, 0.95f, 1e-8f, 0.0f, s + 1);
    cudaDeviceSynchronize();
    const double dt = Seconds(t0, Clock::now());
    if (s > 0) best = std::min(best, dt);
    std::printf("  step %d: %.1f ms\n", s, dt * 1e3);
  }
  const double gemm = std::max(gemm_before, GemmTflops(B * T, 768, 3072, 5));
  const double tokens = static_cast<double>(B) * T;
  const double tflops = model.FlopsPerToken(T) * tokens / best / 1e12;
  std::printf("full step (fwd+bwd+clip+AdamW): %.0f tokens/s, %.1f TFLOP/s, MFU %.1f%% of %.0f\n",
              tokens / best, tflops, 100.0 * tflops / peak, peak);
  std::printf(
      "baseline BF16 GEMM %dx768x3072 (same kernel, same run): %.1f TFLOP/s; step = "
      "%.1f%% of it\n",
      B * T, gemm, 100.0 * tflops / gemm);
  return 0;
}
