// A job across hosts that are network namespaces (netns_cluster.h): vigild
// in one, an agent in each of the others, the ranks' Gloo traffic and the
// rendezvous store crossing real veth links, as on a cluster.
//  - vigild listens on 0.0.0.0 and advertises its own interface's address;
//    each agent's ranks bind their host's address; the result is bit-exact
//    with the same job on one machine.
//  - A host whose link is cut is a lost host, detected within the heartbeat
//    timeout (plus a second), and the spare takes its ranks; brought back,
//    its old agent finds itself dropped: its stale ranks are torn down and
//    none of it enters the new world.
//  - vigild cut off from every agent, for longer than the heartbeat timeout,
//    and then reconnected: the run goes on and finishes, bit-exact.
// Each prints the figures it measured (detection, time to train again).
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <fstream>
#include <regex>
#include <set>
#include <sstream>
#include <thread>

#include <nlohmann/json.hpp>

#include "common/http_client.h"
#include "common/process.h"
#include "common/util.h"
#include "logbook/logbook.h"
#include "tests/integration/netns_cluster.h"
#include "tests/integration/process_util.h"
#include "tests/unit/test_util.h"

namespace vigil {
namespace {

using nlohmann::json;
using std::chrono::milliseconds;
using testing::NetnsCluster;
using testing::Slurp;
using testing::TempDir;

constexpr int kHeartbeatTimeoutMs = 1500;
// Long enough that a link cut at step 45 for twice the heartbeat timeout
// ends while the job still trains (about 10 ms a step here).
constexpr int kSteps = 600;

std::string Job(int spares) {
  return "name: multihost\n"
         "model: {d_model: 32, layers: 1, heads: 2, seq_len: 16}\n"
         "schedule: {steps: " +
         std::to_string(kSteps) +
         ", batch_per_rank: 4}\n"
         "world: {hosts: 2, ranks_per_host: 2, spares: " +
         std::to_string(spares) +
         "}\n"
         "checkpoint: {every_steps: 20}\n"
         "limits: {heartbeat_interval_ms: 200, heartbeat_timeout_ms: " +
         std::to_string(kHeartbeatTimeoutMs) + ", kill_grace_ms: 1000}\n";
}

class MultiHost : public ::testing::Test {
 protected:
  // The same job on one machine, over loopback: what every run here must match.
  static void SetUpTestSuite() {
    if (!NetnsCluster::Unavailable().empty()) return;
    TempDir dir;
    std::ofstream(dir / "job.yaml") << Job(0);
    auto r = testing::VigilRun(dir / "job.yaml", dir / "work", "", dir.path());
    ASSERT_EQ(r.exit_code, 0) << r.err;
    reference_digest_ = r.summary.value("params_digest", "");
  }

  void SetUp() override {
    if (const std::string why = NetnsCluster::Unavailable(); !why.empty()) GTEST_SKIP() << why;
    ASSERT_FALSE(reference_digest_.empty());
  }

  void TearDown() override {
    for (pid_t pid : started_) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, nullptr, 0);
    }
    cluster_.reset();  // kills what is left in the namespaces
  }

  // Host 0 runs vigild; hosts 1.. run agents.
  void StartCluster(int hosts) {
    cluster_ = std::make_unique<NetnsCluster>(hosts);
    ASSERT_EQ(cluster_->error(), "");
    workdir_ = dir_ / "work";
  }

  pid_t Spawn(int host, std::vector<std::string> argv, const std::string& log) {
    SpawnOptions o;
    o.argv = cluster_->In(host, std::move(argv));
    o.log_file = log;
    o.parent_death_signal = SIGKILL;
    auto pid = SpawnProcess(o);
    EXPECT_TRUE(pid.ok()) << pid.status().ToString();
    if (!pid.ok()) return -1;
    started_.push_back(pid.value());
    return pid.value();
  }

  void StartVigild(int spares) {
    std::ofstream(dir_ / "job.yaml") << Job(spares);
    std::filesystem::create_directories(workdir_ + "/logs");
    ASSERT_TRUE(WriteTokenFile(workdir_ + "/token").ok());
    vigild_ =
        Spawn(0,
              {std::string(VIGIL_BIN_DIR) + "/vigild", "--job", dir_ / "job.yaml", "--workdir",
               workdir_, "--token-file", workdir_ + "/token", "--listen", "0.0.0.0"},
              workdir_ + "/logs/vigild.log");
    auto addr = testing::WaitForVigildAddress(workdir_, std::chrono::seconds(10));
    ASSERT_TRUE(addr) << Slurp(workdir_ + "/logs/vigild.log");
    addr_ = *addr;
  }

