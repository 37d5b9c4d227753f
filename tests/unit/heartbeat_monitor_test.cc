// Heartbeat loss (coordinator/heartbeat_monitor.h): who is silent past the
// timeout, each once and in agent order; how many have been quiet for a
// while; a beat puts an agent back, Forget stops watching it; and its answers
// stay right when the times passed in go backwards.
#include "coordinator/heartbeat_monitor.h"

#include <gtest/gtest.h>

namespace vigil::coordinator {
namespace {

constexpr int64_t kMs = 1000;

TEST(HeartbeatMonitor, ReportsEachSilentAgentOnceInAgentOrder) {
  HeartbeatMonitor m(3000);
  m.Beat(2, 0);
  m.Beat(0, 100 * kMs);
  m.Beat(1, 200 * kMs);
  EXPECT_EQ(m.watched(), 3u);
  EXPECT_TRUE(m.Silent(3000 * kMs).empty()) << "not past the timeout yet";
  m.Beat(1, 2500 * kMs);  // heard again: watched from now
  EXPECT_EQ(m.Silent(3101 * kMs + 1), (std::vector<int>{0, 2}));
  EXPECT_TRUE(m.Silent(3200 * kMs).empty()) << "each is reported once";
  EXPECT_EQ(m.watched(), 1u);
  EXPECT_EQ(m.Silent(5501 * kMs), std::vector<int>{1});
  EXPECT_EQ(m.watched(), 0u);
}

TEST(HeartbeatMonitor, CountsTheQuietAndForgetsWhatItIsTold) {
  HeartbeatMonitor m(3000);
  for (int a = 0; a < 10; ++a) m.Beat(a, a * 100 * kMs);
  EXPECT_EQ(m.QuietFor(500 * kMs, 1000 * kMs), 6u);  // heard at 0..500 ms
  EXPECT_EQ(m.QuietFor(0, 1000 * kMs), 10u);
  m.Forget(0);
  m.Forget(0);  // twice: nothing more
  m.Beat(1, 1000 * kMs);
  EXPECT_EQ(m.QuietFor(500 * kMs, 1000 * kMs), 4u);  // 2, 3, 4, 5
  EXPECT_EQ(m.watched(), 9u);
}

TEST(HeartbeatMonitor, TimesThatGoBackwardsStillFindTheirPlace) {
  HeartbeatMonitor m(1000);
  m.Beat(0, 5000 * kMs);
  m.Beat(1, 1000 * kMs);  // earlier than the one before it
  m.Beat(2, 3000 * kMs);
  EXPECT_EQ(m.QuietFor(2500 * kMs, 6000 * kMs), 2u);  // 1 and 2
  EXPECT_EQ(m.Silent(4500 * kMs), (std::vector<int>{1, 2}));
  EXPECT_EQ(m.Silent(6001 * kMs), std::vector<int>{0});
}

}  // namespace
}  // namespace vigil::coordinator
