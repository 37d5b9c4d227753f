// End to end through `vigil run` (real vigild, agents, Gloo ranks, signals):
// each failure class the detector knows is injected for real, detected once,
// answered by the playbook with interventions linked to its event, and the
// job finishes. Where the playbook only restarted, the parameters are the
// undisturbed run's; where it skipped data, they are the same for two runs
// of the same faults.
#include <gtest/gtest.h>

#include <cstdio>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "common/fs.h"
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

using testing::JobRun;

class Detection : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    TempDir dir;
    const JobRun clean = Run(dir, kTiny, dir / "clean", "");
    ASSERT_EQ(clean.exit_code, 0) << clean.err;
    clean_digest_ = new std::string(clean.summary.value("params_digest", ""));
  }
  static void TearDownTestSuite() { delete clean_digest_; }

  static JobRun Run(const TempDir& dir, const std::string& job, const std::string& workdir,
                    const std::string& extra) {
    JobRun out = testing::VigilRun(job, workdir, extra, dir.path());
    EXPECT_FALSE(out.summary.is_discarded()) << "last stdout line is not JSON\n" << out.err;
    return out;
  }

  // tiny.yaml with top-level sections added (detection:, playbook:).
  std::string TinyWith(const std::string& extra, const std::string& name = "job.yaml") {
    const std::string path = dir_ / name;
    std::ofstream(path) << ReadFile(kTiny).value() << extra;
    return path;
  }

  struct Book {
    std::vector<EventRow> events;
    std::vector<InterventionRow> interventions;
    std::vector<GenerationRow> generations;
    std::vector<CheckpointRow> checkpoints;
    std::vector<InterventionRow> On(int64_t event) const {
      std::vector<InterventionRow> out;
      for (const auto& i : interventions)
        if (i.event_id == event) out.push_back(i);
      return out;
    }
  };
  Book Read(const std::string& workdir) {
    Book b;
    auto lb = Logbook::Open(workdir + "/logbook.sqlite", false);
    EXPECT_TRUE(lb.ok());
    if (!lb.ok()) return b;
    const int64_t run = lb.value()->Runs().value().at(0).id;
    b.events = lb.value()->Events(run).value();
    b.interventions = lb.value()->Interventions(run).value();
    b.generations = lb.value()->Generations(run).value();
    b.checkpoints = lb.value()->Checkpoints(run).value();
    return b;
  }

  static std::string* clean_digest_;
  TempDir dir_;
};
std::string* Detection::clean_digest_ = nullptr;

// A SIGSTOPped rank: its peers block in their next all-reduce, nobody exits.
// vigild notices no progress past the adaptive timeout, the agents report
// the process states (the stopped one is named), its stacks and its peers'
// are dumped, and the restart ends bit-exactly.
TEST_F(Detection, AStoppedRankIsAHangNamedDumpedAndRestarted) {
  const std::string work = dir_ / "hang";
  const JobRun run =
      Run(dir_, TinyWith("detection: {hang_floor_ms: 1000}\n"), work, "--chaos hang-rank:2@60");
  ASSERT_EQ(run.exit_code, 0) << run.err;
  EXPECT_EQ(run.summary["params_digest"], *clean_digest_);
  const Book b = Read(work);
  ASSERT_EQ(b.events.size(), 1u);
  const EventRow& e = b.events[0];
  EXPECT_EQ(e.kind, "rank_hang");
  EXPECT_EQ(e.rank.value_or(-1), 2);
  EXPECT_FALSE(e.host.empty());
  const json d = json::parse(e.detail_json);
  EXPECT_EQ(d["suspect_reason"], "process state T") << d.dump();
  EXPECT_EQ(d["ranks"]["2"]["state"], "T");
  // Detection within the timeout (1 s floor here, the tiny job's steps are
  // ~30 ms) plus one second, from the SIGSTOP.
  const double latency = d["detection_latency_ms"];
  EXPECT_GE(latency,
            1000.0 - 100.0);  // not before the timeout (the last step may predate the stop)
  EXPECT_LT(latency, d["timeout_ms"].get<double>() + 1000.0);
  // Every rank's stacks were dumped before the teardown; the stopped one
  // from /proc (gdb would resume it), the others with gdb.
  for (const char* rank : {"0", "1", "2", "3"}) {
    const std::string file = d["ranks"][rank]["stack_file"];
    const std::string text = testing::Slurp(file);
    EXPECT_NE(text.find("## thread"), std::string::npos) << file << ":\n" << text;
    if (std::string(rank) == "2") {
      EXPECT_NE(text.find("the process is stopped"), std::string::npos) << text;
    } else {
      EXPECT_NE(text.find("# gdb backtrace"), std::string::npos) << text;
    }
  }
  const auto answers = b.On(e.id);
  ASSERT_EQ(answers.size(), 1u);
  EXPECT_EQ(answers[0].action, "restart_from_latest");
  EXPECT_EQ(answers[0].actor, "auto:restart");
  ASSERT_EQ(b.generations.size(), 2u);
  EXPECT_EQ(b.generations[1].cause_intervention_id.value_or(-1), answers[0].id);
  EXPECT_TRUE(testing::ProcessesMentioning(work).empty());
}

