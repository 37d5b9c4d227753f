// vigil under a real Slurm (slurm_fixture.h; the cluster is the one
// slurm_cluster_test.cc's tests check, in the same binary): `vigil run` on this machine,
// the submitting host, submits the job with sbatch and follows it; in the
// allocation, vigild runs in the batch step and each agent is a job step of
// its own on its node. Everything here is Slurm's own: sbatch, srun,
// scontrol, sinfo, squeue, scancel.
//  - A node killed mid-run (its slurmd and everything on it SIGKILLed): the
//    lost host is detected, the playbook cordons it, vigild drains it in
//    Slurm with its reason, the spare node trains in its place and the job
//    finishes. `sinfo -R` shows vigil's reason; the logbook names the Slurm
//    job, the node and the event. It prints each step's time.
//  - Ctrl-C on `vigil run` cancels the Slurm job (scancel), which ends the
//    run cleanly: recorded cancelled, its ranks torn down, and no node
//    drained for the ranks and agents the scancel killed.
//  - A stop within slurm.drain_delay_ms of a cordon makes no drain, and
//    records the drain it did not make.
//  - SIGTERM leaves the job running, and a second `vigil run` on its work
//    directory is refused while it does.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>
#include <thread>

#include <nlohmann/json.hpp>

#include "common/http_client.h"
#include "common/process.h"
#include "common/util.h"
#include "logbook/logbook.h"
#include "tests/integration/process_util.h"
#include "tests/integration/slurm_fixture.h"

namespace vigil {
namespace {

using nlohmann::json;
using std::chrono::milliseconds;
using std::chrono::seconds;
using testing::SlurmCluster;

constexpr int kHeartbeatTimeoutMs = 1500;

// Two hosts of one rank each and one spare: the cluster's three nodes.
std::string Job(const std::string& launcher, int steps, const std::string& slurm = "") {
  return "name: slurmjob\n" + launcher +
         "model: {d_model: 32, layers: 1, heads: 2, seq_len: 16}\n"
         "schedule: {steps: " +
         std::to_string(steps) +
         ", batch_per_rank: 4}\n"
         "world: {hosts: 2, ranks_per_host: 1, spares: 1}\n"
         "checkpoint: {every_steps: 20}\n"
         "limits: {heartbeat_interval_ms: 200, heartbeat_timeout_ms: " +
         std::to_string(kHeartbeatTimeoutMs) +
         ", kill_grace_ms: 1000}\n"
         "slurm: {queue_poll_ms: 1000" +
         slurm +
         "}\n"
         "playbook: playbook.yaml\n";
}

// The default playbook's answer to a lost host, and the host cordoned: under
// Slurm, drained.
constexpr const char* kPlaybook =
    "version: 1\n"
    "rules:\n"
    "  - name: host-lost\n"
    "    when: {kind: host_lost}\n"
    "    do: [restart_from_latest, cordon_host, use_spare, shrink_world]\n";

class SlurmJob : public testing::SlurmTest {
 protected:
  void SetUp() override {
    testing::SlurmTest::SetUp();
    if (IsSkipped() || HasFatalFailure()) return;
    dir_ = C().dir() + "/" + ::testing::UnitTest::GetInstance()->current_test_info()->name();
    workdir_ = dir_ + "/work";
    std::filesystem::create_directories(dir_);
    std::ofstream(dir_ + "/playbook.yaml") << kPlaybook;
  }
  void TearDown() override {
    if (run_ > 0) {
      ::kill(run_, SIGKILL);
      ::waitpid(run_, nullptr, 0);
    }
    testing::SlurmTest::TearDown();
  }

