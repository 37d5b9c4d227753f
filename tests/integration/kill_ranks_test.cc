// End to end: the tiny job, run by `vigil run` with real vigild, agents and
// Gloo ranks, survives two ranks SIGKILLed at different steps and ends with
// exactly the parameters of an uninterrupted run.
#include <gtest/gtest.h>

#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "common/fs.h"
#include "common/process.h"
#include "common/util.h"
#include "logbook/logbook.h"
#include "tests/integration/process_util.h"
#include "tests/unit/test_util.h"

namespace vigil {
namespace {

using nlohmann::json;
using testing::RunCommand;
using testing::TempDir;

using testing::kTiny;
using testing::kVigil;

json RunTiny(const TempDir& dir, const std::string& workdir, const std::string& extra) {
  auto r = RunCommand(kVigil + " run " + kTiny + " --workdir " + workdir + " -o json " + extra,
                      dir.path());
  EXPECT_EQ(r.exit_code, 0) << r.err;
  json j = json::parse(r.LastLine(), nullptr, false);
  EXPECT_FALSE(j.is_discarded()) << "last stdout line is not JSON: " << r.LastLine() << "\n"
                                 << r.err;
  return j;
}

TEST(KillRanks, JobSurvivesTwoKilledRanksBitExactly) {
  TempDir dir;
  const std::string clean_dir = dir / "clean", chaos_dir = dir / "chaos";
  const json clean = RunTiny(dir, clean_dir, "");
  const json chaos = RunTiny(dir, chaos_dir, "--chaos kill-rank:1@60 --chaos kill-rank:2@170");

  ASSERT_EQ(clean.value("status", ""), "succeeded") << clean.dump();
  ASSERT_EQ(chaos.value("status", ""), "succeeded") << chaos.dump();
  EXPECT_EQ(clean["steps"], 300);
  EXPECT_EQ(chaos["steps"], 300);
  EXPECT_EQ(clean["restarts"], 0);
  EXPECT_EQ(chaos["restarts"], 2);
  for (const char* key : {"final_loss", "wall_seconds", "tokens_per_second", "params_digest"}) {
    EXPECT_TRUE(chaos.contains(key)) << key;
  }
  EXPECT_EQ(chaos["params_digest"].get<std::string>().size(), 16u);
  EXPECT_EQ(chaos["params_digest"], clean["params_digest"]) << "resumed run is not bit-identical";
  EXPECT_EQ(chaos["final_loss"], clean["final_loss"]);
  // It learned: well below ln(256) = 5.55, near the corpus's 1.213 floor.
  EXPECT_LT(chaos["final_loss"].get<double>(), 1.6);

  // The logbook: one detection per kill, each answered by a restart linked
  // to it, and each restart starting the next generation.
  auto lb = Logbook::Open(chaos_dir + "/logbook.sqlite", false);
  ASSERT_TRUE(lb.ok()) << lb.status().ToString();
  const int64_t run = chaos["run_id"];
  auto events = lb.value()->Events(run).value();
  auto interventions = lb.value()->Interventions(run).value();
  auto generations = lb.value()->Generations(run).value();
  ASSERT_EQ(events.size(), 2u);
  std::set<int> killed;
  for (const auto& e : events) {
    EXPECT_EQ(e.kind, "process_exit");
    ASSERT_TRUE(e.rank.has_value());
    killed.insert(*e.rank);
    const json detail = json::parse(e.detail_json);
    EXPECT_EQ(detail["signal"], 9);
    EXPECT_TRUE(detail.contains("detection_latency_ms"));
    EXPECT_LT(detail["detection_latency_ms"].get<double>(), 1000.0);
    int restarts_for_event = 0;
    for (const auto& i : interventions) {
      if (i.event_id == e.id) {
        EXPECT_EQ(i.action, "restart_from_latest");
        ++restarts_for_event;
      }
    }
    EXPECT_EQ(restarts_for_event, 1) << "event " << e.id;
  }
  EXPECT_EQ(killed, (std::set<int>{1, 2}));
  ASSERT_EQ(generations.size(), 3u);
  for (size_t g = 1; g < generations.size(); ++g) {
    ASSERT_TRUE(generations[g].cause_intervention_id.has_value());
    ASSERT_TRUE(generations[g].resumed_from_step.has_value());
    EXPECT_GT(*generations[g].resumed_from_step, 0);
    EXPECT_TRUE(generations[g].first_step_at_us.has_value());
  }
  auto recoveries = lb.value()->Recoveries(run).value();
  ASSERT_EQ(recoveries.size(), 2u);
  for (const auto& r : recoveries) {
    ASSERT_TRUE(r.recovery_ms.has_value());
    EXPECT_GT(*r.recovery_ms, 0.0);
  }
  const auto checkpoints = lb.value()->Checkpoints(run).value();
  EXPECT_GE(checkpoints.size(), 12u);
  for (const auto& c : checkpoints) {  // each run keeps its own checkpoint folder
    EXPECT_EQ(c.path.rfind(chaos_dir + "/checkpoints/run-" + std::to_string(run) + "/step-", 0), 0u)
        << c.path;
  }

  // No process of either job is left: ranks, agents, vigild.
  EXPECT_TRUE(testing::ProcessesMentioning(clean_dir).empty());
  EXPECT_TRUE(testing::ProcessesMentioning(chaos_dir).empty());

  // The on-call view of the same logbook.
  auto ls = RunCommand(kVigil + " logbook ls --workdir " + chaos_dir + " -o json", dir.path());
  ASSERT_EQ(ls.exit_code, 0) << ls.err;
  const json entries = json::parse(ls.out);
  std::map<std::string, int> by_what;
  for (const auto& e : entries) by_what[e["what"].get<std::string>()]++;
  EXPECT_EQ(by_what["process_exit"], 2);
  EXPECT_EQ(by_what["restart_from_latest"], 2);
  EXPECT_EQ(by_what["inject_fault"], 2);
  auto table = RunCommand(kVigil + " logbook ls --workdir " + chaos_dir, dir.path());
  EXPECT_EQ(table.exit_code, 0);
  EXPECT_NE(table.out.find("restart_from_latest"), std::string::npos);
}

TEST(KillRanks, BadJobSpecStartsNothing) {
  TempDir dir;
  std::ofstream(dir / "bad.yaml")
      << "name: bad\nmodel:\n  d_model: lots\nschedule: {steps: 5}\nworld: {hosts: 1}\n";
  auto r = RunCommand(kVigil + " run " + (dir / "bad.yaml") + " --workdir " + (dir / "work"),
                      dir.path());
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("bad.yaml:3:12: model.d_model: expected a positive integer, got 'lots'"),
            std::string::npos)
      << r.err;
  EXPECT_FALSE(std::filesystem::exists(dir / "work"));

