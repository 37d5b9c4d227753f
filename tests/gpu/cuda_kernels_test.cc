// Every CUDA kernel against its CPU twin (the reference, itself checked
// against finite differences in tests/unit/kernels_test.cc) on random inputs.
// Tolerances: matmuls run BF16 tensor-core arithmetic on FP32 data, so they
// match to about 1% (8 mantissa bits); everything else is FP32 and matches to
// rounding (1e-5 relative). Skips cleanly without a CUDA device.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <vector>

#include <cuda_runtime.h>

#include "kernels/cpu/activation.h"
#include "kernels/cpu/attention.h"
#include "kernels/cpu/cross_entropy.h"
#include "kernels/cpu/embedding.h"
#include "kernels/cpu/layernorm.h"
#include "kernels/cpu/matmul.h"
#include "kernels/cpu/optimizer.h"
#include "kernels/cpu/top2_gating.h"
#include "kernels/cuda/activation.h"
#include "kernels/cuda/attention.h"
#include "kernels/cuda/cross_entropy.h"
#include "kernels/cuda/device.h"
#include "kernels/cuda/embedding.h"
#include "kernels/cuda/layernorm.h"
#include "kernels/cuda/matmul.h"
#include "kernels/cuda/optimizer.h"
#include "kernels/cuda/top2_gating.h"
#include "worker/trainer/rng.h"

namespace vigil::kernels {
namespace {

// A device copy of a host vector; Get() brings it back.
template <typename T>
class Device {
 public:
  explicit Device(const std::vector<T>& host) : n_(host.size()) {
    EXPECT_EQ(cudaMalloc(&ptr_, sizeof(T) * (n_ ? n_ : 1)), cudaSuccess);
    EXPECT_EQ(cudaMemcpy(ptr_, host.data(), sizeof(T) * n_, cudaMemcpyHostToDevice), cudaSuccess);
  }
  ~Device() { cudaFree(ptr_); }
  Device(const Device&) = delete;
  Device& operator=(const Device&) = delete;
  T* get() { return ptr_; }
  std::vector<T> Get() const {
    std::vector<T> host(n_);
    EXPECT_EQ(cudaMemcpy(host.data(), ptr_, sizeof(T) * n_, cudaMemcpyDeviceToHost), cudaSuccess);
    return host;
  }

 private:
  T* ptr_ = nullptr;
  size_t n_;
};

std::vector<float> Random(size_t n, uint64_t seed, float scale) {
  trainer::Rng rng(seed);
  std::vector<float> v(n);
  for (auto& x : v) x = static_cast<float>((rng.Uniform() * 2.0 - 1.0) * scale);
  return v;
}

void ExpectClose(const std::vector<float>& gpu, const std::vector<float>& cpu, double atol,
                 double rtol, const char* what) {
  ASSERT_EQ(gpu.size(), cpu.size()) << what;
  for (size_t i = 0; i < gpu.size(); ++i) {
    ASSERT_NEAR(gpu[i], cpu[i], atol + rtol * std::fabs(cpu[i])) << what << " element " << i;
  }
}

constexpr double kFp32 = 1e-5, kBf16 = 2e-2;

class CudaKernels : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string why;
    if (!cuda::DeviceAvailable(&why)) GTEST_SKIP() << "no CUDA device here: " << why;
  }
};

TEST_F(CudaKernels, Matmul) {
  const int M = 37, K = 64, N = 48;
  auto x = Random(M * K, 1, 1.0f), w = Random(N * K, 2, 1.0f), b = Random(N, 3, 1.0f),
       dy = Random(M * N, 4, 1.0f);
  std::vector<float> out(M * N), dx(M * K, 0.5f), dw(N * K, 0.25f), db(N, 1.0f);
  Device<float> gx(x), gw(w), gb(b), gdy(dy), gout(out), gdx(dx), gdw(dw), gdb(db);
  cpu::MatmulForward(out.data(), x.data(), w.data(), b.data(), M, K, N);
  cuda::MatmulForward(gout.get(), gx.get(), gw.get(), gb.get(), M, K, N);
  ExpectClose(gout.Get(), out, kBf16, kBf16, "matmul forward");
  cpu::MatmulBackward(dx.data(), dw.data(), db.data(), dy.data(), x.data(), w.data(), M, K, N);
  cuda::MatmulBackward(gdx.get(), gdw.get(), gdb.get(), gdy.get(), gx.get(), gw.get(), M, K, N);
  ExpectClose(gdx.Get(), dx, kBf16, kBf16, "matmul dinp");
  ExpectClose(gdw.Get(), dw, kBf16, kBf16, "matmul dweight");
  ExpectClose(gdb.Get(), db, kFp32, kFp32, "matmul dbias");
}