  // `vigil run JOB -o json EXTRA...` from this (the submitting) host.
  void Submit(const std::string& job_yaml, std::vector<std::string> extra = {}) {
    std::ofstream(dir_ + "/job.yaml") << job_yaml;
    SpawnOptions o;
    o.argv = {testing::kVigil, "run", dir_ + "/job.yaml", "--workdir", workdir_, "-o", "json"};
    o.argv.insert(o.argv.end(), extra.begin(), extra.end());
    o.log_file = dir_ + "/vigil-run.out";
    auto pid = SpawnProcess(o);
    ASSERT_TRUE(pid.ok()) << pid.status().ToString();
    run_ = pid.value();
  }
  // vigil run's exit status once it ends (within `timeout`), or nullopt.
  std::optional<int> WaitForRun(seconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
      int status = 0;
      if (::waitpid(run_, &status, WNOHANG) == run_) {
        run_ = -1;
        return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      }
      std::this_thread::sleep_for(milliseconds(100));
    }
    return std::nullopt;
  }
  // vigild's status once the job has trained past `step`, or null.
  json WaitForStep(int64_t step, seconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
      if (auto addr = testing::ReadVigildAddress(workdir_)) {
        auto r = ApiGet(workdir_, addr->http, "/api/v1/status", milliseconds(1000));
        if (r.ok() && r->status == 200) {
          auto j = json::parse(r->body, nullptr, false);
          if (j.is_object() && j.value("step", 0) >= step) return j;
        }
      }
      std::this_thread::sleep_for(milliseconds(50));
    }
    return nullptr;
  }
  std::string Said() const {
    return testing::Slurp(dir_ + "/vigil-run.out") + "\n--- slurm job output:\n" +
           SlurmCluster::Sh("cat " + workdir_ + "/logs/slurm-*.out 2>&1").out;
  }
  // A node to kill: one with ranks that is not the batch node (vigild's),
  // and the spare that is to take its place.
  struct Victim {
    std::string node, spare;
    int index = -1;
  };
  // The spare registers once the job runs: waits for it (up to 30 s).
  Victim PickVictim(const std::string& slurm_job) const {
    const std::string batch = SlurmCluster::Sh("squeue -h -j " + slurm_job + " -o %B").out;
    Victim v;
    for (int i = 0; i < 300 && (v.node.empty() || v.spare.empty()); ++i) {
      if (i > 0) std::this_thread::sleep_for(milliseconds(100));
      v = {};
      auto addr = testing::ReadVigildAddress(workdir_);
      if (!addr) continue;
      auto r = ApiGet(workdir_, addr->http, "/api/v1/hosts", milliseconds(2000));
      const json hosts = r.ok() ? json::parse(r->body, nullptr, false) : json();
      if (!hosts.is_array()) continue;
      for (const auto& h : hosts) {
        if (h["state"] == "active" && h["host"].get<std::string>() + "\n" != batch)
          v.node = h["host"];
        if (h["state"] == "spare") v.spare = h["host"];
      }
    }
    if (!v.node.empty()) v.index = std::stoi(v.node.substr(1));
    return v;
  }
  // Waits for the Slurm job to be gone (its allocation released), then
  // brings node `index` back, idle.
  void RestoreNode(const std::string& slurm_job, int index) {
    for (int i = 0;
         i < 600 && !SlurmCluster::Sh("squeue -h -j " + slurm_job + " 2>/dev/null").out.empty();
         ++i)
      std::this_thread::sleep_for(milliseconds(100));
    ASSERT_TRUE(C().RestartNode(index, seconds(60)).ok());
  }
  std::unique_ptr<Logbook> OpenLogbook() const {
    auto lb = Logbook::Open(workdir_ + "/logbook.sqlite", false);
    EXPECT_TRUE(lb.ok()) << lb.status().ToString();
    return lb.ok() ? std::move(lb.value()) : nullptr;
  }

  std::string dir_, workdir_;
  pid_t run_ = -1;
};

