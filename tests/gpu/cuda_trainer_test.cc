// The trainer on a GPU against the trainer on the CPU, one rank each: five
// steps of the same job give the same losses to BF16 tolerance, and a
// checkpoint written from device memory resumes on the CPU. Skips without a
// CUDA device.
#include <gtest/gtest.h>

#include <cmath>

#include "common/job_spec.h"
#include "common/util.h"
#include "kernels/cuda/device.h"
#include "tests/unit/test_util.h"
#include "worker/trainer/trainer.h"
#include "worker/trainer/trainer_cuda.h"

namespace vigil::trainer {
namespace {

TEST(CudaTrainer, MatchesTheCpuTrainerAndShareCheckpoints) {
  std::string why;
  if (!kernels::cuda::DeviceAvailable(&why)) GTEST_SKIP() << "no CUDA device here: " << why;
  auto spec = ParseJobSpec(
      "name: gpu\nmodel: {vocab: 64, d_model: 32, layers: 2, heads: 4, seq_len: 16}\n"
      "schedule: {steps: 10, batch_per_rank: 4}\nworld: {hosts: 1, ranks_per_host: 1}\n",
      "gpu.yaml");
  ASSERT_TRUE(spec.ok()) << spec.status().ToString();
  auto data = MakeDataSource(spec.value());
  ASSERT_TRUE(data.ok());
  vigil::testing::TempDir dir;
  TrainerOptions opts;
  opts.checkpoint_dir = dir.path();
  GlooCollectives single;
  Trainer cpu(spec.value(), opts, *data.value(), &single, MakeLogger("cpu"));
  CudaTrainer gpu(spec.value(), opts, *data.value(), &single, MakeLogger("gpu"));
  cpu.Initialize();
  gpu.Initialize();
  for (int i = 0; i < 5; ++i) {
    const auto a = cpu.Step(), b = gpu.Step();
    EXPECT_NEAR(b.loss, a.loss, 2e-2 * a.loss) << "step " << i;
  }
  auto saved = gpu.Save();
  ASSERT_TRUE(saved.ok()) << saved.status().ToString();
  Trainer resumed(spec.value(), opts, *data.value(), &single, MakeLogger("cpu2"));
  ASSERT_TRUE(resumed.Resume(saved.value()).ok());
  EXPECT_EQ(resumed.step(), 5);
  EXPECT_EQ(resumed.ParamsDigest(), gpu.ParamsDigest());
}

}  // namespace
}  // namespace vigil::trainer
