// A host disappears mid-run: its agent is SIGKILLed (connection drops) or
// SIGSTOPped (heartbeats stop). vigild detects it, records a host_lost event
// and the decision taken (no spare host exists yet, so the job fails), and
// no process of the job survives: not the lost agent's ranks, not the others.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "common/fs.h"
#include "common/http_client.h"
#include "common/process.h"
#include "common/util.h"
#include "logbook/logbook.h"
#include "tests/integration/process_util.h"
#include "tests/unit/test_util.h"

namespace vigil {
namespace {

using nlohmann::json;
using std::chrono::milliseconds;
using testing::TempDir;

// The tiny job, long enough to still be running when the fault lands.
constexpr const char* kJob = R"(name: hostlost
model: {d_model: 32, layers: 1, heads: 2, seq_len: 16}
schedule: {steps: 100000, batch_per_rank: 4}
world: {hosts: 2, ranks_per_host: 2}
checkpoint: {every_steps: 50}
limits: {heartbeat_interval_ms: 200, heartbeat_timeout_ms: 1500, kill_grace_ms: 1000}
)";

class HostLostTest : public ::testing::Test {
 protected:
  void StartJob() {
    std::ofstream(dir_ / "job.yaml") << kJob;
    workdir_ = dir_ / "work";
    SpawnOptions o;
    o.argv = {std::string(VIGIL_BIN_DIR) + "/vigil",
              "run",
              dir_ / "job.yaml",
              "--workdir",
              workdir_,
              "-o",
              "json"};
    o.log_file = dir_ / "vigil.out";
    o.parent_death_signal = SIGKILL;
    vigil_ = SpawnProcess(o).value();
    // Wait until the job trains.
    for (int i = 0; i < 600; ++i) {
      if (auto addr = testing::ReadVigildAddress(workdir_)) {
        auto st = HttpGet(addr->http, "/api/v1/status", milliseconds(1000));
        if (st.ok() && json::parse(st->body, nullptr, false).value("step", 0) >= 5) return;
      }
      std::this_thread::sleep_for(milliseconds(50));
    }
    FAIL() << "job never started training: " << testing::Slurp(dir_ / "vigil.out");
  }

  pid_t AgentPid(const std::string& host) {
    for (int pid : testing::ProcessesMentioning(workdir_)) {
      const std::string cmd = testing::Slurp("/proc/" + std::to_string(pid) + "/cmdline");
      if (cmd.find("vigil-agent") != std::string::npos &&
          cmd.find(std::string(1, '\0') + host + '\0') != std::string::npos) {
        return pid;
      }
    }
    return -1;
  }

  // Waits for `vigil run` to end and checks the logbook and the process table.
  void ExpectHostLostAndNothingLeft(const std::string& host, int64_t fault_at_us,
                                    double max_detection_s) {
    int status = 0;
    ASSERT_EQ(::waitpid(vigil_, &status, 0), vigil_);
    vigil_ = -1;
    ASSERT_TRUE(WIFEXITED(status));
    EXPECT_EQ(WEXITSTATUS(status), 1) << "a job that lost a host without a spare must fail";
    auto lb = Logbook::Open(workdir_ + "/logbook.sqlite", false);
    ASSERT_TRUE(lb.ok());
    const auto runs = lb.value()->Runs().value();
    ASSERT_EQ(runs.size(), 1u);
    EXPECT_EQ(runs[0].status, "failed");
    const auto events = lb.value()->Events(runs[0].id).value();
    ASSERT_EQ(events.size(), 1u) << "exactly one detection for one lost host";
    EXPECT_EQ(events[0].kind, "host_lost");
    EXPECT_EQ(events[0].host, host);
    const double detection_s = static_cast<double>(events[0].time_us - fault_at_us) / 1e6;
    EXPECT_GT(detection_s, 0.0);
    EXPECT_LT(detection_s, max_detection_s);
    const auto interventions = lb.value()->Interventions(runs[0].id).value();
    ASSERT_EQ(interventions.size(), 1u);
    EXPECT_EQ(interventions[0].action, "fail_job");
    EXPECT_EQ(interventions[0].event_id, events[0].id);
    // Give the kernel a moment to deliver PDEATHSIGs, then nothing may remain.
    std::vector<int> left;
    for (int i = 0; i < 50; ++i) {
      left = testing::ProcessesMentioning(workdir_);
      if (left.empty()) break;
      std::this_thread::sleep_for(milliseconds(100));
    }
    EXPECT_TRUE(left.empty()) << left.size() << " processes of the job survived, first pid "
                              << left[0];
  }

  void TearDown() override {
    if (vigil_ > 0) {
      ::kill(vigil_, SIGKILL);
      ::waitpid(vigil_, nullptr, 0);
    }
    for (int pid : testing::ProcessesMentioning(workdir_)) ::kill(pid, SIGKILL);
  }

  TempDir dir_;
  std::string workdir_;
  pid_t vigil_ = -1;
};

TEST_F(HostLostTest, KilledAgentIsDetectedWhenItsConnectionDrops) {
  StartJob();
  const pid_t agent = AgentPid("host-1");
  ASSERT_GT(agent, 0);
  const int64_t t = NowMicros();
  ASSERT_EQ(::kill(agent, SIGKILL), 0);
  ExpectHostLostAndNothingLeft("host-1", t, 1.0);
}

TEST_F(HostLostTest, StoppedAgentIsDetectedByHeartbeatTimeout) {
  StartJob();
  const pid_t agent = AgentPid("host-0");
  ASSERT_GT(agent, 0);
  const int64_t t = NowMicros();
  ASSERT_EQ(::kill(agent, SIGSTOP), 0);
  // Heartbeat timeout 1.5 s, checked every 50 ms.
  ExpectHostLostAndNothingLeft("host-0", t, 1.5 + 1.0);
}

}  // namespace
}  // namespace vigil