TEST_F(CudaKernels, LayerNorm) {
  const int N = 19, C = 96;
  auto x = Random(N * C, 5, 3.0f), w = Random(C, 6, 1.0f), b = Random(C, 7, 1.0f),
       dy = Random(N * C, 8, 1.0f);
  std::vector<float> out(N * C), mean(N), rstd(N), dx(N * C, 0.0f), dw(C, 0.0f), db(C, 0.0f);
  Device<float> gx(x), gw(w), gb(b), gdy(dy), gout(out), gmean(mean), grstd(rstd), gdx(dx), gdw(dw),
      gdb(db);
  cpu::LayerNormForward(out.data(), mean.data(), rstd.data(), x.data(), w.data(), b.data(), N, C);
  cuda::LayerNormForward(gout.get(), gmean.get(), grstd.get(), gx.get(), gw.get(), gb.get(), N, C);
  ExpectClose(gout.Get(), out, 1e-5, 1e-4, "layernorm forward");
  ExpectClose(grstd.Get(), rstd, 1e-5, 1e-4, "layernorm rstd");
  cpu::LayerNormBackward(dx.data(), dw.data(), db.data(), dy.data(), x.data(), w.data(),
                         mean.data(), rstd.data(), N, C);
  cuda::LayerNormBackward(gdx.get(), gdw.get(), gdb.get(), gdy.get(), gx.get(), gw.get(),
                          gmean.get(), grstd.get(), N, C);
  ExpectClose(gdx.Get(), dx, 1e-5, 1e-4, "layernorm dinp");
  ExpectClose(gdw.Get(), dw, 1e-5, 1e-4, "layernorm dweight");
  ExpectClose(gdb.Get(), db, 1e-5, 1e-4, "layernorm dbias");
}

TEST_F(CudaKernels, Activations) {
  const long n = 1000;
  auto x = Random(n, 9, 3.0f), dy = Random(n, 10, 1.0f);
  for (bool gelu : {true, false}) {
    std::vector<float> out(n), dx(n, 0.1f);
    Device<float> gx(x), gdy(dy), gout(out), gdx(dx);
    if (gelu) {
      cpu::GeluForward(out.data(), x.data(), n);
      cuda::GeluForward(gout.get(), gx.get(), n);
      cpu::GeluBackward(dx.data(), x.data(), dy.data(), n);
      cuda::GeluBackward(gdx.get(), gx.get(), gdy.get(), n);
    } else {
      cpu::ReluForward(out.data(), x.data(), n);
      cuda::ReluForward(gout.get(), gx.get(), n);
      cpu::ReluBackward(dx.data(), x.data(), dy.data(), n);
      cuda::ReluBackward(gdx.get(), gx.get(), gdy.get(), n);
    }
    ExpectClose(gout.Get(), out, kFp32, kFp32, gelu ? "gelu forward" : "relu forward");
    ExpectClose(gdx.Get(), dx, kFp32, kFp32, gelu ? "gelu backward" : "relu backward");
  }
}

TEST_F(CudaKernels, Embedding) {
  const int B = 3, T = 7, C = 16, V = 11;
  std::vector<int32_t> tokens(B * T);
  trainer::Rng rng(11);
  for (auto& t : tokens) t = static_cast<int32_t>(rng.Next() % 5);  // repeats on purpose
  auto wte = Random(V * C, 12, 1.0f), wpe = Random(T * C, 13, 1.0f), dy = Random(B * T * C, 14, 1);
  std::vector<float> out(B * T * C), dwte(V * C, 0.0f), dwpe(T * C, 0.0f);
  Device<int32_t> gtok(tokens);
  Device<float> gwte(wte), gwpe(wpe), gdy(dy), gout(out), gdwte(dwte), gdwpe(dwpe);
  cpu::EmbeddingForward(out.data(), tokens.data(), wte.data(), wpe.data(), B, T, C);
  cuda::EmbeddingForward(gout.get(), gtok.get(), gwte.get(), gwpe.get(), B, T, C);
  ExpectClose(gout.Get(), out, 0, 0, "embedding forward");
  cpu::EmbeddingBackward(dwte.data(), dwpe.data(), dy.data(), tokens.data(), B, T, C);
  cuda::EmbeddingBackward(gdwte.get(), gdwpe.get(), gdy.get(), gtok.get(), B, T, C);
  ExpectClose(gdwte.Get(), dwte, kFp32, kFp32, "embedding dwte");
  ExpectClose(gdwpe.Get(), dwpe, kFp32, kFp32, "embedding dwpe");
}

