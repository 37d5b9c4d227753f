// CPU training-step throughput for a GPT-2-124M-shaped decoder (d_model 768,
// 12 layers, 12 heads, GELU, vocab 50304; or OPT-125M: ReLU, vocab 50272),
// beside OpenBLAS sgemm measured in the same run, on the same cores, at the
// shape of the model's largest matmul. The same shapes as
// examples/gpt2-124m.yaml and examples/opt-125m.yaml.
//
//   build/bin/train_step_bench [--shape gpt2-124m|opt-125m] [--batch B] [--seq T] [--steps N]
//                              [--threads K]
//
// Achieved FLOP/s counts 6 * N_params * tokens + attention (the usual MFU
// accounting), so the ratio to sgemm says how much of the machine's matmul
// ceiling a full step (forward, backward, AdamW) reaches.
#include <cblas.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "kernels/cpu/optimizer.h"
#include "worker/trainer/model.h"
#include "worker/trainer/rng.h"

namespace {

using Clock = std::chrono::steady_clock;

double Seconds(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

int Arg(int argc, char** argv, const char* name, int fallback) {
  for (int i = 1; i + 1 < argc; ++i) {
    if (std::string(argv[i]) == name) return std::atoi(argv[i + 1]);
  }
  return fallback;
}

// sgemm GFLOP/s at out[M,N] = A[M,K] * B[N,K]^T, best of `reps`.
double SgemmGflops(int M, int K, int N, int reps) {
  std::vector<float> a(static_cast<size_t>(M) * K, 0.5f), b(static_cast<size_t>(N) * K, 0.25f),
      c(static_cast<size_t>(M) * N);
  double best = 0;
  for (int r = 0; r < reps; ++r) {
    const auto t0 = Clock::now();
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1.0f, a.data(), K, b.data(), K,
                0.0f, c.data(), N);
    const double s = Seconds(t0, Clock::now());
    best = std::max(best, 2.0 * M * N * K / s / 1e9);
  }
  return best;
}

}  // namespace

int main(int argc, char** argv) {
  const int B = Arg(argc, argv, "--batch", 4), T = Arg(argc, argv, "--seq", 256);
  const int steps = Arg(argc, argv, "--steps", 3), threads = Arg(argc, argv, "--threads", 0);
  if (threads > 0) openblas_set_num_threads(threads);
  const int used_threads = openblas_get_num_threads();

  std::string shape = "gpt2-124m";
  for (int i = 1; i + 1 < argc; ++i)
    if (std::string(argv[i]) == "--shape") shape = argv[i + 1];
  if (shape != "gpt2-124m" && shape != "opt-125m") {
    std::fprintf(stderr, "--shape must be gpt2-124m or opt-125m\n");
    return 2;
  }
  const bool opt = shape == "opt-125m";
  vigil::trainer::ModelConfig cfg{opt ? 50272 : 50304, T, 768, 12, 12, opt};
  vigil::trainer::DecoderModel model(cfg);
  model.InitParameters(1, 0.02f);
  const long n = static_cast<long>(model.params().size());
  std::vector<float> m(n), v(n);
  std::vector<int32_t> in(static_cast<size_t>(B) * T), tgt(in.size());
  vigil::trainer::Rng rng(3);
  for (auto& x : in) x = static_cast<int32_t>(rng.Next() % cfg.vocab);
  for (auto& x : tgt) x = static_cast<int32_t>(rng.Next() % cfg.vocab);

  std::printf("%s shape: %.1fM parameters, batch %d x seq %d = %d tokens/step, %d BLAS threads\n",
              shape.c_str(), n / 1e6, B, T, B * T, used_threads);
  // Baseline first and last, so a machine that changes speed mid-run shows.
  const double sgemm_before = SgemmGflops(B * T, 768, 3072, 5);

  double best_step = 1e30;
  for (int s = 0; s <= steps; ++s) {  // step 0 warms up (allocation, page faults)
    const auto t0 = Clock::now();
    model.ForwardBackward(in.data(), tgt.data(), B, T);
    vigil::kernels::cpu::ClipGradNorm(model.grads().data(), n, 1.0f);
    vigil::kernels::cpu::AdamWUpdate(model.params().data(), model.grads().data(), m.data(),
                                     v.data(), n, 1e-4f, 0.9f, 0.95f, 1e-8f, 0.0f, s + 1);
    const double dt = Seconds(t0, Clock::now());
    if (s > 0) best_step = std::min(best_step, dt);
    std::printf("  step %d: %.3f s\n", s, dt);
  }
  const double sgemm_after = SgemmGflops(B * T, 768, 3072, 5);
  const double sgemm = std::max(sgemm_before, sgemm_after);
  const double tokens = static_cast<double>(B) * T;
  const double gflops = model.FlopsPerToken(T) * tokens / best_step / 1e9;
  std::printf("full step (fwd+bwd+AdamW): %.0f tokens/s, %.1f GFLOP/s achieved\n",
              tokens / best_step, gflops);
  std::printf(
      "baseline sgemm %dx768x3072, same run and threads: %.1f GFLOP/s (before %.1f, after %.1f)\n",
      B * T, sgemm, sgemm_before, sgemm_after);
  std::printf("ratio: %.1f%% of sgemm (target >= 60%%)\n", 100.0 * gflops / sgemm);
  return 0;
}
