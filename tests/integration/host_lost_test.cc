// Hosts going away, for real: an agent SIGKILLed (its connection drops), an
// agent SIGSTOPped (its heartbeats stop), a GPU that reports an Xid. vigild
// detects each as one event, and the default playbook answers:
//  - with a spare declared, the spare takes the lost (or cordoned) host's
//    ranks and the run ends bit-exactly, as if nothing had happened;
//  - without one, the job goes on with the hosts left, more sequences per
//    rank keeping the global batch, and grows back when a new host joins;
//  - under a playbook that never shrinks, the job pauses and pages; `vigil
//    resume` is refused until an agent for a new host registers, and then
//    continues the run.
// No rank of a lost host outlives it, and a stopped host that comes back
// finds itself dropped and kills its stale ranks.
#include <gtest/gtest.h>

#include <algorithm>
#include <optional>

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

// The tiny job, with fast heartbeats. SPARES is replaced per test.
constexpr const char* kJob = R"(name: hostlost
model: {d_model: 32, layers: 1, heads: 2, seq_len: 16}
schedule: {steps: 240, batch_per_rank: 4}
world: {hosts: 2, ranks_per_host: 2, spares: SPARES}
checkpoint: {every_steps: 20}
PLAYBOOK
limits: {heartbeat_interval_ms: 200, heartbeat_timeout_ms: 1500, kill_grace_ms: 1000}
)";

std::string Job(int spares, const std::string& playbook = "") {
  std::string job = kJob;
  job.replace(job.find("SPARES"), 6, std::to_string(spares));
  job.replace(job.find("PLAYBOOK"), 8, playbook.empty() ? "" : "playbook: " + playbook);
  return job;
}

// A team that would rather wait for a person than change the batch layout.
constexpr const char* kNeverShrink = R"(version: 1
rules:
  - name: host-lost
    when: {kind: host_lost}
    do: [restart_from_latest, use_spare]
  - name: restart
    when: {kind: any}
    do: [restart_from_latest]
)";

class HostLostTest : public ::testing::Test {
 protected:
  // The digest of an undisturbed run of the job (spares change nothing).
  static void SetUpTestSuite() {
    TempDir dir;
    std::ofstream(dir / "job.yaml") << Job(0);
    auto r = testing::VigilRun(dir / "job.yaml", dir / "work", "", dir.path());
    ASSERT_EQ(r.exit_code, 0) << r.err;
    reference_digest_ = r.summary.value("params_digest", "");
  }

  void StartJob(int spares, const std::vector<std::string>& extra = {},
                const std::string& playbook = "", int from_step = 5) {
    std::ofstream(dir_ / "job.yaml") << Job(spares, playbook);
    workdir_ = dir_ / "work";
    std::vector<std::string> args = {"run", dir_ / "job.yaml", "--workdir", workdir_, "-o", "json"};
    args.insert(args.end(), extra.begin(), extra.end());
    vigil_ = testing::StartVigil(args, dir_ / "vigil.out");
    ASSERT_GT(vigil_, 0);
    // Wait until the job trains.
    for (int i = 0; i < 600; ++i) {
      if (auto addr = testing::ReadVigildAddress(workdir_)) {
        auto st = ApiGet(workdir_, addr->http, "/api/v1/status", milliseconds(1000));
        if (st.ok() && json::parse(st->body, nullptr, false).value("step", 0) >= from_step) return;
      }
      std::this_thread::sleep_for(milliseconds(50));
    }
    FAIL() << "job never started training: " << testing::Slurp(dir_ / "vigil.out");
  }

