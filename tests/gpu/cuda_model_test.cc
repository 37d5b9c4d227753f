// The model over the CUDA kernels against the model over the CPU kernels:
// the same parameters and batch give the same loss and gradients, to the
// BF16 tensor-core tolerance of the matmuls, for the dense decoder and for
// a GLaM-style MoE (experts replicated). Skips without a CUDA device.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "kernels/cuda/device.h"
#include "worker/trainer/model.h"
#include "worker/trainer/model_cuda.h"
#include "worker/trainer/rng.h"

namespace vigil::trainer {
namespace {

class CudaModel : public ::testing::TestWithParam<int> {
 protected:
  void SetUp() override {
    std::string why;
    if (!kernels::cuda::DeviceAvailable(&why)) GTEST_SKIP() << "no CUDA device here: " << why;
  }
};

TEST_P(CudaModel, MatchesTheCpuModel) {
  ModelConfig cfg{64, 16, 32, 2, 4, false};
  cfg.experts = GetParam();
  DecoderModel cpu(cfg);
  CudaDecoderModel gpu(cfg);
  cpu.InitParameters(7, 0.05f);
  gpu.InitParameters(7, 0.05f);
  const int B = 3, T = 16;
  std::vector<int32_t> in(B * T), tgt(B * T);
  Rng rng(5);
  for (auto& x : in) x = static_cast<int32_t>(rng.Next() % 64);
  for (auto& x : tgt) x = static_cast<int32_t>(rng.Next() % 64);
  const float lc = cpu.ForwardBackward(in.data(), tgt.data(), B, T);
  const float lg = gpu.ForwardBackward(in.data(), tgt.data(), B, T);
  EXPECT_NEAR(lg, lc, 1e-2 * lc);
  EXPECT_NEAR(gpu.aux_loss(), cpu.aux_loss(), 1e-2 * (cpu.aux_loss() + 1e-6));
  std::vector<float> g(gpu.grads().size());
  kernels::CudaKernels::ToHost(g.data(), gpu.grads().data(), g.size());
  ASSERT_EQ(g.size(), cpu.grads().size());
  double num = 0, den = 0;
  for (size_t i = 0; i < g.size(); ++i) {
    num += (g[i] - cpu.grads()[i]) * (g[i] - cpu.grads()[i]);
    den += cpu.grads()[i] * cpu.grads()[i];
  }
  // Relative L2 error of the whole gradient: BF16 products carry ~8 bits.
  EXPECT_LT(std::sqrt(num / den), 3e-2);
}

INSTANTIATE_TEST_SUITE_P(DenseAndMoe, CudaModel, ::testing::Values(0, 4));

}  // namespace
}  // namespace vigil::trainer