TEST_F(SlurmJob, ANodeKilledMidRunIsDrainedAndItsSpareFinishesTheJob) {
  Submit(Job("launcher: slurm\n", 600));
  const json status = WaitForStep(40, seconds(90));
  ASSERT_FALSE(status.is_null()) << Said();
  auto lb = OpenLogbook();
  ASSERT_TRUE(lb);
  const RunRow run = lb->Runs().value().at(0);
  ASSERT_FALSE(run.slurm_job_id.empty());
  const std::string job = run.slurm_job_id;
  const Victim v = PickVictim(job);
  ASSERT_FALSE(v.node.empty()) << Said();
  ASSERT_FALSE(v.spare.empty()) << Said();
  const std::string &victim = v.node, &spare = v.spare;
  const int victim_index = v.index;

  const int64_t killed_at = NowMicros();
  C().KillNode(victim_index);
  const auto exit_code = WaitForRun(seconds(180));
  ASSERT_TRUE(exit_code) << Said();
  EXPECT_EQ(*exit_code, 0) << Said();

  lb = OpenLogbook();
  ASSERT_TRUE(lb);
  const RunRow done = lb->Runs().value().at(0);
  EXPECT_EQ(done.status, "succeeded");
  EXPECT_EQ(done.slurm_job_id, job);
  std::optional<EventRow> lost;
  const auto events = lb->Events(done.id);
  ASSERT_TRUE(events.ok());
  for (const auto& e : events.value()) {
    if (e.kind == "host_lost" && e.host == victim) lost = e;
  }
  ASSERT_TRUE(lost) << Said();
  std::optional<InterventionRow> cordon, drain;
  const auto interventions = lb->Interventions(done.id);
  ASSERT_TRUE(interventions.ok());
  for (const auto& i : interventions.value()) {
    if (i.event_id != lost->id) continue;
    if (i.action == "cordon_host") cordon = i;
    if (i.action == "slurm_drain") drain = i;
  }
  ASSERT_TRUE(cordon);
  ASSERT_TRUE(drain) << "no slurm_drain intervention; " << Said();
  const json params = json::parse(drain->params_json);
  EXPECT_EQ(params["node"], victim);
  EXPECT_EQ(params["slurm_job_id"], job);
  const std::string reason = "vigil: event#" + std::to_string(lost->id) + " host_lost";
  EXPECT_EQ(params["reason"], reason);
  EXPECT_EQ(drain->outcome.rfind("drained in Slurm", 0), 0u) << drain->outcome;
  // Slurm itself says so, with vigil's reason, whatever it adds once the
  // node is also found not responding.
  const auto listed = SlurmCluster::Sh("sinfo -R -h -o '%N|%E' 2>&1");
  EXPECT_NE(listed.out.find(victim + "|" + reason), std::string::npos) << listed.out;
  // The spare node trained in the victim's place.
  const auto gens = lb->Generations(done.id).value();
  ASSERT_GE(gens.size(), 2u);
  const GenerationRow& again = gens.back();
  EXPECT_NE(again.hosts.find(spare), std::string::npos) << again.hosts;
  EXPECT_EQ(again.hosts.find(victim), std::string::npos) << again.hosts;
  ASSERT_TRUE(again.first_step_at_us);
  std::printf(
      "figure: Slurm node %s killed -> host_lost %.0f ms (heartbeat timeout %d ms) -> drained in "
      "Slurm %.0f ms (scontrol %lld ms) -> training again on spare %s %.0f ms\n",
      victim.c_str(), (lost->time_us - killed_at) / 1000.0, kHeartbeatTimeoutMs,
      (drain->time_us - killed_at) / 1000.0, static_cast<long long>(params.value("elapsed_ms", 0)),
      spare.c_str(), (*again.first_step_at_us - killed_at) / 1000.0);

  // The dead node back, the drain cleared.
  RestoreNode(job, victim_index);
}

// A node lost, then a Ctrl-C within slurm.drain_delay_ms of its cordon (as
// when a scancel's kills reach vigild before its own SIGTERM does): the
// run is cancelled, the drain it did not make is recorded, and Slurm has
// drained nothing.
TEST_F(SlurmJob, AStopWithinTheDrainDelayDrainsNothingAndRecordsTheDrainNotMade) {
  // A delay long enough that the Ctrl-C surely falls within it.
  Submit(Job("launcher: slurm\n", 1000000, ", drain_delay_ms: 20000"));
  ASSERT_FALSE(WaitForStep(5, seconds(90)).is_null()) << Said();
  const std::string job = Trim(testing::Slurp(workdir_ + "/slurm/job_id"));
  ASSERT_FALSE(job.empty());
  const Victim v = PickVictim(job);
  ASSERT_FALSE(v.node.empty()) << Said();
  C().KillNode(v.index);
  // The restart that follows the loss (its cordon, with it, is pending).
  json restarted;
  for (int i = 0; i < 300 && restarted.is_null(); ++i) {
    const json s = WaitForStep(0, seconds(5));
    if (s.is_object() && s.value("restarts", 0) >= 1) restarted = s;
    std::this_thread::sleep_for(milliseconds(50));
  }
  ASSERT_FALSE(restarted.is_null()) << Said();
  ASSERT_EQ(::kill(run_, SIGINT), 0);
  const auto exit_code = WaitForRun(seconds(60));
  ASSERT_TRUE(exit_code) << Said();
  EXPECT_EQ(*exit_code, 1) << Said();

  auto lb = OpenLogbook();
  ASSERT_TRUE(lb);
  const RunRow run = lb->Runs().value().at(0);
  EXPECT_EQ(run.status, "cancelled") << Said();
  // The victim's drain, not made. The scancel's kills may have cost the
  // spare that replaced it a cordon too (lost before vigild's own SIGTERM):
  // that one is not made either.
  std::optional<InterventionRow> drain;
  const auto interventions = lb->Interventions(run.id);
  ASSERT_TRUE(interventions.ok());
  for (const auto& i : interventions.value()) {
    if (i.action != "slurm_drain") continue;
    EXPECT_EQ(i.outcome.rfind("not drained: vigild was stopped by a signal", 0), 0u) << i.outcome;
    const json params = json::parse(i.params_json);
    EXPECT_EQ(params["drained"], false);
    if (params["node"] == v.node) drain = i;
  }
  ASSERT_TRUE(drain) << "the drain not made is not recorded; " << Said();
  const auto drained = SlurmCluster::Sh("sinfo -R -h -o '%N|%E' 2>&1").out;
  EXPECT_EQ(drained.find("vigil:"), std::string::npos) << drained;
  RestoreNode(job, v.index);
}