  // Starts an agent for a new host, as an on-call engineer would.
  pid_t StartAgent(const std::string& host) {
    const auto addr = testing::ReadVigildAddress(workdir_);
    if (!addr) return -1;
    SpawnOptions o;
    o.argv = {std::string(VIGIL_BIN_DIR) + "/vigil-agent",
              "--coordinator",
              addr->rpc,
              "--token-file",
              workdir_ + "/token",
              "--host",
              host,
              "--slots",
              "2"};
    o.log_file = workdir_ + "/logs/agent-" + host + ".log";
    o.parent_death_signal = SIGKILL;
    auto pid = SpawnProcess(o);
    return pid.ok() ? pid.value() : -1;
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

  // The host whose agent runs `rank` in the newest generation.
  std::string HostOfRank(int rank) {
    auto lb = Logbook::Open(workdir_ + "/logbook.sqlite", true).value();
    const auto gens = lb->Generations(lb->Runs().value()[0].id).value();
    std::vector<std::string> hosts;
    std::stringstream ss(gens.back().hosts);
    for (std::string h; std::getline(ss, h, ',');) hosts.push_back(h);
    return hosts.at(static_cast<size_t>(rank / 2));
  }

  // `vigil run`'s exit code and its summary.
  std::pair<int, json> WaitForVigilRun() {
    int status = 0;
    EXPECT_EQ(::waitpid(vigil_, &status, 0), vigil_);
    vigil_ = -1;
    const int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    return {code, json::parse(
                      testing::CommandResult{0, testing::Slurp(dir_ / "vigil.out"), ""}.LastLine(),
                      nullptr, false)};
  }

  std::vector<InterventionRow> Interventions() {
    auto lb = Logbook::Open(workdir_ + "/logbook.sqlite", true).value();
    return lb->Interventions(lb->Runs().value()[0].id).value();
  }
  std::vector<EventRow> Events() {
    auto lb = Logbook::Open(workdir_ + "/logbook.sqlite", true).value();
    return lb->Events(lb->Runs().value()[0].id).value();
  }
  // The actions answering `event`, in order.
  std::vector<std::string> ActionsFor(int64_t event) {
    std::vector<std::string> out;
    for (const auto& i : Interventions())
      if (i.event_id && *i.event_id == event) out.push_back(i.action);
    return out;
  }

  std::vector<int> ProcessesNamed(const std::string& name) {
    std::vector<int> out;
    for (int pid : testing::ProcessesMentioning(workdir_)) {
      if (testing::Slurp("/proc/" + std::to_string(pid) + "/cmdline").find(name) !=
          std::string::npos)
        out.push_back(pid);
    }
    return out;
  }

  void ExpectNothingLeft() {
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

  static inline std::string reference_digest_;
  TempDir dir_;
  std::string workdir_;
  pid_t vigil_ = -1;
};

TEST_F(HostLostTest, KilledAgentWithoutASpareShrinksTheWorldAndANewHostGrowsItBack) {
  StartJob(0, {}, "", 45);  // past the second checkpoint
  const pid_t agent = AgentPid("host-1");
  ASSERT_GT(agent, 0);
  ASSERT_EQ(::kill(agent, SIGKILL), 0);
  // Once the shrunk world trains, a new host registers: at the next
  // checkpoint the world grows back.
  pid_t new_agent = -1;
  for (int i = 0; i < 400 && new_agent < 0; ++i) {
    auto lb = Logbook::Open(workdir_ + "/logbook.sqlite", true);
    if (lb.ok()) {
      const auto gens = lb.value()->Generations(lb.value()->Runs().value()[0].id).value();
      if (gens.size() == 2 && gens[1].first_step_at_us) new_agent = StartAgent("host-new");
    }
    if (new_agent < 0) std::this_thread::sleep_for(milliseconds(25));
  }
  ASSERT_GT(new_agent, 0) << "the shrunk generation never trained";
  const auto [code, summary] = WaitForVigilRun();
  ASSERT_EQ(code, 0) << testing::Slurp(dir_ / "vigil.out");
  EXPECT_EQ(summary.value("steps", 0), 240);
  EXPECT_LT(summary.value("final_loss", 9.0), 2.5) << "it went on learning";
  auto events = Events();
  ASSERT_EQ(events.size(), 1u) << "growing back is no failure";
  EXPECT_EQ(events[0].kind, "host_lost");
  EXPECT_EQ(ActionsFor(events[0].id),
            (std::vector<std::string>{"use_spare", "shrink_world", "restart_from_latest"}));
  std::optional<InterventionRow> grow;
  for (const auto& i : Interventions()) {
    const json p = json::parse(i.params_json);
    if (i.action == "shrink_world") {
      EXPECT_EQ(p.value("from_world", 0), 4);
      EXPECT_EQ(p.value("to_world", 0), 2);
      EXPECT_EQ(p.value("batch_per_rank", 0), 8) << "4 x 4 sequences kept as 2 x 8";
    }
    if (i.action == "grow_world") grow = i;
  }
  ASSERT_TRUE(grow) << "the world grew back";
  std::printf("the new host joined; the world grew back at step %d of 240\n",
              json::parse(grow->params_json).value("checkpoint_step", 0));
  EXPECT_EQ(grow->actor, "auto:placement");
  EXPECT_FALSE(grow->event_id);
  const json g = json::parse(grow->params_json);
  EXPECT_EQ(g.value("from_world", 0), 2);
  EXPECT_EQ(g.value("to_world", 0), 4);
  EXPECT_EQ(g.value("batch_per_rank", 0), 4);
  EXPECT_EQ(g["hosts_added"], json::array({"host-new"}));
  auto lb = Logbook::Open(workdir_ + "/logbook.sqlite", true).value();
  const auto gens = lb->Generations(lb->Runs().value()[0].id).value();
  ASSERT_EQ(gens.size(), 3u);
  EXPECT_EQ(gens[1].world_size, 2);
  EXPECT_EQ(gens[1].hosts, "host-0");
  EXPECT_TRUE(gens[1].resumed_from_step.has_value()) << "resumed, resharded, from a checkpoint";
  EXPECT_EQ(gens[2].world_size, 4);
  EXPECT_EQ(gens[2].hosts, "host-0,host-new");
  EXPECT_EQ(gens[2].cause_intervention_id.value_or(-1), grow->id);
  EXPECT_EQ(gens[2].resumed_from_step.value_or(-1), g.value("checkpoint_step", -2))
      << "grown from the checkpoint just committed";
  // The two ranks left resumed the four-rank checkpoint with 8 sequences
  // each; the four of the grown world resumed theirs with 4.
  const std::string log = testing::Slurp(workdir_ + "/logs/rank-1.gen-1.log");
  EXPECT_NE(log.find("resumed from"), std::string::npos) << log;
  EXPECT_NE(log.find("rank 1/2 generation 1: training from step " +
                     std::to_string(gens[1].resumed_from_step.value_or(-1))),
            std::string::npos)
      << log;
  const std::string grown = testing::Slurp(workdir_ + "/logs/rank-3.gen-2.log");
  EXPECT_NE(grown.find("rank 3/4 generation 2: training from step " +
                       std::to_string(gens[2].resumed_from_step.value_or(-1))),
            std::string::npos)
      << grown;
  ::waitpid(new_agent, nullptr, 0);
  ExpectNothingLeft();
}

TEST_F(HostLostTest, KilledAgentUnderANeverShrinkPlaybookPausesUntilANewHostJoins) {
  std::ofstream(dir_ / "never-shrink.yaml") << kNeverShrink;
  StartJob(0, {}, "never-shrink.yaml");
  const pid_t agent = AgentPid("host-1");
  ASSERT_GT(agent, 0);
  const int64_t t = NowMicros();
  ASSERT_EQ(::kill(agent, SIGKILL), 0);
  ASSERT_FALSE(testing::WaitForJobState(workdir_, "paused", milliseconds(10000)).is_null())
      << testing::Slurp(workdir_ + "/logs/vigild.log");
  ASSERT_TRUE(testing::WaitForLoggedRunStatus(workdir_, "paused", milliseconds(5000)));

  auto events = Events();
  ASSERT_EQ(events.size(), 1u) << "exactly one detection for one lost host";
  EXPECT_EQ(events[0].kind, "host_lost");
  EXPECT_EQ(events[0].host, "host-1");
  const double detection_s = static_cast<double>(events[0].time_us - t) / 1e6;
  EXPECT_GT(detection_s, 0.0);
  EXPECT_LT(detection_s, 1.0) << "a dropped connection is noticed at once";
  std::printf("killed agent: host_lost after %.1f ms\n", detection_s * 1000.0);
  EXPECT_EQ(ActionsFor(events[0].id), (std::vector<std::string>{"use_spare", "pause_and_page"}));
  // The lost host's ranks died with its agent; the others were stopped.
  std::vector<int> ranks;
  for (int i = 0; i < 50; ++i) {
    ranks = ProcessesNamed("vigil-train");
    if (ranks.empty()) break;
    std::this_thread::sleep_for(milliseconds(100));
  }
  EXPECT_TRUE(ranks.empty()) << ranks.size() << " ranks outlived the paused generation";

  // No host to put in its place: resuming is refused, and says what to do.
  const auto refused = testing::RunCommand(
      testing::kVigil + " resume --workdir " + workdir_ + " --by oncall", dir_.path());
  EXPECT_NE(refused.exit_code, 0);
  EXPECT_NE(refused.err.find("start a vigil-agent"), std::string::npos) << refused.err;

  // A new host registers, then resume.
  const pid_t new_agent = StartAgent("host-new");
  ASSERT_GT(new_agent, 0);
  testing::CommandResult resumed;
  for (int i = 0; i < 100; ++i) {
    resumed = testing::RunCommand(
        testing::kVigil + " resume --workdir " + workdir_ + " --by oncall --note 'host-new'",
        dir_.path());
    if (resumed.exit_code == 0) break;
    std::this_thread::sleep_for(milliseconds(100));
  }
  ASSERT_EQ(resumed.exit_code, 0) << resumed.err;
  const auto [code, summary] = WaitForVigilRun();
  EXPECT_EQ(code, 0) << testing::Slurp(dir_ / "vigil.out");
  EXPECT_EQ(summary.value("params_digest", ""), reference_digest_);
  bool replaced = false;
  for (const auto& i : Interventions()) {
    if (i.action == "use_spare" && i.actor == "human:oncall") {
      const json p = json::parse(i.params_json);
      EXPECT_EQ(p.value("replaced", ""), "host-1");
      EXPECT_EQ(p.value("spare", ""), "host-new");
      replaced = true;
    }
  }
  EXPECT_TRUE(replaced) << "the resume put the new host in the lost one's place";
  const std::vector<std::string> last = {HostOfRank(0), HostOfRank(2)};
  EXPECT_NE(std::find(last.begin(), last.end(), "host-new"), last.end());
  EXPECT_EQ(std::find(last.begin(), last.end(), "host-1"), last.end());
  ::waitpid(new_agent, nullptr, 0);
  ExpectNothingLeft();
}

TEST_F(HostLostTest, StoppedAgentIsReplacedByASpareAndDropsItsRanksWhenItWakes) {
  StartJob(1);
  const pid_t agent = AgentPid("host-0");
  ASSERT_GT(agent, 0);
  const int64_t t = NowMicros();
  ASSERT_EQ(::kill(agent, SIGSTOP), 0);
  // Heartbeat timeout 1.5 s, checked every 50 ms; then the restart on the spare.
  for (int i = 0; i < 100 && Events().empty(); ++i) std::this_thread::sleep_for(milliseconds(50));
  auto events = Events();
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].kind, "host_lost");
  EXPECT_EQ(events[0].host, "host-0");
  const double detection_s = static_cast<double>(events[0].time_us - t) / 1e6;
  EXPECT_GT(detection_s, 1.5 - 0.1);
  EXPECT_LT(detection_s, 1.5 + 1.0);
  std::printf("stopped agent: host_lost after %.0f ms (heartbeat timeout 1500 ms)\n",
              detection_s * 1000.0);
  for (int i = 0; i < 100 && ActionsFor(events[0].id).size() < 2; ++i)
    std::this_thread::sleep_for(milliseconds(50));
  EXPECT_EQ(ActionsFor(events[0].id),
            (std::vector<std::string>{"use_spare", "restart_from_latest"}));

