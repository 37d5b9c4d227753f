// The watchdog that bounds NCCL collectives, on CPU threads: its probes
// here read flags a test sets where on a GPU they query CUDA events. What
// is tested is its own logic and timing: completed collectives never fire,
// the oldest stuck one fires once, after the timeout and not long after,
// a failure fires at once with its error, and it stops promptly.
#include "worker/trainer/collective_watchdog.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace vigil::trainer {
namespace {

using namespace std::chrono_literals;
using State = CollectiveWatchdog::State;
using Clock = std::chrono::steady_clock;

// Collects expiries (called on the watchdog's thread).
struct Expiries {
  std::mutex mu;
  std::vector<std::string> whats;
  std::vector<Clock::time_point> at;
  CollectiveWatchdog::Expiry Handler() {
    return [this](const std::string& what) {
      std::lock_guard<std::mutex> lock(mu);
      whats.push_back(what);
      at.push_back(Clock::now());
    };
  }
  size_t size() {
    std::lock_guard<std::mutex> lock(mu);
    return whats.size();
  }
};

CollectiveWatchdog::Probe DoneWhen(std::shared_ptr<std::atomic<bool>> flag) {
  return [flag](std::string*) { return *flag ? State::kDone : State::kPending; };
}

TEST(CollectiveWatchdog, CollectivesThatCompleteNeverFire) {
  Expiries expiries;
  {
    CollectiveWatchdog dog(200ms, 10ms, expiries.Handler());
    // A hundred collectives, each done within a few milliseconds: none is
    // ever older than the timeout, though together they take longer.
    for (int i = 0; i < 100; ++i) {
      auto flag = std::make_shared<std::atomic<bool>>(false);
      dog.Watch("allreduce #" + std::to_string(i), DoneWhen(flag));
      std::this_thread::sleep_for(3ms);
      *flag = true;
    }
    const auto deadline = Clock::now() + 2s;
    while (dog.pending() > 0 && Clock::now() < deadline) std::this_thread::sleep_for(5ms);
    EXPECT_EQ(dog.pending(), 0u) << "done collectives are dropped";
    EXPECT_FALSE(dog.expired());
  }
  EXPECT_EQ(expiries.size(), 0u);
}

TEST(CollectiveWatchdog, TheOldestStuckCollectiveFiresOnceAfterTheTimeout) {
  Expiries expiries;
  CollectiveWatchdog dog(300ms, 20ms, expiries.Handler());
  auto first = std::make_shared<std::atomic<bool>>(false);
  auto second = std::make_shared<std::atomic<bool>>(false);
  const auto start = Clock::now();
  dog.Watch("reduce-scatter #1", DoneWhen(first));
  dog.Watch("allgather #2", DoneWhen(second));
  const auto deadline = start + 3s;
  while (!dog.expired() && Clock::now() < deadline) std::this_thread::sleep_for(5ms);
  std::this_thread::sleep_for(200ms);  // it must not fire again
  ASSERT_EQ(expiries.size(), 1u);
  EXPECT_EQ(expiries.whats[0].rfind("reduce-scatter #1 not complete after ", 0), 0u)
      << expiries.whats[0];
  EXPECT_NE(expiries.whats[0].find("limits.collective_timeout_ms 300"), std::string::npos);
  const auto after = std::chrono::duration_cast<std::chrono::milliseconds>(expiries.at[0] - start);
  EXPECT_GE(after.count(), 300);
  EXPECT_LT(after.count(), 300 + 500) << "within the timeout plus a few periods";
}

TEST(CollectiveWatchdog, AnAsynchronousErrorFiresAtOnce) {
  Expiries expiries;
  CollectiveWatchdog dog(60s, 10ms, expiries.Handler());
  auto failed = std::make_shared<std::atomic<bool>>(false);
  dog.Watch("all-to-all #7", [failed](std::string* error) {
    if (!*failed) return State::kPending;
    *error = "NCCL: remote process exited or there was a network error";
    return State::kFailed;
  });
  std::this_thread::sleep_for(50ms);
  EXPECT_EQ(expiries.size(), 0u) << "pending, well inside the timeout";
  const auto start = Clock::now();
  *failed = true;
  while (!dog.expired() && Clock::now() < start + 2s) std::this_thread::sleep_for(2ms);
  ASSERT_EQ(expiries.size(), 1u);
  EXPECT_EQ(expiries.whats[0],
            "all-to-all #7 failed: NCCL: remote process exited or there was a network error");
  EXPECT_LT(expiries.at[0] - start, 500ms);
}

TEST(CollectiveWatchdog, StopsPromptlyWithCollectivesPendingAndRunsItsSetup) {
  Expiries expiries;
  std::atomic<std::thread::id> setup_thread{};
  const auto start = Clock::now();
  {
    CollectiveWatchdog dog(60s, 1s, expiries.Handler(),
                           [&] { setup_thread = std::this_thread::get_id(); });
    dog.Watch("allgather #1", DoneWhen(std::make_shared<std::atomic<bool>>(false)));
    std::this_thread::sleep_for(20ms);
  }
  EXPECT_LT(Clock::now() - start, 500ms) << "the destructor does not wait out the period";
  EXPECT_EQ(expiries.size(), 0u);
  EXPECT_NE(setup_thread.load(), std::thread::id());
  EXPECT_NE(setup_thread.load(), std::this_thread::get_id()) << "setup runs on the watchdog";
}

}  // namespace
}  // namespace vigil::trainer