TEST_F(SlurmJob, CtrlCCancelsTheJobAndTheRunIsRecordedCancelled) {
  // launcher: local in the job, slurm from the command line.
  Submit(Job("", 1000000), {"--launcher", "slurm"});
  ASSERT_FALSE(WaitForStep(5, seconds(90)).is_null()) << Said();
  auto lb = OpenLogbook();
  ASSERT_TRUE(lb);
  const std::string job = lb->Runs().value().at(0).slurm_job_id;
  ASSERT_FALSE(job.empty());
  lb.reset();
  EXPECT_FALSE(testing::ProcessesMentioning(workdir_).empty());

  const auto t0 = std::chrono::steady_clock::now();
  ASSERT_EQ(::kill(run_, SIGINT), 0);
  const auto exit_code = WaitForRun(seconds(60));
  ASSERT_TRUE(exit_code) << Said();
  EXPECT_EQ(*exit_code, 1) << Said();
  const double followed_s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  lb = OpenLogbook();
  ASSERT_TRUE(lb);
  const RunRow run = lb->Runs().value().at(0);
  EXPECT_EQ(run.status, "cancelled") << Said();
  const auto events = lb->Events(run.id);
  ASSERT_TRUE(events.ok());
  bool stopped = false;
  for (const auto& e : events.value()) stopped |= e.kind == "coordinator_stopped";
  EXPECT_TRUE(stopped);
  // What the scancel killed on its way (a rank, an agent) may have been
  // recorded; no node was drained for it.
  const auto interventions = lb->Interventions(run.id);
  ASSERT_TRUE(interventions.ok());
  for (const auto& i : interventions.value()) {
    if (i.action == "slurm_drain") {
      EXPECT_EQ(i.outcome.rfind("not drained", 0), 0u) << i.outcome;
    }
  }
  const auto drained = SlurmCluster::Sh("sinfo -R -h -o '%N|%E' 2>&1").out;
  EXPECT_EQ(drained.find("vigil:"), std::string::npos) << drained;
  // Nothing of the job is left: no vigild, agent or rank on any node.
  std::vector<int> left;
  for (int i = 0; i < 200; ++i) {
    left = testing::ProcessesMentioning(workdir_);
    if (left.empty()) break;
    std::this_thread::sleep_for(milliseconds(100));
  }
  EXPECT_TRUE(left.empty()) << left.size() << " processes left, first pid " << left.at(0);
  std::printf("figure: Ctrl-C -> scancel -> run recorded cancelled, vigil run done in %.1f s\n",
              followed_s);
}

TEST_F(SlurmJob, SigtermStopsFollowingAndASecondRunOfTheWorkdirIsRefused) {
  Submit(Job("launcher: slurm\n", 1000000));
  ASSERT_FALSE(WaitForStep(5, seconds(90)).is_null()) << Said();
  const std::string job = testing::Slurp(workdir_ + "/slurm/job_id");
  ASSERT_FALSE(job.empty());
  ASSERT_EQ(::kill(run_, SIGTERM), 0);
  const auto exit_code = WaitForRun(seconds(30));
  ASSERT_TRUE(exit_code);
  EXPECT_EQ(*exit_code, 1);
  EXPECT_NE(Said().find("no longer following"), std::string::npos) << Said();
  EXPECT_EQ(SlurmCluster::Sh("squeue -h -j " + job.substr(0, job.size() - 1) + " -o %T").out,
            "RUNNING\n");
  // The job trains on.
  const json before = WaitForStep(0, seconds(5));
  ASSERT_FALSE(before.is_null());
  ASSERT_FALSE(WaitForStep(before.value("step", 0) + 5, seconds(30)).is_null());

  const auto again = testing::RunCommand(
      testing::kVigil + " run " + dir_ + "/job.yaml --workdir " + workdir_, dir_);
  EXPECT_EQ(again.exit_code, 2) << again.err;
  EXPECT_NE(again.err.find("already runs this work directory"), std::string::npos) << again.err;
}

}  // namespace
}  // namespace vigil