  // The host wakes up: vigild dropped it, so it kills its stale ranks and
  // exits (a zombie until `vigil run`, its parent, reaps it at the end).
  ASSERT_EQ(::kill(agent, SIGCONT), 0);
  auto running = [](pid_t pid) {
    const std::string stat = testing::Slurp("/proc/" + std::to_string(pid) + "/stat");
    const auto rp = stat.rfind(')');
    return rp != std::string::npos && rp + 2 < stat.size() && stat[rp + 2] != 'Z';
  };
  for (int i = 0; i < 300 && running(agent); ++i) std::this_thread::sleep_for(milliseconds(50));
  EXPECT_FALSE(running(agent)) << "the woken agent kept running";

  const auto [code, summary] = WaitForVigilRun();
  EXPECT_EQ(code, 0) << testing::Slurp(dir_ / "vigil.out");
  EXPECT_EQ(summary.value("params_digest", ""), reference_digest_);
  EXPECT_EQ(summary.value("restarts", -1), 1);
  EXPECT_EQ(Events().size(), 1u) << "the woken host's stale ranks detect nothing";
  ExpectNothingLeft();
}

TEST_F(HostLostTest, GpuXidCordonsTheHostOnlyWhenTheCatalogueSaysSo) {
  // Xid 94 (contained ECC): restart, the GPU is fine. Xid 79 (fallen off
  // the bus): the host is cordoned and the spare takes its ranks.
  StartJob(1, {"--chaos", "xid:94:1@40", "--chaos", "xid:79:2@120"});
  const auto [code, summary] = WaitForVigilRun();
  ASSERT_EQ(code, 0) << testing::Slurp(dir_ / "vigil.out");
  EXPECT_EQ(summary.value("params_digest", ""), reference_digest_);
  const auto events = Events();
  ASSERT_EQ(events.size(), 2u);
  for (const auto& e : events) {
    EXPECT_EQ(e.kind, "gpu_fault");
    const json d = json::parse(e.detail_json);
    EXPECT_EQ(d.value("source", ""), "injected");
    EXPECT_LT(d.value("detection_latency_ms", 1e9), 1000.0);
  }
  const json first = json::parse(events[0].detail_json),
             second = json::parse(events[1].detail_json);
  EXPECT_EQ(first.value("xid", 0), 94);
  EXPECT_EQ(first.value("xid_remedy", ""), "restart");
  EXPECT_EQ(events[0].rank, 1);
  EXPECT_EQ(ActionsFor(events[0].id), (std::vector<std::string>{"restart_from_latest"}));
  EXPECT_EQ(second.value("xid", 0), 79);
  EXPECT_EQ(second.value("xid_name", ""), "GPU has fallen off the bus");
  EXPECT_EQ(events[1].rank, 2);
  EXPECT_EQ(ActionsFor(events[1].id),
            (std::vector<std::string>{"page", "cordon_host", "use_spare", "restart_from_latest"}));
  EXPECT_EQ(HostOfRank(2), "spare-0") << "the cordoned host runs no more ranks";
  ExpectNothingLeft();
}

}  // namespace
}  // namespace vigil
