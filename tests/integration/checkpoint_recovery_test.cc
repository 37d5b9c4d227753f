// End to end, through `vigil run` with real vigild, agents and Gloo ranks:
// damaged checkpoints are detected, skipped, logged and never loaded; a job
// that runs out of good checkpoints pauses instead of starting over; a full
// disk fails saves, not the job. Each surviving run must end with exactly the
// parameters of an undisturbed one.
#include <sys/mount.h>

#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
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

JobRun VigilRun(const TempDir& dir, const std::string& job, const std::string& workdir,
                const std::string& extra) {
  JobRun out = testing::VigilRun(job, workdir, extra, dir.path());
  EXPECT_FALSE(out.summary.is_discarded()) << "last stdout line is not JSON\n" << out.err;
  return out;
}

// tiny.yaml with lines added under its checkpoint section.
std::string TinyWith(const TempDir& dir, const std::string& checkpoint_lines) {
  std::string yaml = ReadFile(kTiny).value();
  const std::string anchor = "  every_steps: 25\n";
  const auto at = yaml.find(anchor);
  EXPECT_NE(at, std::string::npos);
  yaml.insert(at + anchor.size(), checkpoint_lines);
  const std::string path = dir / "job.yaml";
  std::ofstream(path) << yaml;
  return path;
}

class CheckpointRecovery : public ::testing::Test {
 protected:
  // The undisturbed run's parameters, computed once for the suite.
  static void SetUpTestSuite() {
    TempDir dir;
    const JobRun clean = VigilRun(dir, kTiny, dir / "clean", "");
    ASSERT_EQ(clean.exit_code, 0) << clean.err;
    clean_digest_ = new std::string(clean.summary.value("params_digest", ""));
  }
  static void TearDownTestSuite() { delete clean_digest_; }

  std::unique_ptr<Logbook> OpenLogbook(const std::string& workdir) {
    auto lb = Logbook::Open(workdir + "/logbook.sqlite", false);
    EXPECT_TRUE(lb.ok()) << lb.status().ToString();
    return lb.ok() ? std::move(lb.value()) : nullptr;
  }

  static std::string* clean_digest_;
  TempDir dir_;
};
std::string* CheckpointRecovery::clean_digest_ = nullptr;

// A flipped byte passes vigild's cheap check (manifest, sizes); the ranks'
// checksums catch it, all of them refuse the checkpoint together, and the
// job falls back to the one before, ending bit-exact.
TEST_F(CheckpointRecovery, FlippedByteIsFoundByTheRanksAndSkipped) {
  const std::string work = dir_ / "flip";
  const JobRun run =
      VigilRun(dir_, kTiny, work, "--chaos corrupt-checkpoint:flip@110 --chaos kill-rank:1@115");
  ASSERT_EQ(run.exit_code, 0) << run.err;
  EXPECT_EQ(run.summary["status"], "succeeded");
  EXPECT_EQ(run.summary["params_digest"], *clean_digest_);
  EXPECT_EQ(run.summary["restarts"], 1);
  EXPECT_EQ(run.summary["checkpoint_fallbacks"], 1);
  auto lb = OpenLogbook(work);
  ASSERT_TRUE(lb);
  const int64_t id = run.summary["run_id"];
  int corrupt_events = 0;
  const auto events = lb->Events(id).value();
  for (const auto& e : events) {
    if (e.kind != "checkpoint_corrupt") continue;
    ++corrupt_events;
    const json d = json::parse(e.detail_json);
    EXPECT_NE(d["checkpoint"].get<std::string>().find("step-00000100"), std::string::npos);
    EXPECT_NE(d["reason"].get<std::string>().find("fail their checksum"), std::string::npos)
        << d.dump();
    EXPECT_EQ(d["fallback"], 1);
  }
  EXPECT_EQ(corrupt_events, 1);
  std::map<std::string, int> actions;
  const auto interventions = lb->Interventions(id).value();
  for (const auto& i : interventions) actions[i.action]++;
  EXPECT_EQ(actions["fallback_to_older_checkpoint"], 1);
  EXPECT_EQ(actions["restart_from_latest"], 1);
  const auto gens = lb->Generations(id).value();
  ASSERT_EQ(gens.size(), 3u);
  EXPECT_EQ(gens[1].resumed_from_step.value_or(-1), 100);
  EXPECT_EQ(gens[2].resumed_from_step.value_or(-1), 75);
  // Step 100 is saved again after the fallback: the damaged copy's row stays
  // corrupt; the new one is a row of its own (since deleted by retention).
  std::vector<std::string> states_of_100;
  const auto checkpoints = lb->Checkpoints(id).value();
  for (const auto& c : checkpoints) {
    if (c.step == 100) states_of_100.push_back(c.state);
  }
  EXPECT_EQ(states_of_100, (std::vector<std::string>{"deleted", "corrupt"}));
}