// A NaN in one rank's gradient reaches every rank through the all-reduce.
// The ranks refuse the update (exit 5); the default playbook resumes from a
// checkpoint taken before that step and skips the batch. Skipping is
// deterministic: the same faults give the same parameters.
TEST_F(Detection, ANanIsRefusedAndItsBatchSkipped) {
  auto nan_run = [&](const std::string& name) {
    const std::string work = dir_ / name;
    const JobRun run = Run(dir_, kTiny, work, "--chaos nan:1@70");
    EXPECT_EQ(run.exit_code, 0) << run.err;
    return std::make_pair(run, Read(work));
  };
  const auto [first, b] = nan_run("nan-1");
  ASSERT_EQ(b.events.size(), 1u);
  const EventRow& e = b.events[0];
  EXPECT_EQ(e.kind, "nonfinite");
  const json d = json::parse(e.detail_json);
  EXPECT_EQ(d["grad_norm"], "non-finite") << d.dump();
  EXPECT_EQ(d["exit_code"], 5);
  const int64_t anomaly = e.step.value_or(-1);
  EXPECT_GT(anomaly, 70);
  const auto answers = b.On(e.id);
  ASSERT_EQ(answers.size(), 2u);
  EXPECT_EQ(answers[0].action, "restart_from_latest");
  EXPECT_EQ(answers[1].action, "skip_batches");
  EXPECT_EQ(json::parse(answers[1].params_json)["batches"], 1);
  ASSERT_EQ(b.generations.size(), 2u);
  EXPECT_LT(b.generations[1].resumed_from_step.value_or(1 << 30), anomaly);
  // The rank says the skip happened.
  const std::string log = testing::Slurp(dir_ / "nan-1/logs/rank-0.gen-1.log");
  EXPECT_NE(log.find("skipping 1 batches of data at step " + std::to_string(anomaly - 1)),
            std::string::npos)
      << log;
  EXPECT_NE(first.summary["params_digest"], *clean_digest_) << "a batch was skipped";
  // The NaN is injected by a signal once vigild sees step 70: the step it
  // lands on (and so the batch skipped) depends on timing. Two runs whose
  // NaN landed on the same step skip the same batch and end bit-exact.
  const auto [second, again] = nan_run("nan-2");
  ASSERT_EQ(again.events.size(), 1u);
  if (again.events[0].step == e.step) {
    EXPECT_EQ(second.summary["params_digest"], first.summary["params_digest"]);
  } else {
    std::printf("the second run's NaN landed on step %lld, the first's on %lld: not compared\n",
                static_cast<long long>(again.events[0].step.value_or(-1)),
                static_cast<long long>(anomaly));
  }
  EXPECT_TRUE(testing::ProcessesMentioning(dir_ / "nan-1").empty());
}

// A rank that turns slow (SIGURG: it idles three times its compute time
// each step) makes every rank slow, but only its compute time grows: its
// peers wait for it inside the collectives. It is named a straggler once,
// the default playbook pages and keeps training, and nothing else changes.
TEST_F(Detection, ASlowRankIsAStragglerPagedNotRestarted) {
  const std::string work = dir_ / "slow";
  const JobRun run = Run(dir_, kTiny, work, "--chaos slow-rank:2@60");
  ASSERT_EQ(run.exit_code, 0) << run.err;
  EXPECT_EQ(run.summary["params_digest"], *clean_digest_);
  EXPECT_EQ(run.summary["restarts"], 0);
  const Book b = Read(work);
  ASSERT_EQ(b.events.size(), 1u) << "one straggler, reported once";
  const EventRow& e = b.events[0];
  EXPECT_EQ(e.kind, "straggler");
  EXPECT_EQ(e.rank, 2);
  const json d = json::parse(e.detail_json);
  EXPECT_GT(d["factor"].get<double>(), 2.0) << d.dump();
  EXPECT_GT(e.step.value_or(0), 60);
  EXPECT_LE(e.step.value_or(1000), 60 + 3 * 20) << "within two windows of 20 steps, plus one";
  const auto answers = b.On(e.id);
  ASSERT_EQ(answers.size(), 2u);
  EXPECT_EQ(answers[0].action, "page");
  EXPECT_EQ(answers[1].action, "continue_training");
  ASSERT_EQ(b.generations.size(), 1u);
}

