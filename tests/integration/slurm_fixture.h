// The one Slurm cluster (slurm_cluster.h) every Slurm test of the binary
// shares: started once, before the first test, by a gtest environment, and
// stopped after the last. Each test leaves it as it found it: its jobs
// cancelled, every node idle.
#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <memory>

#include "tests/integration/slurm_cluster.h"

namespace vigil::testing {

inline constexpr int kSlurmTestNodes = 3;

class SlurmEnvironment : public ::testing::Environment {
 public:
  void SetUp() override {
    if (SlurmCluster::Unavailable().empty())
      cluster = std::make_unique<SlurmCluster>(kSlurmTestNodes);
  }
  void TearDown() override { cluster.reset(); }
  static inline std::unique_ptr<SlurmCluster> cluster;
};

class SlurmTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (const std::string why = SlurmCluster::Unavailable(); !why.empty()) GTEST_SKIP() << why;
    ASSERT_TRUE(SlurmEnvironment::cluster);
    ASSERT_EQ(C().error(), "");
  }
  void TearDown() override {
    if (!SlurmEnvironment::cluster || !C().error().empty()) return;
    SlurmCluster::Sh("scancel --full --quiet $(squeue -h -o %i) 2>/dev/null");
    EXPECT_TRUE(C().WaitIdle(std::chrono::seconds(60)).ok());
  }
  static SlurmCluster& C() { return *SlurmEnvironment::cluster; }
};

}  // namespace vigil::testing