  pid_t StartAgent(int host, const std::string& name) {
    return Spawn(host,
                 {std::string(VIGIL_BIN_DIR) + "/vigil-agent", "--coordinator", addr_.rpc,
                  "--coordinator-file", workdir_ + "/vigild.addr", "--token-file",
                  workdir_ + "/token", "--host", name, "--slots", "2", "--kernel-log", ""},
                 workdir_ + "/logs/agent-" + name + ".log");
  }

  json Status() {
    auto r = ApiGet(workdir_, addr_.http, "/api/v1/status", milliseconds(1000));
    if (!r.ok() || r->status != 200) return json();
    return json::parse(r->body, nullptr, false);
  }

  // Waits until the job trains at or past `step`.
  void WaitForStep(int step) {
    for (int i = 0; i < 1200; ++i) {
      const json s = Status();
      if (s.is_object() && s.value("step", 0) >= step) return;
      std::this_thread::sleep_for(milliseconds(25));
    }
    FAIL() << "never reached step " << step << ": " << Slurp(workdir_ + "/logs/vigild.log");
  }

  // vigild's exit status once the job is over.
  int WaitForVigild() {
    int status = 0;
    for (int i = 0; i < 2400; ++i) {
      if (::waitpid(vigild_, &status, WNOHANG) == vigild_) {
        std::erase(started_, vigild_);
        return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      }
      std::this_thread::sleep_for(milliseconds(50));
    }
    ADD_FAILURE() << "vigild did not finish: " << Slurp(workdir_ + "/logs/vigild.log");
    return -1;
  }

  std::unique_ptr<Logbook> Book() {
    return Logbook::Open(workdir_ + "/logbook.sqlite", false).value();
  }
  RunRow Run() { return Book()->Runs().value().back(); }
  std::vector<GenerationRow> Generations() { return Book()->Generations(Run().id).value(); }
  std::vector<EventRow> Events() { return Book()->Events(Run().id).value(); }

  // The generations `host`'s agent started ranks of, from its own log.
  std::set<int> GenerationsStartedOn(const std::string& host) {
    std::set<int> out;
    const std::string log = Slurp(workdir_ + "/logs/agent-" + host + ".log");
    static const std::regex started("started rank \\d+ of generation (\\d+)");
    for (auto it = std::sregex_iterator(log.begin(), log.end(), started);
         it != std::sregex_iterator(); ++it)
      out.insert(std::stoi((*it)[1]));
    return out;
  }

  static inline std::string reference_digest_;
  TempDir dir_;
  std::string workdir_;
  std::unique_ptr<NetnsCluster> cluster_;
  std::vector<pid_t> started_;
  pid_t vigild_ = -1;
  testing::VigildAddress addr_;
};

TEST_F(MultiHost, TrainsAcrossNamespacesBitExactly) {
  StartCluster(3);
  StartVigild(0);
  // Advertised: its own interface's address, never the wildcard it listens on.
  EXPECT_EQ(addr_.rpc.rfind(cluster_->Address(0) + ":", 0), 0u) << addr_.rpc;
  StartAgent(1, "host-0");
  StartAgent(2, "host-1");
  ASSERT_EQ(WaitForVigild(), 0) << Slurp(workdir_ + "/logs/vigild.log");
  const RunRow run = Run();
  EXPECT_EQ(run.status, "succeeded");
  EXPECT_EQ(run.params_digest, reference_digest_) << "not what one machine computes";
  EXPECT_TRUE(Events().empty());
  // Each rank was handed vigild's advertised store and its own host's address.
  for (int h = 0; h < 2; ++h) {
    const std::string host = "host-" + std::to_string(h);
    const std::string log = Slurp(workdir_ + "/logs/agent-" + host + ".log");
    EXPECT_NE(log.find("ranks bind " + cluster_->Address(h + 1)), std::string::npos) << log;
  }
  const std::string vigild_log = Slurp(workdir_ + "/logs/vigild.log");
  EXPECT_NE(vigild_log.find("listening on 0.0.0.0"), std::string::npos);
  EXPECT_EQ(vigild_log.find("0.0.0.0:"), std::string::npos) << "a wildcard was handed out";
}