// Scrambled targets on one rank: a real loss spike. A playbook that rolls
// back one checkpoint, halves the learning rate, switches to SGD and skips
// two batches: the checkpoint taken after the spike is never resumed from,
// the rolled-back ones are moved aside and marked, and the ranks apply every
// change.
TEST_F(Detection, ALossSpikeRollsBackWithAnotherOptimizerAndLearningRate) {
  std::ofstream(dir_ / "pb.yaml") << R"(version: 1
rules:
  - name: spike
    when: {kind: loss_spike}
    do: [{rollback: 1}, {scale_lr: 0.5}, {switch_optimizer: sgd}, {skip_batches: 2}]
  - name: rest
    when: {kind: any}
    do: [restart_from_latest]
)";
  EXPECT_EQ(RunCommand(kVigil + " playbook check " + (dir_ / "pb.yaml"), dir_.path()).exit_code, 0);
  const std::string work = dir_ / "spike";
  const JobRun run = Run(dir_, TinyWith("playbook: pb.yaml\n"), work, "--chaos spike:3@180");
  ASSERT_EQ(run.exit_code, 0) << run.err;
  const Book b = Read(work);
  ASSERT_EQ(b.events.size(), 1u);
  const EventRow& e = b.events[0];
  EXPECT_EQ(e.kind, "loss_spike");
  const json d = json::parse(e.detail_json);
  EXPECT_GT(d["factor"].get<double>(), 1.5) << d.dump();
  const int64_t spike = e.step.value_or(-1);
  std::vector<std::string> actions;
  for (const auto& i : b.On(e.id)) {
    actions.push_back(i.action);
    EXPECT_EQ(i.actor, "auto:spike");
  }
  EXPECT_EQ(actions,
            (std::vector<std::string>{"rollback", "scale_lr", "switch_optimizer", "skip_batches"}));
  // The newest checkpoint before the spike is step 175 (every 25): rolled
  // back over, the job resumes from 150.
  ASSERT_EQ(b.generations.size(), 2u);
  EXPECT_EQ(b.generations[1].resumed_from_step.value_or(-1), 150) << "spike at step " << spike;
  int rolled_back = 0;
  for (const auto& c : b.checkpoints) {
    if (c.state != "rolled_back") continue;
    ++rolled_back;
    EXPECT_GE(c.step, 175);
    EXPECT_NE(c.path.find(".rolled-back.gen-1"), std::string::npos) << c.path;
    EXPECT_TRUE(std::filesystem::exists(c.path + "/manifest.json")) << c.path;
  }
  EXPECT_GE(rolled_back, 1);
  const std::string log = testing::Slurp(work + "/logs/rank-0.gen-1.log");
  EXPECT_NE(log.find("optimizer switched from adamw to sgd"), std::string::npos) << log;
  EXPECT_NE(log.find("learning rate scale 0.5"), std::string::npos) << log;
  EXPECT_NE(log.find("skipping 2 batches"), std::string::npos) << log;
  EXPECT_EQ(run.summary["status"], "succeeded");
}