// A truncated shard or a garbled manifest is caught by vigild before any
// rank is launched at it.
TEST_F(CheckpointRecovery, StructuralDamageIsCaughtBeforeLaunch) {
  for (const char* how : {"truncate", "garble-manifest", "remove-shard"}) {
    SCOPED_TRACE(how);
    const std::string work = dir_ / how;
    const JobRun run =
        VigilRun(dir_, kTiny, work,
                 std::string("--chaos corrupt-checkpoint:") + how + "@110 --chaos kill-rank:2@115");
    ASSERT_EQ(run.exit_code, 0) << run.err;
    EXPECT_EQ(run.summary["params_digest"], *clean_digest_);
    auto lb = OpenLogbook(work);
    ASSERT_TRUE(lb);
    const int64_t id = run.summary["run_id"];
    int corrupt = 0;
    const auto events = lb->Events(id).value();
    for (const auto& e : events) {
      if (e.kind != "checkpoint_corrupt") continue;
      ++corrupt;
      EXPECT_EQ(json::parse(e.detail_json)["found_by"], "vigild");
    }
    EXPECT_EQ(corrupt, 1);
    const auto gens = lb->Generations(id).value();
    ASSERT_EQ(gens.size(), 2u) << "the damaged checkpoint must not cost a generation";
    EXPECT_EQ(gens[1].resumed_from_step.value_or(-1), 75);
  }
}

