// The agent's fence: orders of a coordinator epoch older than the newest
// seen are refused and counted; a newer epoch takes over.
#include "worker/agent/epoch_fence.h"

#include <gtest/gtest.h>

namespace vigil::agent {
namespace {

TEST(EpochFence, ANewerEpochTakesOverAndAnOlderOneIsRefused) {
  EpochFence fence;
  EXPECT_TRUE(fence.Admit(3));
  EXPECT_TRUE(fence.Admit(3)) << "the same vigild, order after order";
  EXPECT_TRUE(fence.Admit(5)) << "a new vigild took the run over";
  EXPECT_EQ(fence.newest(), 5u);
  EXPECT_FALSE(fence.Admit(3)) << "the old one woke from a SIGSTOP";
  EXPECT_FALSE(fence.Admit(4));
  EXPECT_FALSE(fence.Admit(0)) << "no epoch at all, once one is known";
  EXPECT_EQ(fence.refused(), 3u);
  EXPECT_EQ(fence.newest(), 5u) << "refusals change nothing";
  EXPECT_TRUE(fence.Admit(5));
}

TEST(EpochFence, BeforeAnyEpochAnythingIsAdmitted) {
  EpochFence fence;
  EXPECT_TRUE(fence.Admit(0));
  EXPECT_EQ(fence.newest(), 0u);
  EXPECT_TRUE(fence.Admit(1));
  EXPECT_EQ(fence.refused(), 0u);
}

}  // namespace
}  // namespace vigil::agent