TEST_F(CudaKernels, Attention) {
  const int B = 2, T = 9, C = 24, NH = 3;
  auto qkv = Random(B * T * 3 * C, 15, 1.0f), dy = Random(B * T * C, 16, 1.0f);
  std::vector<float> out(B * T * C), att(B * NH * T * T), datt(att.size()), dqkv(qkv.size(), 0.0f);
  Device<float> gqkv(qkv), gdy(dy), gout(out), gatt(att), gdatt(datt), gdqkv(dqkv);
  cpu::AttentionForward(out.data(), att.data(), qkv.data(), B, T, C, NH);
  cuda::AttentionForward(gout.get(), gatt.get(), gqkv.get(), B, T, C, NH);
  ExpectClose(gout.Get(), out, kFp32, 1e-4, "attention forward");
  ExpectClose(gatt.Get(), att, kFp32, 1e-4, "attention probabilities");
  cpu::AttentionBackward(dqkv.data(), datt.data(), dy.data(), qkv.data(), att.data(), B, T, C, NH);
  cuda::AttentionBackward(gdqkv.get(), gdatt.get(), gdy.get(), gqkv.get(), gatt.get(), B, T, C, NH);
  ExpectClose(gdqkv.Get(), dqkv, 1e-5, 1e-4, "attention dqkv");
}

TEST_F(CudaKernels, CrossEntropy) {
  const int N = 13, V = 300;
  auto logits = Random(N * V, 17, 4.0f);
  std::vector<int32_t> targets(N);
  for (int i = 0; i < N; ++i) targets[i] = (i * 37) % V;
  std::vector<float> dlogits(N * V);
  Device<float> glogits(logits), gdlogits(dlogits);
  Device<int32_t> gtargets(targets);
  const float loss =
      cpu::CrossEntropyForwardBackward(dlogits.data(), logits.data(), targets.data(), N, V);
  const float gloss =
      cuda::CrossEntropyForwardBackward(gdlogits.get(), glogits.get(), gtargets.get(), N, V);
  EXPECT_NEAR(gloss, loss, 1e-5 * loss);
  ExpectClose(gdlogits.Get(), dlogits, 1e-7, 1e-4, "cross-entropy dlogits");
}

TEST_F(CudaKernels, OptimizersAndClipping) {
  const long n = 5000;
  auto p = Random(n, 18, 1.0f), g = Random(n, 19, 2.0f), m = Random(n, 20, 0.1f),
       v = Random(n, 21, 0.1f);
  for (auto& x : v) x = std::fabs(x);
  Device<float> gp(p), gg(g), gm(m), gv(v);
  cpu::AdamWUpdate(p.data(), g.data(), m.data(), v.data(), n, 1e-3f, 0.9f, 0.95f, 1e-8f, 0.1f, 7);
  cuda::AdamWUpdate(gp.get(), gg.get(), gm.get(), gv.get(), n, 1e-3f, 0.9f, 0.95f, 1e-8f, 0.1f, 7);
  ExpectClose(gp.Get(), p, 1e-6, 1e-5, "adamw params");
  ExpectClose(gm.Get(), m, 1e-7, 1e-5, "adamw m");
  ExpectClose(gv.Get(), v, 1e-7, 1e-5, "adamw v");
  cpu::SgdUpdate(p.data(), g.data(), n, 0.01f, 0.1f);
  cuda::SgdUpdate(gp.get(), gg.get(), n, 0.01f, 0.1f);
  ExpectClose(gp.Get(), p, 1e-6, 1e-5, "sgd params");
  EXPECT_NEAR(cuda::SumOfSquares(gg.get(), n), cpu::SumOfSquares(g.data(), n),
              1e-9 * cpu::SumOfSquares(g.data(), n));
  const float norm = cpu::ClipGradNorm(g.data(), n, 1.0f);
  EXPECT_NEAR(cuda::ClipGradNorm(gg.get(), n, 1.0f), norm, 1e-5 * norm);
  ExpectClose(gg.Get(), g, 1e-7, 1e-5, "clipped gradients");
}

