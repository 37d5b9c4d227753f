// Scenario tests of the job controller's checkpoints: the checkpoint the
// restart row names is the one launched, chosen off the event loop (the
// teardown waits for it; a stop cancels it; a file system that never
// answers pauses the job), saves committed during a rolling-back teardown
// rolled back over too, fallbacks past corrupt checkpoints and running out
// of them, failed saves, and retention (never what a choice may use). On
// fake time, without a process (controller_test.h).
#include <gtest/gtest.h>

#include <filesystem>

#include "tests/unit/controller_test.h"

namespace vigil::coordinator::testing {
namespace {

// Regression: the checkpoint was chosen twice, once for the row and again
// at launch, so a checkpoint committed during the teardown was resumed from
// while the logbook named another.
TEST(Scenario, TheCheckpointTheRowNamesIsTheOneLaunched) {
  ControllerBench b;
  b.Start();
  b.Step(60);
  b.Exit(1, 0, 9);
  const auto restart = b.Interventions("restart_from_latest").at(0);
  EXPECT_EQ(Params(restart)["checkpoint"], b.Checkpoint(50));
  b.CommitAt(75);  // the dying generation's last save lands during the teardown
  b.ConfirmTeardown();
  EXPECT_EQ(b.ResumedFrom(), Params(restart)["checkpoint"].get<std::string>());
  EXPECT_EQ(b.journal.generations().back().resumed_from_path, b.Checkpoint(50));
}

// A restart before a numerical anomaly rolls back over a save the dying
// generation commits during the teardown, as over any newer checkpoint.
TEST(Scenario, ASaveCommittedDuringARollbackTeardownIsRolledBackToo) {
  ControllerBench b;
  b.Start();
  b.Step(60);
  b.Step(1, {}, 10.0);  // a loss spike at step 61: restart from 50
  b.CommitAt(75);
  b.ConfirmTeardown();
  b.Settle();
  EXPECT_EQ(b.ResumedFrom(), b.Checkpoint(50));
  EXPECT_TRUE(std::filesystem::exists(b.Checkpoint(75) + ".rolled-back.gen-1"));
  int seen = 0;
  for (const auto& c : b.journal.checkpoints()) {
    if (c.step != 75) continue;
    ++seen;
    EXPECT_EQ(c.state, "rolled_back");
  }
  EXPECT_EQ(seen, 1);
}

// The checkpoint is chosen off the event loop (the probe reads files); the
// generation is condemned at once, but its teardown is ordered only once
// the restart that names the checkpoint is recorded.
TEST(Scenario, TheCheckpointIsChosenOffTheLoopAndTheTeardownWaitsForIt) {
  ControllerBench b;
  b.Start();
  b.Step(30);
  const int probes = b.probes;
  b.auto_settle = false;
  b.Exit(1, 0, 9);
  EXPECT_EQ(b.state(), JobState::kRecovering);
  EXPECT_EQ(b.probes, probes) << "a manifest was read on the event loop";
  EXPECT_TRUE(b.agents.Killed(0).empty()) << "torn down before the restart was recorded";
  EXPECT_TRUE(b.Interventions("restart_from_latest").empty());
  b.Step();  // steps in flight detect nothing more
  EXPECT_EQ(b.Events().size(), 1u);
  b.Settle();
  EXPECT_EQ(b.probes, probes + 1);
  ASSERT_EQ(b.Interventions("restart_from_latest").size(), 1u);
  EXPECT_EQ(Params(b.Interventions("restart_from_latest")[0])["checkpoint"], b.Checkpoint(25));
  EXPECT_EQ(b.agents.Killed(0), (std::set<int>{0, 1}));
  b.auto_settle = true;
  b.Recover();
  EXPECT_EQ(b.ResumedFrom(), b.Checkpoint(25));
  EXPECT_EQ(b.state(), JobState::kRunning);
}

// A save the dying generation commits while a rolling-back restart still
// chooses its checkpoint is rolled back over too.
TEST(Scenario, ASaveCommittedWhileTheCheckpointIsChosenIsRolledBackToo) {
  ControllerBench b;
  b.Start();
  b.Step(60);
  b.auto_settle = false;
  b.Step(1, {}, 10.0);  // a loss spike at step 61: restart from 50
  ASSERT_EQ(b.state(), JobState::kRecovering);
  b.CommitAt(75);
  b.auto_settle = true;
  b.Settle();
  b.ConfirmTeardown();
  EXPECT_EQ(b.ResumedFrom(), b.Checkpoint(50));
  EXPECT_TRUE(std::filesystem::exists(b.Checkpoint(75) + ".rolled-back.gen-1"));
}

// vigild stopping while a restart chooses its checkpoint: the choice is
// dropped; what its probe finds is not recorded.
TEST(Scenario, AStopWhileTheCheckpointIsChosenEndsTheRun) {
  ControllerBench b;
  b.Start();
  b.Step(30);
  b.corrupt.insert(b.Checkpoint(25));
  b.auto_settle = false;
  b.Exit(1, 0, 9);
  b.controller->Stop("SIGTERM");
  b.Settle();
  EXPECT_EQ(b.state(), JobState::kCancelled);
  EXPECT_TRUE(b.Interventions("restart_from_latest").empty());
  EXPECT_TRUE(b.Events("checkpoint_corrupt").empty()) << "the walk went on after the stop";
  EXPECT_TRUE(b.agents.Launches(1).empty());
}

// Retention, while a choice is under way, spares every checkpoint the
// choice may still fall back to.
TEST(Scenario, RetentionSparesWhatTheChoiceMayFallBackTo) {
  ControllerBench b;  // keep_last: 3
  b.Start();
  b.Step(80);  // 25, 50, 75
  b.corrupt = {b.Checkpoint(75), b.Checkpoint(50)};
  b.auto_settle = false;
  b.Exit(1, 0, 9);
  b.CommitAt(100);  // the dying generation's last save: retention runs
  b.auto_settle = true;
  b.Settle();
  EXPECT_TRUE(b.Interventions("delete_checkpoint").empty());
  EXPECT_TRUE(std::filesystem::exists(b.Checkpoint(25)));
  ASSERT_EQ(b.Interventions("restart_from_latest").size(), 1u);
  EXPECT_EQ(Params(b.Interventions("restart_from_latest")[0])["checkpoint"], b.Checkpoint(25));
  b.Recover();
  EXPECT_EQ(b.ResumedFrom(), b.Checkpoint(25));
}

// A checkpoint choice the file system never answers pauses the job at
// checkpoint.choose_timeout_ms; the late answer changes nothing.
TEST(Scenario, AChoiceTheFileSystemNeverAnswersPausesTheJob) {
  ControllerBench b;
  b.Start();
  b.Step(30);
  b.auto_settle = false;
  b.Exit(1, 0, 9);
  b.clock.AdvanceMs(b.spec().checkpoint.choose_timeout_ms);  // the probe is still reading
  ASSERT_EQ(b.state(), JobState::kPaused);
  const auto pause = b.Interventions("pause_and_page");
  ASSERT_EQ(pause.size(), 1u);
  EXPECT_NE(pause[0].outcome.find("checkpoint.choose_timeout_ms"), std::string::npos)
      << pause[0].outcome;
  EXPECT_EQ(b.agents.Killed(0), (std::set<int>{0, 1})) << "the ranks are stopped all the same";
  b.auto_settle = true;
  b.Settle();  // the probe's late answer
  EXPECT_EQ(b.state(), JobState::kPaused);
  EXPECT_TRUE(b.Interventions("restart_from_latest").empty());
  b.ConfirmTeardown();
  ASSERT_TRUE(b.Resume("the file system is back").ok());
  EXPECT_EQ(b.ResumedFrom(), b.Checkpoint(25));
}

TEST(Scenario, ACorruptCheckpointIsSkippedForTheNextOlder) {
  ControllerBench b;
  b.Start();
  b.Step(80);
  b.corrupt = {b.Checkpoint(75)};
  b.Exit(1, 0, 9);
  const auto corrupt = b.Events("checkpoint_corrupt");
  ASSERT_EQ(corrupt.size(), 1u);
  EXPECT_EQ(Detail(corrupt[0])["found_by"], "vigild");
  EXPECT_EQ(b.ActionsFor(corrupt[0]), (V{"fallback_to_older_checkpoint"}));
  EXPECT_EQ(Params(b.Interventions("restart_from_latest").at(0))["checkpoint"], b.Checkpoint(50));
  b.ConfirmTeardown();
  EXPECT_EQ(b.ResumedFrom(), b.Checkpoint(50));
  // The ranks refuse step 50 (exit 4): a fallback to 25, not a restart.
  auto error = b.Report(3, wire::RankReport::ERROR);
  error.set_message("corrupt checkpoint: shard shard-3.bin fails its checksum");
  b.controller->OnRankReport(b.AgentOf(3), error);
  b.Settle();
  b.Exit(3, 4);
  const auto refused = b.Events("checkpoint_corrupt");
  ASSERT_EQ(refused.size(), 2u);
  EXPECT_EQ(Detail(refused[1])["found_by"], "rank 3");
  EXPECT_EQ(b.ActionsFor(refused[1]), (V{"fallback_to_older_checkpoint"}));
  b.ConfirmTeardown();
  EXPECT_EQ(b.ResumedFrom(), b.Checkpoint(25));
  EXPECT_EQ(b.controller->progress().restarts, 1) << "a fallback is not a restart";
  for (const auto& c : b.journal.checkpoints()) {
    if (c.step == 75 || c.step == 50) {
      EXPECT_EQ(c.state, "corrupt") << c.path;
    }
  }
}

TEST(Scenario, RunningOutOfCheckpointsPausesInsteadOfStartingOver) {
  ControllerBench b;
  b.Start();
  b.Step(80);
  b.corrupt = {b.Checkpoint(25), b.Checkpoint(50), b.Checkpoint(75)};
  b.Exit(1, 0, 9);
  EXPECT_EQ(b.Events("checkpoint_corrupt").size(), 3u);
  const auto exit = b.Events("process_exit").at(0);
  EXPECT_EQ(b.ActionsFor(exit), (V{"pause_and_page"}));
  EXPECT_EQ(b.state(), JobState::kPaused);
  EXPECT_NE(b.controller->progress().message.find("no committed checkpoint is left"),
            std::string::npos)
      << b.controller->progress().message;
  EXPECT_EQ(b.agents.Launches(1).size(), 0u);
  EXPECT_EQ(b.controller->progress().restarts, 0) << "the restart never happened";
}

TEST(Scenario, AFailedSaveIsRecordedAndTrainingGoesOn) {
  ControllerBench b;
  b.Start();
  b.Step(30);
  for (int rank = 0; rank < 4; ++rank) {
    auto r = b.Report(rank, wire::RankReport::CHECKPOINT_FAILED);
    r.set_step(50);
    r.set_message("No space left on device");
    b.controller->OnRankReport(b.AgentOf(rank), r);
    b.Settle();
  }
  const auto events = b.Events("checkpoint_write_failed");
  ASSERT_EQ(events.size(), 1u) << "one event per save, not per rank";
  EXPECT_EQ(b.ActionsFor(events[0]), (V{"continue_training"}));
  EXPECT_EQ(b.state(), JobState::kRunning);
}

TEST(Scenario, RetentionDeletesWhatKeepLastDoesNotKeep) {
  ControllerBench b;
  b.Start();
  b.Step(100);  // checkpoints 25, 50, 75, 100; keep_last 3
  b.Settle();
  const auto deleted = b.Interventions("delete_checkpoint");
  ASSERT_EQ(deleted.size(), 1u);
  EXPECT_EQ(Params(deleted[0])["checkpoint_step"], 25);
  EXPECT_FALSE(std::filesystem::exists(b.Checkpoint(25)));
  EXPECT_TRUE(std::filesystem::exists(b.Checkpoint(50)));
  for (const auto& c : b.journal.checkpoints()) {
    if (c.step == 25) {
      EXPECT_EQ(c.state, "deleted");
    }
  }
}

}  // namespace
}  // namespace vigil::coordinator::testing