// `vigil chaos` against a running job: the fault is queued, fires, and is
// handled like any other; bad faults and bad playbooks are refused clearly.
// A full disk (SIGXFSZ: every write of rank 1's next shard fails with
// ENOSPC) fails one save. It is one checkpoint_write_failed event answered by
// continue_training, the abandoned save leaves no files, the checkpoints
// before it stay, and a rank killed later resumes from the one before the
// failed save: the run still ends bit-exactly.
TEST_F(Detection, AFullDiskFailsOneSaveAndTrainingGoesOn) {
  const std::string work = dir_ / "disk-full";
  const JobRun run = Run(dir_, kTiny, work, "--chaos disk-full:1@60 --chaos kill-rank:0@90");
  ASSERT_EQ(run.exit_code, 0) << run.err;
  EXPECT_EQ(run.summary["params_digest"], *clean_digest_);
  const Book b = Read(work);
  ASSERT_EQ(b.events.size(), 2u);
  const EventRow& full = b.events[0];
  EXPECT_EQ(full.kind, "checkpoint_write_failed");
  EXPECT_EQ(full.rank.value_or(-1), 1);
  EXPECT_EQ(full.step.value_or(-1), 75) << "the first save after the fault";
  const json d = json::parse(full.detail_json);
  EXPECT_NE(d["reason"].get<std::string>().find("No space left on device"), std::string::npos)
      << d.dump();
  const auto answers = b.On(full.id);
  ASSERT_EQ(answers.size(), 1u);
  EXPECT_EQ(answers[0].action, "continue_training");
  EXPECT_EQ(answers[0].actor, "auto:checkpoint-write-failed");
  EXPECT_EQ(b.events[1].kind, "process_exit");
  ASSERT_EQ(b.generations.size(), 2u);
  for (const auto& c : b.checkpoints) {
    if (c.generation_id == b.generations[0].id) {
      EXPECT_NE(c.step, 75) << c.path;
    }
  }
  EXPECT_EQ(b.generations[1].resumed_from_step.value_or(-1), 50);
  for (const auto& e : std::filesystem::recursive_directory_iterator(work + "/checkpoints")) {
    EXPECT_EQ(e.path().string().find(".tmp"), std::string::npos) << "debris: " << e.path();
  }
  const std::string log = testing::Slurp(work + "/logs/rank-1.gen-0.log");
  EXPECT_NE(log.find("chaos: the disk is full for the save of step 75"), std::string::npos) << log;
}

TEST_F(Detection, VigilChaosInjectsIntoARunningJob) {
  const std::string work = dir_ / "live";
  const pid_t run =
      testing::StartVigil({"run", kTiny, "--workdir", work, "-o", "json"}, dir_ / "run.log");
  ASSERT_GT(run, 0);
  ASSERT_FALSE(testing::WaitForJobState(work, "running", std::chrono::seconds(60)).is_null());
  auto bad = RunCommand(kVigil + " chaos kill-rank:9 --workdir " + work, dir_.path());
  EXPECT_EQ(bad.exit_code, 1);
  EXPECT_NE(bad.err.find("outside the world of 4 ranks"), std::string::npos) << bad.err;
  auto ok =
      RunCommand(kVigil + " chaos kill-rank:3 --workdir " + work + " --by tester", dir_.path());
  EXPECT_EQ(ok.exit_code, 0) << ok.err;
  int status = 0;
  ASSERT_EQ(::waitpid(run, &status, 0), run);
  EXPECT_EQ(WEXITSTATUS(status), 0) << testing::Slurp(dir_ / "run.log");
  const Book b = Read(work);
  ASSERT_EQ(b.events.size(), 1u);
  EXPECT_EQ(b.events[0].kind, "process_exit");
  EXPECT_EQ(b.events[0].rank.value_or(-1), 3);
  testing::CommandResult out;
  out.out = testing::Slurp(dir_ / "run.log");
  EXPECT_EQ(json::parse(out.LastLine(), nullptr, false).value("params_digest", ""), *clean_digest_);

  std::ofstream(dir_ / "broken.yaml")
      << "version: 1\nrules:\n  - name: x\n    when: {kind: any}\n    do: [restart_from_latest, "
         "{scale_lr: zero}]\n";
  auto check = RunCommand(kVigil + " playbook check " + (dir_ / "broken.yaml"), dir_.path());
  EXPECT_EQ(check.exit_code, 1);
  EXPECT_NE(check.err.find("broken.yaml:5:42: rules[0] (x).do[1].scale_lr: expected a number"),
            std::string::npos)
      << check.err;
  // `vigil run` refuses a job whose playbook is broken, before starting anything.
  auto refused = RunCommand(kVigil + " run " + TinyWith("playbook: broken.yaml\n", "b.yaml") +
                                " --workdir " + (dir_ / "never"),
                            dir_.path());
  EXPECT_EQ(refused.exit_code, 2);
  EXPECT_NE(refused.err.find("broken.yaml:5:42"), std::string::npos) << refused.err;
  EXPECT_FALSE(std::filesystem::exists(dir_ / "never"));
}

}  // namespace
}  // namespace vigil