TEST_F(CudaKernels, Top2GatingDispatchCombine) {
  const int N = 40, E = 8, C = 16, cap = cpu::Top2Capacity(N, E, 0.75);
  auto logits = Random(N * E, 22, 3.0f), x = Random(N * C, 23, 1.0f),
       eout = Random(E * cap * C, 24, 1.0f), dy = Random(N * C, 25, 1.0f);
  std::vector<float> probs(N * E), gate(2 * N), disp(E * cap * C), out(N * C), deout(E * cap * C),
      dgate(2 * N), dlogits(N * E), dx(N * C, 0.0f);
  std::vector<int32_t> expert(2 * N), slot(2 * N);
  Device<float> glogits(logits), gx(x), geout(eout), gdy(dy), gprobs(probs), ggate(gate),
      gdisp(disp), gout(out), gdeout(deout), gdgate(dgate), gdlogits(dlogits), gdx(dx);
  Device<int32_t> gexpert(expert), gslot(slot);
  const float aux = cpu::Top2GatingForward(probs.data(), expert.data(), slot.data(), gate.data(),
                                           logits.data(), N, E, cap);
  const float gaux = cuda::Top2GatingForward(gprobs.get(), gexpert.get(), gslot.get(), ggate.get(),
                                             glogits.get(), N, E, cap);
  EXPECT_NEAR(gaux, aux, 1e-5 * aux);
  EXPECT_EQ(gexpert.Get(), expert);
  EXPECT_EQ(gslot.Get(), slot);
  ExpectClose(ggate.Get(), gate, 1e-7, 1e-5, "gates");
  cpu::MoeDispatchForward(disp.data(), x.data(), expert.data(), slot.data(), N, C, cap, E);
  cuda::MoeDispatchForward(gdisp.get(), gx.get(), gexpert.get(), gslot.get(), N, C, cap, E);
  ExpectClose(gdisp.Get(), disp, 0, 0, "dispatch");
  cpu::MoeCombineForward(out.data(), eout.data(), gate.data(), expert.data(), slot.data(), N, C,
                         cap);
  cuda::MoeCombineForward(gout.get(), geout.get(), ggate.get(), gexpert.get(), gslot.get(), N, C,
                          cap);
  ExpectClose(gout.Get(), out, 1e-6, 1e-5, "combine");
  cpu::MoeCombineBackward(deout.data(), dgate.data(), dy.data(), eout.data(), gate.data(),
                          expert.data(), slot.data(), N, C, cap, E);
  cuda::MoeCombineBackward(gdeout.get(), gdgate.get(), gdy.get(), geout.get(), ggate.get(),
                           gexpert.get(), gslot.get(), N, C, cap, E);
  ExpectClose(gdeout.Get(), deout, 1e-7, 1e-5, "combine dexpert_out");
  ExpectClose(gdgate.Get(), dgate, 1e-6, 1e-4, "combine dgate");
  cpu::Top2GatingBackward(dlogits.data(), dgate.data(), probs.data(), expert.data(), N, E, 0.1f);
  cuda::Top2GatingBackward(gdlogits.get(), gdgate.get(), gprobs.get(), gexpert.get(), N, E, 0.1f);
  ExpectClose(gdlogits.Get(), dlogits, 1e-6, 1e-4, "gating dlogits");
  cpu::MoeDispatchBackward(dx.data(), deout.data(), expert.data(), slot.data(), N, C, cap);
  cuda::MoeDispatchBackward(gdx.get(), gdeout.get(), gexpert.get(), gslot.get(), N, C, cap);
  ExpectClose(gdx.Get(), dx, 1e-6, 1e-5, "dispatch backward");
}

// The same inputs give the same bits, run after run.
TEST_F(CudaKernels, BackwardIsDeterministic) {
  const int B = 2, T = 16, C = 32, NH = 4, V = 50;
  auto qkv = Random(B * T * 3 * C, 26, 1.0f), dy = Random(B * T * C, 27, 1.0f);
  std::vector<int32_t> tokens(B * T);
  for (int i = 0; i < B * T; ++i) tokens[i] = (i * 7) % V;
  std::vector<std::vector<float>> runs;
  for (int r = 0; r < 2; ++r) {
    std::vector<float> att(B * NH * T * T), out(B * T * C), dqkv(qkv.size(), 0.0f),
        dwte(V * C, 0.0f), dwpe(T * C, 0.0f);
    Device<float> gqkv(qkv), gdy(dy), gatt(att), gdatt(att), gout(out), gdqkv(dqkv), gdwte(dwte),
        gdwpe(dwpe);
    Device<int32_t> gtok(tokens);
    cuda::AttentionForward(gout.get(), gatt.get(), gqkv.get(), B, T, C, NH);
    cuda::AttentionBackward(gdqkv.get(), gdatt.get(), gdy.get(), gqkv.get(), gatt.get(), B, T, C,
                            NH);
    cuda::EmbeddingBackward(gdwte.get(), gdwpe.get(), gdy.get(), gtok.get(), B, T, C);
    auto a = gdqkv.Get(), w = gdwte.Get();
    a.insert(a.end(), w.begin(), w.end());
    runs.push_back(a);
  }
  EXPECT_EQ(runs[0], runs[1]);
}

}  // namespace
}  // namespace vigil::kernels