  auto chaos = RunCommand(
      kVigil + " run " + kTiny + " --workdir " + (dir / "work") + " --chaos kill-rank:9@5",
      dir.path());
  EXPECT_EQ(chaos.exit_code, 2);
  EXPECT_NE(chaos.err.find("outside the world"), std::string::npos) << chaos.err;

  std::ofstream(dir / "nodata.yaml")
      << "name: nodata\nmodel: {d_model: 16, heads: 2}\n"
         "data: {kind: file, path: absent.tok}\nschedule: {steps: 5}\nworld: {}\n";
  auto nodata = RunCommand(
      kVigil + " run " + (dir / "nodata.yaml") + " --workdir " + (dir / "work"), dir.path());
  EXPECT_EQ(nodata.exit_code, 2);
  EXPECT_NE(nodata.err.find("absent.tok"), std::string::npos) << nodata.err;
  EXPECT_FALSE(std::filesystem::exists(dir / "work"));

  auto missing = RunCommand(kVigil + " logbook ls --workdir " + (dir / "nowhere"), dir.path());
  EXPECT_EQ(missing.exit_code, 2);
  EXPECT_NE(missing.err.find("no logbook"), std::string::npos) << missing.err;
}

}  // namespace
}  // namespace vigil

namespace vigil {
namespace {

// A generation that never reaches its first step is detected by the start
// timeout and restarted; when restarts run out the job fails, and says why.
TEST(StartTimeout, GenerationThatNeverStartsIsRestartedThenFailed) {
  TempDir dir;
  std::ofstream(dir / "job.yaml") << "name: stuck\nmodel: {d_model: 16, heads: 2, seq_len: 8}\n"
                                     "schedule: {steps: 50}\nworld: {hosts: 1, ranks_per_host: 2}\n"
                                     "limits: {start_timeout_ms: 1, max_restarts: 1}\n";
  auto r = RunCommand(
      kVigil + " run " + (dir / "job.yaml") + " --workdir " + (dir / "work") + " -o json",
      dir.path());
  EXPECT_EQ(r.exit_code, 1) << r.err;
  auto lb = Logbook::Open(dir / "work/logbook.sqlite", false);
  ASSERT_TRUE(lb.ok());
  const int64_t run = lb.value()->Runs().value().at(0).id;
  EXPECT_EQ(lb.value()->Runs().value()[0].status, "failed");
  auto events = lb.value()->Events(run).value();
  auto interventions = lb.value()->Interventions(run).value();
  ASSERT_EQ(events.size(), 2u);
  for (const auto& e : events) EXPECT_EQ(e.kind, "start_timeout");
  ASSERT_EQ(interventions.size(), 2u);
  EXPECT_EQ(interventions[0].action, "restart_from_latest");
  EXPECT_EQ(interventions[1].action, "fail_job");
  EXPECT_EQ(interventions[1].event_id, events[1].id);
  EXPECT_TRUE(testing::ProcessesMentioning(dir / "work").empty());
}

}  // namespace
}  // namespace vigil