TEST_F(MultiHost, CutLinkIsAHostLostTheSpareAnswersAndTheHostComesBackFenced) {
  StartCluster(4);
  StartVigild(1);
  StartAgent(1, "host-0");
  StartAgent(2, "host-1");
  for (int i = 0; i < 400 && Status().value("state", "pending") == "pending"; ++i)
    std::this_thread::sleep_for(milliseconds(25));
  StartAgent(3, "spare-0");
  WaitForStep(45);  // past the second checkpoint

  const int64_t cut_at = NowMicros();
  ASSERT_TRUE(cluster_->SetLink(2, false).ok());
  // Back up once the spare's generation trains: the old agent returns.
  std::optional<GenerationRow> again;
  for (int i = 0; i < 600 && !again; ++i) {
    const auto gens = Generations();
    if (gens.size() >= 2 && gens.back().first_step_at_us) again = gens.back();
    if (!again) std::this_thread::sleep_for(milliseconds(25));
  }
  ASSERT_TRUE(again) << "the spare never trained: " << Slurp(workdir_ + "/logs/vigild.log");
  ASSERT_TRUE(cluster_->SetLink(2, true).ok());
  ASSERT_EQ(WaitForVigild(), 0) << Slurp(workdir_ + "/logs/vigild.log");

  const RunRow run = Run();
  EXPECT_EQ(run.status, "succeeded");
  EXPECT_EQ(run.params_digest, reference_digest_) << "the spare's run is not bit-exact";
  const auto events = Events();
  ASSERT_GE(events.size(), 1u);
  EXPECT_EQ(events[0].kind, "host_lost");
  EXPECT_EQ(events[0].host, "host-1");
  const double detect_ms = static_cast<double>(events[0].time_us - cut_at) / 1000.0;
  const double train_again_ms = static_cast<double>(*again->first_step_at_us - cut_at) / 1000.0;
  EXPECT_LT(detect_ms, kHeartbeatTimeoutMs + 1000.0);
  std::printf(
      "figure: link cut -> host_lost %.0f ms (heartbeat timeout %d ms); -> training again on "
      "the spare %.0f ms\n",
      detect_ms, kHeartbeatTimeoutMs, train_again_ms);
  EXPECT_EQ(again->hosts.find("host-1"), std::string::npos) << again->hosts;
  EXPECT_NE(again->hosts.find("spare-0"), std::string::npos) << again->hosts;
  // The old agent came back, was told its generation is over, and ran no
  // rank of any later one.
  const std::string old_log = Slurp(workdir_ + "/logs/agent-host-1.log");
  EXPECT_NE(old_log.find("re-registered"), std::string::npos) << old_log;
  EXPECT_EQ(GenerationsStartedOn("host-1"),
            (std::set<int>{static_cast<int>(Generations()[0].number)}))
      << old_log;
  for (const auto& g : Generations()) {
    if (g.number != Generations()[0].number) {
      EXPECT_EQ(g.hosts.find("host-1"), std::string::npos) << g.hosts;
    }
  }
}

TEST_F(MultiHost, VigildCutOffFromEveryAgentHealsWithoutLosingTheRun) {
  StartCluster(3);
  StartVigild(0);
  StartAgent(1, "host-0");
  StartAgent(2, "host-1");
  WaitForStep(45);
  ASSERT_TRUE(cluster_->SetLink(0, false).ok());
  std::this_thread::sleep_for(milliseconds(2 * kHeartbeatTimeoutMs));
  ASSERT_TRUE(cluster_->SetLink(0, true).ok());
  // The agents come back to a job that still trains (what is tested here:
  // had it finished meanwhile, there would be nothing to heal into).
  // (The ranks train in lockstep: the first agent's replayed reports bring
  // vigild to about where they are.)
  json back;
  for (int i = 0; i < 400; ++i) {
    back = Status();
    if (back.is_object() && back.value("step", 0) > 45 + 20) break;
    std::this_thread::sleep_for(milliseconds(25));
  }
  ASSERT_TRUE(back.is_object()) << "vigild never answered after the heal";
  EXPECT_EQ(back.value("state", ""), "running") << back.dump();
  EXPECT_LT(back.value("step", 0), kSteps - 50) << back.dump();
  ASSERT_EQ(WaitForVigild(), 0) << Slurp(workdir_ + "/logs/vigild.log");
  const RunRow run = Run();
  EXPECT_EQ(run.status, "succeeded");
  EXPECT_EQ(run.params_digest, reference_digest_);
  // Nothing was torn down: one generation, one event, every host back.
  EXPECT_EQ(Generations().size(), 1u);
  const auto events = Events();
  ASSERT_EQ(events.size(), 1u) << (events.empty() ? "none" : events.back().kind) << "\n"
                               << Slurp(workdir_ + "/logs/vigild.log");
  EXPECT_EQ(events[0].kind, "coordinator_cut_off");
  const json detail = json::parse(events[0].detail_json);
  EXPECT_EQ(detail["hosts_lost"], json::array());
  EXPECT_EQ(detail["hosts_back"].size(), 2u) << detail.dump();
  EXPECT_GE(detail.value("waited_ms", 0), kHeartbeatTimeoutMs / 2) << detail.dump();
  for (const char* host : {"host-0", "host-1"}) {
    const std::string log = Slurp(workdir_ + "/logs/agent-" + host + ".log");
    EXPECT_NE(log.find("re-registered"), std::string::npos) << log;
  }
  std::printf("figure: vigild cut off for %d ms: waited %d ms, both hosts back in place\n",
              2 * kHeartbeatTimeoutMs, detail.value("waited_ms", 0));
}

}  // namespace
}  // namespace vigil