// Past checkpoint.max_fallbacks the job pauses with a message that says
// why and what to do; it neither starts over nor loops. Its ranks are gone,
// vigild and the agents wait, and `vigil resume` continues it: the next
// older checkpoint, and still the undisturbed run's parameters.
TEST_F(CheckpointRecovery, RunningOutOfFallbacksPausesUntilResumed) {
  const std::string work = dir_ / "pause";
  const std::string job = TinyWith(dir_, "  max_fallbacks: 0\n");
  const pid_t run =
      testing::StartVigil({"run", job, "--workdir", work, "-o", "json", "--chaos",
                           "corrupt-checkpoint:flip@110", "--chaos", "kill-rank:1@115"},
                          dir_ / "run.log");
  ASSERT_GT(run, 0);
  const json paused = testing::WaitForJobState(work, "paused", std::chrono::seconds(120));
  ASSERT_FALSE(paused.is_null()) << testing::Slurp(dir_ / "run.log");
  ASSERT_TRUE(testing::WaitForLoggedRunStatus(work, "paused", std::chrono::seconds(5)));
  EXPECT_NE(paused.value("message", "").find("vigil resume --workdir"), std::string::npos)
      << paused.dump();
  {
    auto lb = OpenLogbook(work);
    ASSERT_TRUE(lb);
    EXPECT_EQ(lb->Runs().value()[0].status, "paused");
    bool paged = false;
    const auto interventions = lb->Interventions(lb->Runs().value()[0].id).value();
    for (const auto& i : interventions) {
      if (i.action != "pause_and_page") continue;
      paged = true;
      EXPECT_NE(i.outcome.find("max_fallbacks (0)"), std::string::npos) << i.outcome;
      EXPECT_NE(i.outcome.find("vigil ckpt verify"), std::string::npos) << i.outcome;
    }
    EXPECT_TRUE(paged);
  }
  // No rank holds a GPU while the job waits; vigild and the agents do wait.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  auto ranks_left = [&] {
    int n = 0;
    for (int pid : testing::ProcessesMentioning(work)) {
      if (testing::Slurp("/proc/" + std::to_string(pid) + "/cmdline").find("vigil-train") !=
          std::string::npos)
        ++n;
    }
    return n;
  };
  while (ranks_left() > 0 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_EQ(ranks_left(), 0);
  EXPECT_GE(testing::ProcessesMentioning(work).size(), 3u) << "vigild and two agents wait";

  auto resumed = RunCommand(kVigil + " resume --workdir " + work + " --by oncall --note 'checked'",
                            dir_.path());
  EXPECT_EQ(resumed.exit_code, 0) << resumed.err;
  int status = 0;
  ASSERT_EQ(::waitpid(run, &status, 0), run);
  EXPECT_EQ(WEXITSTATUS(status), 0) << testing::Slurp(dir_ / "run.log");
  testing::CommandResult out;
  out.out = testing::Slurp(dir_ / "run.log");
  const json summary = json::parse(out.LastLine(), nullptr, false);
  const std::string& log = out.out;
  ASSERT_FALSE(summary.is_discarded()) << log;
  EXPECT_EQ(summary["status"], "succeeded");
  EXPECT_EQ(summary["params_digest"], *clean_digest_);
  auto lb = OpenLogbook(work);
  ASSERT_TRUE(lb);
  bool human = false;
  const auto interventions = lb->Interventions(summary["run_id"]).value();
  for (const auto& i : interventions) {
    if (i.action == "resume") {
      human = true;
      EXPECT_EQ(i.actor, "human:oncall");
      EXPECT_NE(i.params_json.find("checked"), std::string::npos);
    }
  }
  EXPECT_TRUE(human);
  // A running (here: finished) job cannot be resumed.
  auto again = RunCommand(kVigil + " resume --workdir " + work, dir_.path());
  EXPECT_NE(again.exit_code, 0);
  EXPECT_TRUE(testing::ProcessesMentioning(work).empty());
}