namespace vigil {
namespace {

// The real data path: a corpus made by `vigil data prepare` from text files,
// trained on by `vigil run`; a killed rank still ends bit-identical. The text
// is the licences every Debian system ships (base-files, essential), so the
// loss it reaches does not move when this repository's docs change.
TEST(FileData, TrainsOnAPreparedCorpusAndResumesExactly) {
  TempDir dir;
  const std::string src = "/usr/share/common-licenses";
  auto prep = RunCommand(kVigil + " data prepare " + src + "/GPL-3 " + src + "/Apache-2.0 " + src +
                             "/GFDL-1.3 -o " + (dir / "corpus.tok"),
                         dir.path());
  ASSERT_EQ(prep.exit_code, 0) << prep.err;
  EXPECT_EQ(RunCommand(kVigil + " data verify " + (dir / "corpus.tok"), dir.path()).exit_code, 0);
  std::ofstream(dir / "job.yaml")
      << "name: text\nmodel: {d_model: 32, layers: 1, heads: 2, seq_len: 32}\n"
         "data: {kind: file, path: corpus.tok, seed: 5}\n"
         "optimizer: {lr: 0.01}\nschedule: {steps: 80, batch_per_rank: 8}\n"
         "world: {hosts: 1, ranks_per_host: 2}\ncheckpoint: {every_steps: 20}\n";
  auto run = [&](const std::string& name, const std::string& extra) {
    auto r = RunCommand(
        kVigil + " run " + (dir / "job.yaml") + " --workdir " + (dir / name) + " -o json " + extra,
        dir.path());
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return json::parse(r.LastLine(), nullptr, false);
  };
  const json clean = run("clean", ""), killed = run("killed", "--chaos kill-rank:1@50");
  ASSERT_EQ(clean.value("status", ""), "succeeded") << clean.dump();
  ASSERT_EQ(killed.value("status", ""), "succeeded") << killed.dump();
  EXPECT_EQ(killed["restarts"], 1);
  EXPECT_EQ(killed["params_digest"], clean["params_digest"]);
  // English text in 80 small steps: well under uniform guessing, ln(256) = 5.55.
  EXPECT_LT(clean["final_loss"].get<double>(), 3.5);
  // Text has no known entropy floor; the summary does not borrow the synthetic source's.
  ASSERT_TRUE(clean.contains("entropy_floor")) << clean.dump();
  EXPECT_TRUE(clean["entropy_floor"].is_null()) << clean.dump();

  // A corrupted corpus is refused with a clear error, before any training.
  {
    std::fstream f(dir / "corpus.tok", std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(100);
    f.put('\x01');
  }
  auto bad = RunCommand(kVigil + " data verify " + (dir / "corpus.tok"), dir.path());
  EXPECT_EQ(bad.exit_code, 1);
  EXPECT_NE(bad.err.find("checksum mismatch"), std::string::npos) << bad.err;
}

}  // namespace
}  // namespace vigil

namespace vigil {
namespace {

// Runs `job` under a vigild started directly (vigil run would refuse some
// of these up front) and one agent, until vigild exits; checks that the
// failure was a configuration error, handled by failing the job at the first
// rank's exit instead of spending the restart budget.
void ExpectFailsAsConfigError(const TempDir& dir, const std::string& job) {
  std::ofstream(dir / "job.yaml") << job;
  ASSERT_TRUE(WriteTokenFile(dir / "token").ok());
  const pid_t vigild =
      testing::StartVigild(dir / "job.yaml", dir / "work", dir / "token", dir / "vigild.log");
  ASSERT_GT(vigild, 0);
  auto addr = testing::WaitForVigildAddress(dir / "work", std::chrono::seconds(10));
  ASSERT_TRUE(addr.has_value()) << testing::Slurp(dir / "vigild.log");
  const std::string rpc = addr->rpc;
  SpawnOptions a;
  a.argv = {std::string(VIGIL_BIN_DIR) + "/vigil-agent",
            "--coordinator",
            rpc,
            "--token-file",
            dir / "token",
            "--host",
            "host-0",
            "--slots",
            "2"};
  a.log_file = dir / "agent.log";
  a.parent_death_signal = SIGKILL;
  const pid_t agent = SpawnProcess(a).value();
  int status = 0;
  ASSERT_EQ(::waitpid(vigild, &status, 0), vigild);
  EXPECT_EQ(WEXITSTATUS(status), 1);
  ::waitpid(agent, &status, 0);
  auto lb = Logbook::Open(dir / "work/logbook.sqlite", false);
  ASSERT_TRUE(lb.ok());
  const int64_t run = lb.value()->Runs().value().at(0).id;
  auto events = lb.value()->Events(run).value();
  auto interventions = lb.value()->Interventions(run).value();
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].kind, "config_error");
  ASSERT_EQ(interventions.size(), 1u);
  EXPECT_EQ(interventions[0].action, "fail_job");
  EXPECT_EQ(lb.value()->Generations(run).value().size(), 1u)
      << "no restart for a configuration error";
}

// Every rank exits 2 because its corpus is missing.
TEST(ConfigError, IsNotRestarted) {
  TempDir dir;
  ExpectFailsAsConfigError(dir,
                           "name: nodata\nmodel: {d_model: 16, heads: 2}\n"
                           "data: {kind: file, path: absent.tok}\nschedule: {steps: 5}\n"
                           "world: {hosts: 1, ranks_per_host: 2}\nlimits: {max_restarts: 5}\n");
}

// A CUDA job on a host without a GPU: vigil-train hands over to
// vigil-train-cuda (where the build has CUDA), which finds no device; either
// way the rank exits 2 and says why in its log.
TEST(ConfigError, CudaJobOnAHostWithoutAGpu) {
  if (::access((std::string(VIGIL_BIN_DIR) + "/vigil-train-cuda").c_str(), X_OK) == 0 &&
      ::access("/dev/nvidia0", F_OK) == 0) {
    GTEST_SKIP() << "this host has a GPU";
  }
  TempDir dir;
  ExpectFailsAsConfigError(dir,
                           "name: nogpu\nmodel: {d_model: 16, heads: 2}\nschedule: {steps: 5}\n"
                           "world: {hosts: 1, ranks_per_host: 2, device: cuda}\n");
  // The rank whose exit vigild saw first said why; the other may have been
  // torn down before it got as far (loading CUDA takes a while).
  const std::string logs = testing::Slurp(dir / "work/logs/rank-0.gen-0.log") +
                           testing::Slurp(dir / "work/logs/rank-1.gen-0.log");
  EXPECT_NE(logs.find("world.device is 'cuda' but"), std::string::npos) << logs;
}

}  // namespace
}  // namespace vigil
