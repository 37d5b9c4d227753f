// vigild cut off from its agents, told apart from hosts failing (isolation.h).
#include "coordinator/isolation.h"

#include <gtest/gtest.h>

namespace vigil::coordinator {
namespace {

constexpr int64_t kWindow = 3'000'000, kGiveUp = 60'000'000;
using Phase = Isolation::Phase;

TEST(Isolation, SomeAgentsSilentAreLostHostsNotACutOff) {
  Isolation iso(kWindow, kGiveUp);
  // (silent past the timeout, quiet for nearly as long, watched)
  EXPECT_FALSE(iso.Silenced(1, 1, 3, 100));
  EXPECT_FALSE(iso.Silenced(2, 2, 3, 100));
  EXPECT_FALSE(iso.Silenced(0, 3, 3, 100)) << "nobody past the timeout yet";
  EXPECT_EQ(iso.phase(), Phase::kNone);
  // One agent alone: vigild cannot tell its own cut from the host's.
  EXPECT_FALSE(iso.Silenced(1, 1, 1, 100));
  EXPECT_FALSE(iso.waiting());
}

TEST(Isolation, EveryAgentSilentWaitsThenHealsWhenOneIsHeard) {
  Isolation iso(kWindow, kGiveUp);
  // The first past the timeout, the others quiet nearly as long (their
  // last heartbeats left at different moments): together.
  ASSERT_TRUE(iso.Silenced(1, 3, 3, 1'000));
  EXPECT_EQ(iso.phase(), Phase::kCutOff);
  EXPECT_EQ(iso.since_us(), 1'000);
  // Another falls silent while cut off (it was connecting): also waited for.
  EXPECT_TRUE(iso.Silenced(2, 2, 2, 2'000));
  EXPECT_FALSE(iso.Ended(50'000'000)) << "no deadline but give-up while nobody is heard";
  EXPECT_TRUE(iso.Heard(5'000'000));
  EXPECT_EQ(iso.phase(), Phase::kHealing);
  EXPECT_FALSE(iso.Heard(5'100'000)) << "only the first starts the window";
  EXPECT_FALSE(iso.Silenced(1, 2, 2, 5'200'000)) << "healing: silence is loss again";
  EXPECT_FALSE(iso.Ended(5'000'000 + kWindow - 1));
  EXPECT_TRUE(iso.Ended(5'000'000 + kWindow));
  EXPECT_FALSE(iso.Ended(5'000'000 + kWindow + 1)) << "once";
  EXPECT_EQ(iso.phase(), Phase::kNone);
}

TEST(Isolation, NobodyHeardIsGivenUpAtTheAgentsGrace) {
  Isolation iso(kWindow, kGiveUp);
  ASSERT_TRUE(iso.Silenced(2, 2, 2, 0));
  EXPECT_FALSE(iso.Ended(kGiveUp - 1));
  EXPECT_TRUE(iso.Ended(kGiveUp));
  EXPECT_FALSE(iso.waiting());
}

TEST(Isolation, ALoopThatStoodStillGivesItsAgentsAWindow) {
  Isolation iso(kWindow, kGiveUp);
  iso.StoodStill(10'000);
  EXPECT_EQ(iso.phase(), Phase::kHealing);
  EXPECT_TRUE(iso.waiting());
  EXPECT_FALSE(iso.Heard(10'500)) << "the loop runs: the window is already open";
  iso.Finish();
  EXPECT_FALSE(iso.waiting());
  EXPECT_FALSE(iso.Ended(10'000 + kWindow));
}

}  // namespace
}  // namespace vigil::coordinator
