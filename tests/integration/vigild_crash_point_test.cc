// vigild SIGKILLed at exact points of its protocols (issue 18): after the
// teardown order of a restart and before the launch, during the launch,
// and while a checkpoint commits. Each is a crash point (common/crash_point.h)
// armed through the environment of `vigil run`, which starts a vigild
// again; whatever the dead one had done, the run must end in one
// consistent state: never two generations at once on a host, never a
// checkpoint in the logbook that is not committed on disk (nor one
// committed and never recorded), the result bit-exact.
#include <filesystem>

#include "checkpoint/checkpoint.h"
#include "checkpoint/storage.h"
#include "tests/integration/takeover_fixture.h"

namespace vigil {
namespace {

using nlohmann::json;
using testing::AgentLogs;
using testing::CoordinatorRestart;
using testing::EventsOfKind;
using testing::IntegrityCheck;
using testing::Slurp;
using testing::StartedRanks;

struct CrashRun {
  testing::JobRun run;
  bool fired = false;  // the crash point was reached: a vigild died there
  std::string workdir;
};

// `vigil run` with vigild dying once at `point` (POINT[@GENERATION]).
CrashRun RunWithCrashPoint(const testing::TempDir& dir, const std::string& job,
                           const std::string& name, const std::string& point,
                           const std::string& extra) {
  CrashRun c;
  c.workdir = dir / name;
  const std::string once = dir / (name + ".fired");
  c.run = testing::VigilRun(job, c.workdir, extra, dir.path(),
                            "VIGIL_CRASH_AT=" + point + " VIGIL_CRASH_ONCE=" + once);
  c.fired = std::filesystem::exists(once);
  return c;
}

// No host ran ranks of two generations at once: in each agent's log (its
// own order of events), a rank of generation G starts only once every rank
// of an older generation that it started has exited.
void ExpectOneGenerationAtATime(const std::string& workdir) {
  const std::regex started(R"(started rank (\d+) of generation (\d+) as pid (\d+))");
  const std::regex exited(R"(rank (\d+) \(pid (\d+)\) of generation (\d+) exited)");
  for (const auto& log : AgentLogs(workdir)) {
    std::istringstream in(Slurp(log));
    std::map<int, int> live;  // pid -> generation
    std::string line;
    std::smatch m;
    while (std::getline(in, line)) {
      if (std::regex_search(line, m, started)) {
        const int gen = std::stoi(m[2]);
        for (const auto& [pid, g] : live) {
          EXPECT_GE(g, gen) << log << ": generation " << gen << " started while pid " << pid
                            << " of generation " << g << " lived\n"
                            << line;
        }
        live[std::stoi(m[3])] = gen;
      } else if (std::regex_search(line, m, exited)) {
        live.erase(std::stoi(m[2]));
      }
    }
  }
}

// The logbook's generations follow one another: each ended before the next began.
void ExpectGenerationsInSequence(Logbook& lb, int64_t run) {
  const auto gens = lb.Generations(run).value();
  for (size_t i = 1; i < gens.size(); ++i) {
    ASSERT_TRUE(gens[i - 1].ended_at_us.has_value()) << "generation " << gens[i - 1].number;
    EXPECT_LE(*gens[i - 1].ended_at_us, gens[i].started_at_us) << "generation " << gens[i].number;
    EXPECT_EQ(gens[i].number, gens[i - 1].number + 1);
  }
}

// What the logbook calls committed is exactly what is committed on disk,
// and each of those verifies.
void ExpectCheckpointsAsOnDisk(Logbook& lb, int64_t run, const std::string& workdir) {
  const std::string root = workdir + "/checkpoints/run-" + std::to_string(run);
  auto* storage = checkpoint::Storage::Default();
  std::set<std::string> recorded, on_disk;
  const auto rows = lb.Checkpoints(run).value();
  for (const auto& c : rows) {
    if (c.state != checkpoint_state::kCommitted) continue;
    EXPECT_TRUE(recorded.insert(std::filesystem::path(c.path).filename()).second)
        << c.path << " recorded twice";
    const Status st = checkpoint::VerifyCheckpoint(storage, c.path);
    EXPECT_TRUE(st.ok()) << c.path << ": " << st.ToString();
  }
  const auto listed = checkpoint::ListCommitted(storage, root);
  ASSERT_TRUE(listed.ok()) << listed.status().ToString();
  for (const auto& d : listed.value()) on_disk.insert(std::filesystem::path(d).filename());
  EXPECT_EQ(recorded, on_disk);
  EXPECT_FALSE(recorded.empty());
}

// What every crash point leaves: a run that succeeded, bit-exactly, with
// vigild started again once, and nothing left running.
void ExpectConsistentEnd(const CrashRun& c, const json& clean, Logbook& lb) {
  EXPECT_TRUE(c.fired) << "the crash point was never reached\n" << c.run.err;
  EXPECT_EQ(c.run.exit_code, 0) << c.run.err;
  EXPECT_EQ(c.run.summary.value("status", ""), "succeeded") << c.run.summary.dump() << c.run.err;
  EXPECT_EQ(c.run.summary["params_digest"], clean["params_digest"]) << c.run.err;
  EXPECT_NE(c.run.err.find("starting it again (1 of 10)"), std::string::npos) << c.run.err;
  const int64_t id = c.run.summary.value("run_id", int64_t{0});
  EXPECT_EQ(EventsOfKind(lb, id, kind::kCoordinatorRestart).size(), 1u);
  ExpectGenerationsInSequence(lb, id);
  ExpectOneGenerationAtATime(c.workdir);
  ExpectCheckpointsAsOnDisk(lb, id, c.workdir);
  EXPECT_EQ(IntegrityCheck(c.workdir + "/logbook.sqlite"), "ok");
  EXPECT_TRUE(testing::ProcessesMentioning(c.workdir).empty());
}

class Restart : public CoordinatorRestart, public ::testing::WithParamInterface<std::string> {};

TEST_P(Restart, KilledDuringARestartTheRestartIsCarriedOutOnce) {
  // Rank 1 dies at step 100. vigild dies after ordering the teardown, when
  // the first agent confirms it, before the launch (its successor finds the
  // restart recorded, the generation ended, and launches it); or during the
  // launch, when the new generation's first rank reports it started (its
  // successor adopts the generation as it stands).
  const auto c = RunWithCrashPoint(dir_, job_, "restart", GetParam(), "--chaos kill-rank:1@100");
  auto lb = Logbook::Open(c.workdir + "/logbook.sqlite", false);
  ASSERT_TRUE(lb.ok());
  ExpectConsistentEnd(c, *clean_, *lb.value());
  EXPECT_EQ(c.run.summary["restarts"], 1) << c.run.err;
  const int64_t id = c.run.summary["run_id"];
  EXPECT_EQ(lb.value()->Generations(id).value().size(), 2u);
  EXPECT_EQ(EventsOfKind(*lb.value(), id, kind::kProcessExit).size(), 1u);
  EXPECT_EQ(StartedRanks(c.workdir).size(), 8u);  // every rank in both generations, none in a third
}

INSTANTIATE_TEST_SUITE_P(Points, Restart,
                         ::testing::Values("teardown-confirmed@0", "rank-started@1"),
                         [](const auto& info) {
                           return info.param == "teardown-confirmed@0"
                                      ? std::string("AfterTheTeardownOrder")
                                      : std::string("DuringTheLaunch");
                         });

class CheckpointCommit : public CoordinatorRestart,
                         public ::testing::WithParamInterface<std::string> {};

TEST_P(CheckpointCommit, KilledWhileACheckpointCommitsNothingIsLostOrInvented) {
  // No fault but vigild's death: the ranks train on, their save completes
  // while no vigild is there (or its report dies unrecorded with the one
  // that received it), and the successor records it from the agent's resend.
  const auto c = RunWithCrashPoint(dir_, job_, "commit", GetParam(), "");
  auto lb = Logbook::Open(c.workdir + "/logbook.sqlite", false);
  ASSERT_TRUE(lb.ok());
  ExpectConsistentEnd(c, *clean_, *lb.value());
  EXPECT_EQ(c.run.summary["restarts"], 0) << c.run.err;
  EXPECT_EQ(StartedRanks(c.workdir).size(), 4u);  // nothing restarted
  const int64_t id = c.run.summary["run_id"];
  EXPECT_EQ(lb.value()->Events(id).value().size(), 1u);  // the restart, nothing detected
}

INSTANTIATE_TEST_SUITE_P(Points, CheckpointCommit,
                         ::testing::Values("saving@0", "checkpoint-reported@0"),
                         [](const auto& info) {
                           return info.param == "saving@0" ? std::string("WhileSaving")
                                                           : std::string("OnItsReport");
                         });

}  // namespace
}  // namespace vigil