// Retention keeps the newest keep_last and every keep_every-th, records each
// deletion, and what it deleted is gone from disk while what it kept verifies.
TEST_F(CheckpointRecovery, RetentionKeepsTheNewestAndTheArchive) {
  const std::string work = dir_ / "retention";
  const JobRun run =
      VigilRun(dir_, TinyWith(dir_, "  keep_last: 2\n  keep_every: 100\n"), work, "");
  ASSERT_EQ(run.exit_code, 0) << run.err;
  auto lb = OpenLogbook(work);
  ASSERT_TRUE(lb);
  const int64_t id = run.summary["run_id"];
  std::set<int64_t> kept, deleted;
  const auto checkpoints = lb->Checkpoints(id).value();
  for (const auto& c : checkpoints) {
    (c.state == "deleted" ? deleted : kept).insert(c.step);
    EXPECT_EQ(std::filesystem::exists(c.path), c.state != "deleted") << c.path;
  }
  EXPECT_EQ(kept, (std::set<int64_t>{100, 200, 275, 300}));
  int logged = 0;
  const auto interventions = lb->Interventions(id).value();
  for (const auto& i : interventions) {
    if (i.action != "delete_checkpoint" || i.actor != "auto:retention") continue;
    ++logged;
    // Committed before the deletion it orders, which then marks the row.
    EXPECT_EQ(i.outcome, "ordered");
    EXPECT_TRUE(deleted.count(nlohmann::json::parse(i.params_json)["checkpoint_step"]))
        << i.params_json;
  }
  EXPECT_EQ(logged, static_cast<int>(deleted.size()));
  EXPECT_EQ(deleted.size(), 8u);

  // The on-call tools on what is left.
  const std::string root = work + "/checkpoints/run-" + std::to_string(id);
  auto ls = RunCommand(kVigil + " ckpt ls " + work + "/checkpoints -o json", dir_.path());
  ASSERT_EQ(ls.exit_code, 0) << ls.err;
  const json listed = json::parse(ls.out);
  ASSERT_EQ(listed.size(), 4u);
  EXPECT_EQ(listed[0]["step"], 300);
  EXPECT_EQ(listed[0]["state"], "ok");
  auto inspect = RunCommand(kVigil + " ckpt inspect " + root + "/step-00000300", dir_.path());
  EXPECT_EQ(inspect.exit_code, 0) << inspect.err;
  EXPECT_NE(inspect.out.find("adam_v/h.1.mlp.fc.weight"), std::string::npos) << inspect.out;
  auto reshard = RunCommand(
      kVigil + " ckpt reshard " + root + "/step-00000300 " + (dir_ / "three") + " --world 3",
      dir_.path());
  ASSERT_EQ(reshard.exit_code, 0) << reshard.err;
  auto resharded = RunCommand(
      kVigil + " ckpt inspect -o json " + (dir_ / "three") + "/step-00000300", dir_.path());
  EXPECT_EQ(json::parse(resharded.out)["world_size"], 3);
  EXPECT_EQ(RunCommand(kVigil + " ckpt verify " + (dir_ / "three") + "/step-00000300", dir_.path())
                .exit_code,
            0);
  {
    std::fstream f(root + "/step-00000275/shard-1.bin",
                   std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(4000);
    f.put('\x7f');
  }
  auto bad = RunCommand(kVigil + " ckpt verify " + root + "/step-00000275", dir_.path());
  EXPECT_EQ(bad.exit_code, 1);
  EXPECT_NE(bad.err.find("shard shard-1.bin, tensor "), std::string::npos) << bad.err;
  EXPECT_EQ(RunCommand(kVigil + " ckpt verify " + (dir_ / "nothing"), dir_.path()).exit_code, 1);
}

// A disk too small for a second checkpoint: every later save fails (logged,
// its partial files removed), the first checkpoint stays intact, training
// goes on, and a rank killed at step 200 resumes from that first checkpoint.
TEST_F(CheckpointRecovery, AFullDiskFailsSavesNotTheJob) {
  const std::string mnt = dir_ / "small-disk";
  std::filesystem::create_directories(mnt);
  if (::mount("tmpfs", mnt.c_str(), "tmpfs", 0, "size=2m") != 0) {
    GTEST_SKIP() << "cannot mount a 2 MiB tmpfs here (" << std::strerror(errno)
                 << "); CheckpointFaults.AFullDiskFailsTheSaveAndLeavesOlderCheckpoints covers "
                    "the same path through the storage seam";
  }
  const std::string work = dir_ / "full";
  const JobRun run =
      VigilRun(dir_, TinyWith(dir_, "  dir: " + mnt + "\n"), work, "--chaos kill-rank:1@200");
  auto lb = OpenLogbook(work);
  int failed_saves = 0;
  std::string reason;
  if (lb) {
    const auto events = lb->Events(run.summary.value("run_id", 0)).value();
    for (const auto& e : events) {
      if (e.kind != "checkpoint_write_failed") continue;
      ++failed_saves;
      reason = json::parse(e.detail_json)["reason"];
    }
  }
  std::vector<std::string> left;
  for (const auto& e : std::filesystem::recursive_directory_iterator(mnt))
    left.push_back(e.path().string());
  auto verify = RunCommand(kVigil + " ckpt verify " + mnt + "/run-1/step-00000025", dir_.path());
  ::umount2(mnt.c_str(), MNT_DETACH);

  ASSERT_EQ(run.exit_code, 0) << run.err;
  EXPECT_EQ(run.summary["params_digest"], *clean_digest_);
  // Steps 50 to 200, then again from 50 to 300 after the resume from 25.
  EXPECT_GE(failed_saves, 11);
  EXPECT_NE(reason.find("No space left on device"), std::string::npos) << reason;
  EXPECT_EQ(verify.exit_code, 0) << verify.err;
  for (const auto& path : left)
    EXPECT_EQ(path.find(".tmp"), std::string::npos) << "debris of a failed save: " << path;
  const auto gens = lb->Generations(run.summary["run_id"]).value();
  ASSERT_EQ(gens.size(), 2u);
  EXPECT_EQ(gens[1].resumed_from_step.value_or(-1), 25);
}

}  // namespace
}  // namespace vigil
