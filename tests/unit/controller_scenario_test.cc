// Scenario tests of the job controller: every detection kind through the
// default playbook, restart limits and the restart loop, pause and resume,
// spare, shrink and regrow, rollback and skip (its checkpoints:
// controller_checkpoint_test.cc). Events in, orders and logbook rows out,
// on fake time (controller_test.h): the whole set runs in well under a
// second, without a process.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "tests/unit/controller_test.h"

namespace vigil::coordinator::testing {
namespace {

using nlohmann::json;

TEST(JobStateMachine, AllowsOnlyTheMovesOfItsTable) {
  using S = JobState;
  EXPECT_TRUE(JobStateMachine::Allowed(S::kPending, S::kRendezvous));
  EXPECT_TRUE(JobStateMachine::Allowed(S::kRendezvous, S::kRunning));
  EXPECT_TRUE(JobStateMachine::Allowed(S::kRunning, S::kRecovering));
  EXPECT_TRUE(JobStateMachine::Allowed(S::kRecovering, S::kRendezvous));
  EXPECT_TRUE(JobStateMachine::Allowed(S::kPaused, S::kRendezvous));
  EXPECT_TRUE(JobStateMachine::Allowed(S::kRunning, S::kFailed));
  EXPECT_FALSE(JobStateMachine::Allowed(S::kPending, S::kRunning));
  EXPECT_FALSE(JobStateMachine::Allowed(S::kRecovering, S::kRunning));
  EXPECT_FALSE(JobStateMachine::Allowed(S::kPaused, S::kRunning));
  EXPECT_FALSE(JobStateMachine::Allowed(S::kPending, S::kSucceeded));
  EXPECT_FALSE(JobStateMachine::Allowed(S::kSucceeded, S::kRendezvous));
  EXPECT_FALSE(JobStateMachine::Allowed(S::kFailed, S::kPaused));
  // A signal to vigild cancels the job from any state but a terminal one.
  for (S from : {S::kPending, S::kRendezvous, S::kRunning, S::kRecovering, S::kPaused})
    EXPECT_TRUE(JobStateMachine::Allowed(from, S::kCancelled)) << JobStateName(from);
  EXPECT_TRUE(IsTerminal(S::kCancelled));
  EXPECT_FALSE(JobStateMachine::Allowed(S::kCancelled, S::kRendezvous));
  EXPECT_FALSE(JobStateMachine::Allowed(S::kSucceeded, S::kCancelled));

  std::vector<std::string> moves;
  JobStateMachine m([&](JobState from, JobState to, const std::string&) {
    moves.push_back(std::string(JobStateName(from)) + ">" + JobStateName(to));
  });
  EXPECT_FALSE(m.Move(S::kRunning, "skipping rendezvous"));
  EXPECT_EQ(m.state(), S::kPending);
  EXPECT_EQ(m.illegal_moves(), 1);
  EXPECT_TRUE(m.Move(S::kRendezvous, "launched"));
  EXPECT_TRUE(m.Move(S::kRendezvous, "again: no move"));
  EXPECT_EQ(moves, (V{"pending>rendezvous"}));
}

TEST(JobStateMachine, LeavingAStateCancelsItsTimers) {
  FakeClock clock;
  JobStateMachine m;
  auto timer = clock.NewTimer();
  m.Bind(timer.get(), {JobState::kRendezvous});
  bool fired = false;
  m.Move(JobState::kRendezvous, "launched");
  timer->Start(std::chrono::milliseconds(100), [&] { fired = true; });
  m.Move(JobState::kRunning, "first step");
  EXPECT_FALSE(timer->armed());
  clock.AdvanceMs(200);
  EXPECT_FALSE(fired);
}

TEST(FakeClock, FiresTimersInDeadlineOrderAtTheirDeadline) {
  FakeClock clock(0);
  auto a = clock.NewTimer(), b = clock.NewTimer();
  std::vector<std::pair<char, int64_t>> fired;
  a->Start(std::chrono::milliseconds(30), [&] { fired.push_back({'a', clock.NowMicros()}); });
  b->Start(std::chrono::milliseconds(10), [&] {
    fired.push_back({'b', clock.NowMicros()});
    b->Start(std::chrono::milliseconds(5), [&] { fired.push_back({'B', clock.NowMicros()}); });
  });
  clock.AdvanceMs(100);
  EXPECT_EQ(fired,
            (std::vector<std::pair<char, int64_t>>{{'b', 10000}, {'B', 15000}, {'a', 30000}}));
  EXPECT_EQ(clock.NowMicros(), 100000);
}

TEST(Scenario, AKilledRankRestartsFromTheNewestCheckpoint) {
  ControllerBench b;
  b.Start();
  EXPECT_EQ(b.state(), JobState::kRendezvous);
  ASSERT_EQ(b.agents.Launches(0).size(), 2u);
  b.Step(60);
  EXPECT_EQ(b.state(), JobState::kRunning);
  b.Exit(1, 0, 9);
  const auto events = b.Events();
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].kind, "process_exit");
  EXPECT_EQ(events[0].host, "host-0");
  EXPECT_EQ(events[0].rank.value_or(-1), 1);
  EXPECT_EQ(Detail(events[0])["signal_name"], "KILL");
  EXPECT_EQ(b.ActionsFor(events[0]), (V{"restart_from_latest"}));
  const auto restart = b.Interventions("restart_from_latest").at(0);
  EXPECT_EQ(Params(restart)["checkpoint"], b.Checkpoint(50));
  EXPECT_EQ(b.state(), JobState::kRecovering);
  EXPECT_EQ(b.agents.Killed(0), (std::set<int>{0, 1}));
  b.ConfirmTeardown();
  EXPECT_EQ(b.generation(), 1);
  EXPECT_EQ(b.ResumedFrom(), b.Checkpoint(50));
  const auto gens = b.journal.generations();
  ASSERT_EQ(gens.size(), 2u);
  EXPECT_EQ(gens[1].cause_intervention_id.value_or(-1), restart.id);
  EXPECT_EQ(gens[1].resumed_from_step.value_or(-1), 50);
  EXPECT_TRUE(gens[0].ended_at_us.has_value());
  b.Step();
  EXPECT_EQ(b.state(), JobState::kRunning);
  EXPECT_EQ(b.controller->progress().restarts, 1);
}

TEST(Scenario, EveryRankFinishingEndsTheRunSucceeded) {
  ControllerBench b;
  b.Start();
  b.Step(10);
  for (int rank = 0; rank < 4; ++rank) b.Exit(rank, 0);
  EXPECT_EQ(b.state(), JobState::kSucceeded);
  EXPECT_EQ(b.journal.run_status(), "succeeded");
  EXPECT_EQ(b.agents.Count(wire::Envelope::kShutdown), 2);
  EXPECT_TRUE(b.Events().empty());
}

TEST(Scenario, AHangIsFoundAndTheStoppedRankNamed) {
  ControllerBench b;
  b.Start();
  b.Step(30);
  b.Advance(1900);
  b.controller->OnTick();
  b.Settle();
  EXPECT_EQ(b.agents.Count(wire::Envelope::kDiagnoseRanks), 0) << "not yet past the floor";
  b.Advance(200);
  b.controller->OnTick();
  b.Settle();
  ASSERT_EQ(b.agents.Count(wire::Envelope::kDiagnoseRanks), 2);
  auto diagnosis = [&](int agent, std::vector<std::pair<int, std::string>> ranks) {
    wire::Diagnosis d;
    d.set_generation(0);
    for (const auto& [rank, state] : ranks) {
      auto* r = d.add_ranks();
      r->set_rank(static_cast<uint32_t>(rank));
      r->set_state(state);
      r->set_cpu_ticks(100);
    }
    b.controller->OnDiagnosis(agent, d);
    b.Settle();
  };
  diagnosis(0, {{0, "S"}, {1, "S"}});
  EXPECT_TRUE(b.Events().empty()) << "waits for every agent's answer";
  diagnosis(1, {{2, "S"}, {3, "T"}});
  const auto hangs = b.Events("rank_hang");
  ASSERT_EQ(hangs.size(), 1u);
  EXPECT_EQ(hangs[0].rank.value_or(-1), 3);
  EXPECT_EQ(hangs[0].host, "host-1");
  const json d = Detail(hangs[0]);
  EXPECT_EQ(d["suspect_reason"], "process state T");
  EXPECT_EQ(d["timeout_ms"], 2000.0);
  EXPECT_EQ(d["ranks"]["3"]["cpu_ticks"], 100);
  EXPECT_EQ(b.ActionsFor(hangs[0]), (V{"restart_from_latest"}));
  EXPECT_EQ(b.state(), JobState::kRecovering);
}

TEST(Scenario, AHangProbeNobodyAnswersNamesTheRankFurthestBehind) {
  ControllerBench b;
  b.Start();
  b.Step(30);
  b.Step(1, {2});
  b.Advance(2000);
  b.controller->OnTick();
  b.Settle();
  ASSERT_EQ(b.agents.Count(wire::Envelope::kDiagnoseRanks), 2);
  b.Advance(b.spec().detection.hang_probe_ms - 1);
  EXPECT_TRUE(b.Events().empty());
  b.Advance(1);
  const auto hangs = b.Events("rank_hang");
  ASSERT_EQ(hangs.size(), 1u);
  EXPECT_EQ(hangs[0].rank.value_or(-1), 2);
  EXPECT_EQ(Detail(hangs[0])["suspect_reason"], "furthest behind (step 30)");
}

TEST(Scenario, ALossSpikeSkipsDataThenEscalatesToARollbackWithALowerLearningRate) {
  ControllerBench b;
  b.Start();
  b.Step(60);
  b.Step(1, {}, 10.0);  // step 61
  const auto spikes = b.Events("loss_spike");
  ASSERT_EQ(spikes.size(), 1u);
  EXPECT_EQ(spikes[0].step.value_or(-1), 61);
  EXPECT_EQ(b.ActionsFor(spikes[0]), (V{"restart_from_latest", "skip_batches"}));
  b.ConfirmTeardown();
  auto launch = b.agents.Launches(1).begin()->second;
  EXPECT_EQ(launch.resume_from(), b.Checkpoint(50));
  EXPECT_EQ(launch.skip_batches(), 4u);
  EXPECT_EQ(launch.skip_at_step(), 57u) << "the four batches ending at the spike's step";
  b.Step(40);  // steps 51..90, a checkpoint at 75
  b.Step(1, {}, 10.0);
  const auto again = b.Events("loss_spike");
  ASSERT_EQ(again.size(), 2u);
  EXPECT_EQ(b.ActionsFor(again[1]), (V{"page", "rollback", "scale_lr", "skip_batches"}));
  const auto rollback = b.Interventions("rollback").at(0);
  EXPECT_EQ(Params(rollback)["checkpoint"], b.Checkpoint(50));
  EXPECT_EQ(Params(rollback)["rolled_back_steps"], json::array({75}));
  b.ConfirmTeardown();
  b.Settle();
  launch = b.agents.Launches(2).begin()->second;
  EXPECT_EQ(launch.resume_from(), b.Checkpoint(50));
  EXPECT_DOUBLE_EQ(launch.lr_scale(), 0.5);
  EXPECT_TRUE(std::filesystem::exists(b.Checkpoint(75) + ".rolled-back.gen-2"));
  EXPECT_FALSE(std::filesystem::exists(b.Checkpoint(75)));
  for (const auto& c : b.journal.checkpoints()) {
    if (c.step == 75) {
      EXPECT_EQ(c.state, "rolled_back");
    }
  }
}

TEST(Scenario, ANonFiniteGradientRestartsBeforeItsStepAndSkipsItsBatch) {
  ControllerBench b;
  b.Start();
  b.Step(60);
  auto nan = b.Report(2, wire::RankReport::NONFINITE);
  nan.set_step(61);
  nan.set_grad_norm(std::nan(""));
  nan.set_message("non-finite gradient norm at step 61");
  b.controller->OnRankReport(b.AgentOf(2), nan);
  b.Settle();
  b.Exit(2, 5);
  const auto events = b.Events("nonfinite");
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].step.value_or(-1), 61);
  EXPECT_EQ(Detail(events[0])["grad_norm"], "non-finite");
  EXPECT_EQ(b.ActionsFor(events[0]), (V{"restart_from_latest", "skip_batches"}));
  b.ConfirmTeardown();
  const auto launch = b.agents.Launches(1).begin()->second;
  EXPECT_EQ(launch.resume_from(), b.Checkpoint(50));
  EXPECT_EQ(launch.skip_batches(), 1u);
  EXPECT_EQ(launch.skip_at_step(), 60u);
}

TEST(Scenario, AStragglerIsReportedAndTrainingGoesOn) {
  ControllerBench b;
  b.Start();
  // Judged once a window (20 steps) on rank 0's report, with every rank's
  // window full; a straggler two windows running.
  b.Step(59, {}, 2.0, {1});
  EXPECT_TRUE(b.Events("straggler").empty());
  b.Step(1, {}, 2.0, {1});
  const auto events = b.Events("straggler");
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].rank.value_or(-1), 1);
  EXPECT_NEAR(Detail(events[0])["factor"].get<double>(), 3.0, 1e-9);
  EXPECT_EQ(b.ActionsFor(events[0]), (V{"page", "continue_training"}));
  EXPECT_EQ(b.state(), JobState::kRunning);
  EXPECT_TRUE(b.agents.Killed(0).empty());
}

TEST(Scenario, AStragglerIsReportedAgainOnlyAfterItRecovered) {
  ControllerBench b;
  b.Start();
  b.Step(60, {}, 2.0, {1});
  ASSERT_EQ(b.Events("straggler").size(), 1u);
  b.Step(20);  // one window's dip (contention eased for a moment)
  b.Step(40, {}, 2.0, {1});
  EXPECT_EQ(b.Events("straggler").size(), 1u) << "the same slow rank, not a new detection";
  b.Step(40);  // two windows at its peers' pace: recovered
  b.Step(40, {}, 2.0, {1});
  EXPECT_EQ(b.Events("straggler").size(), 2u) << "slow again after it recovered";
}

TEST(Scenario, ACollectiveErrorIsHeldWhileItsCauseArrives) {
  ControllerBench b;
  b.Start();
  b.Step(30);
  b.Exit(0, 3);
  EXPECT_TRUE(b.Events().empty()) << "held for limits.failure_settle_ms";
  b.Advance(300);
  b.Exit(3, 0, 9);
  b.Advance(2000);
  const auto events = b.Events();
  ASSERT_EQ(events.size(), 1u) << "the symptom is dropped for its cause";
  EXPECT_EQ(events[0].kind, "process_exit");
  EXPECT_EQ(events[0].rank.value_or(-1), 3);
}

TEST(Scenario, ACollectiveErrorAloneIsDetectedOnceSettled) {
  ControllerBench b;
  b.Start();
  b.Step(30);
  b.Exit(0, 3);
  b.Advance(b.spec().limits.failure_settle_ms - 1);
  EXPECT_TRUE(b.Events().empty());
  b.Advance(1);
  const auto events = b.Events("collective_error");
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].rank.value_or(-1), 0);
  EXPECT_EQ(b.ActionsFor(events[0]), (V{"restart_from_latest"}));
}

TEST(Scenario, ALostHostIsReplacedByASpare) {
  ControllerBench b("world: {hosts: 2, ranks_per_host: 2, spares: 1}\n");
  b.Start();
  EXPECT_EQ(b.agents.Launches(0).count(2), 0u) << "host-2 waits as a spare";
  b.Step(30);
  b.LoseAgent(1);
  const auto lost = b.Events("host_lost");
  ASSERT_EQ(lost.size(), 1u);
  EXPECT_EQ(lost[0].host, "host-1");
  EXPECT_EQ(b.ActionsFor(lost[0]), (V{"use_spare", "restart_from_latest"}));
  const auto spare = b.Interventions("use_spare").at(0);
  EXPECT_EQ(Params(spare)["spare"], "host-2");
  EXPECT_EQ(Params(spare)["replaced"], "host-1");
  b.ConfirmTeardown();
  const auto launches = b.agents.Launches(1);
  EXPECT_EQ(launches.size(), 2u);
  EXPECT_EQ(launches.count(2), 1u);
  EXPECT_EQ(launches.at(2).ranks(0), 2u) << "the spare runs the lost host's ranks";
  b.Step();
  EXPECT_EQ(b.state(), JobState::kRunning);
  EXPECT_EQ(b.controller->Hosts()[1]["state"], "lost");
  EXPECT_EQ(b.controller->Hosts()[2]["state"], "active");
}

TEST(Scenario, WithNoSpareTheWorldShrinksAndGrowsBackWhenAHostJoins) {
  ControllerBench b("world: {hosts: 2, ranks_per_host: 2, regrow: true}\n");
  b.Start();
  b.Step(30);
  b.LoseAgent(1);
  const auto lost = b.Events("host_lost").at(0);
  EXPECT_EQ(b.ActionsFor(lost), (V{"use_spare", "shrink_world", "restart_from_latest"}));
  b.ConfirmTeardown();
  const auto shrunk = b.agents.Launches(1);
  ASSERT_EQ(shrunk.size(), 1u);
  EXPECT_EQ(shrunk.at(0).world_size(), 2u);
  EXPECT_EQ(shrunk.at(0).batch_per_rank(), 16u) << "the global batch of 32 is kept";
  b.Step(10);
  const int joined = b.agents.Add("host-9");
  b.controller->OnAgentJoined(joined);
  b.Settle();
  b.Step(25);  // reaches the next checkpoint (step 50)
  ASSERT_EQ(b.Interventions("grow_world").size(), 1u);
  EXPECT_EQ(Params(b.Interventions("grow_world")[0])["to_world"], 4);
  EXPECT_EQ(b.state(), JobState::kRecovering);
  b.ConfirmTeardown();
  const auto grown = b.agents.Launches(2);
  ASSERT_EQ(grown.size(), 2u);
  EXPECT_EQ(grown.at(joined).world_size(), 4u);
  EXPECT_EQ(grown.at(joined).batch_per_rank(), 0u) << "the spec's own again";
  EXPECT_EQ(grown.at(0).resume_from(), b.Checkpoint(50));
}

TEST(Scenario, AnXid79CordonsTheHostAndASpareTakesItsPlace) {
  ControllerBench b("world: {hosts: 2, ranks_per_host: 2, spares: 1}\n");
  b.Start();
  b.Step(30);
  const int64_t seen_at = b.clock.NowMicros() - 5000;
  b.GpuFault(2, 79);
  const auto faults = b.Events("gpu_fault");
  ASSERT_EQ(faults.size(), 1u);
  EXPECT_EQ(faults[0].host, "host-1");
  EXPECT_EQ(faults[0].time_us, seen_at) << "the fault's own time";
  EXPECT_EQ(Detail(faults[0])["xid"], 79);
  EXPECT_EQ(b.ActionsFor(faults[0]),
            (V{"page", "cordon_host", "use_spare", "restart_from_latest"}));
  b.ConfirmTeardown();
  EXPECT_EQ(b.agents.Launches(1).count(2), 1u);
  EXPECT_EQ(b.controller->Hosts()[1]["state"], "cordoned");
  // A GPU fault during the restart: the host actions still apply, nothing more.
  b.Exit(0, 0, 9);
  b.GpuFault(3, 79);  // rank 3 now runs on host-2
  const auto during = b.Events("gpu_fault").at(1);
  EXPECT_EQ(b.ActionsFor(during), (V{"cordon_host", "use_spare", "none"}));
  EXPECT_EQ(b.state(), JobState::kRecovering);
}

TEST(Scenario, PastTheRestartLimitTheJobFails) {
  ControllerBench b("world: {hosts: 2, ranks_per_host: 2}\nlimits: {max_restarts: 2}\n");
  b.Start();
  b.Step(30);
  for (int rank : {0, 2}) {
    b.Exit(rank, 0, 9);
    b.Recover();
  }
  EXPECT_EQ(b.controller->progress().restarts, 2);
  b.Exit(1, 0, 9);
  EXPECT_EQ(b.state(), JobState::kFailed);
  EXPECT_EQ(b.ActionsFor(b.Events().back()), (V{"fail_job"}));
  EXPECT_EQ(b.journal.run_status(), "failed");
}

constexpr char kRestartOnly[] = R"(version: 1
rules:
  - name: lost-host
    when: {kind: host_lost}
    do: [restart_from_latest, use_spare]
  - name: restart
    when: {kind: any}
    do: [restart_from_latest]
restart_loop: {max: 2, within: 10m}
)";

// Under kRestartOnly, from a running job with no restart counted yet: two
// kills restart, the third pauses (the restart loop).
void ExpectTwoRestartsThenAPause(ControllerBench& b) {
  for (int i = 0; i < 2; ++i) {
    b.Exit(0, 0, 9);
    EXPECT_EQ(b.ActionsFor(b.Events().back()), (V{"restart_from_latest"})) << "restart " << i;
    b.Recover();
  }
  EXPECT_EQ(b.controller->progress().restarts, 2);
  b.Exit(0, 0, 9);
  EXPECT_EQ(b.ActionsFor(b.Events().back()), (V{"pause_and_page"})) << "the third real one";
}

TEST(Scenario, ARestartLoopPausesAndAPersonResumes) {
  ControllerBench b("world: {hosts: 2, ranks_per_host: 2}\n", kRestartOnly);
  b.Start();
  b.Step(30);
  EXPECT_FALSE(b.Resume().ok()) << "not paused";
  for (int i = 0; i < 2; ++i) {
    b.Exit(0, 0, 9);
    b.Recover();
  }
  b.Exit(0, 0, 9);
  const auto third = b.Events().back();
  EXPECT_EQ(b.ActionsFor(third), (V{"pause_and_page"}));
  EXPECT_EQ(b.state(), JobState::kPaused);
  EXPECT_EQ(b.journal.run_status(), "paused");
  b.ConfirmTeardown();
  EXPECT_EQ(b.generation(), 2) << "paused: nothing launched";
  ASSERT_TRUE(b.Resume("looked at it").ok());
  EXPECT_EQ(b.journal.run_status(), "running");
  EXPECT_EQ(b.Interventions("resume").at(0).event_id.value_or(-1), third.id);
  EXPECT_EQ(b.generation(), 3);
  b.Step();
  EXPECT_EQ(b.state(), JobState::kRunning);
}

// Regression: a restart was counted when it was decided, even when the
// controller then paused instead, so restart-loop limits tripped on
// restarts that never happened.
TEST(Scenario, ARestartThatBecameAPauseDoesNotCountTowardTheLoop) {
  ControllerBench b("world: {hosts: 2, ranks_per_host: 2}\n", kRestartOnly);
  b.Start();
  b.Step(30);
  b.LoseAgent(1);  // decided: restart, use_spare; done: no spare, so a pause
  EXPECT_EQ(b.state(), JobState::kPaused);
  EXPECT_FALSE(b.Resume().ok()) << "its ranks are still being stopped";
  b.ConfirmTeardown();
  const Status no_host = b.Resume();
  EXPECT_NE(no_host.message().find("start a vigil-agent"), std::string::npos) << no_host.message();
  const int spare = b.agents.Add("host-7");
  b.controller->OnAgentJoined(spare);
  b.Settle();
  ASSERT_TRUE(b.Resume("new host").ok());
  b.Step();
  ExpectTwoRestartsThenAPause(b);
}

// A restart counts when its generation launches: one whose launch paused
// instead (its host lost during the teardown, no spare) never happened.
TEST(Scenario, ARestartWhoseLaunchPausedIsNotCounted) {
  ControllerBench b("world: {hosts: 2, ranks_per_host: 2}\n", kRestartOnly);
  b.Start();
  b.Step(30);
  b.Exit(0, 0, 9);  // restart
  b.LoseAgent(1);   // during its teardown: the launch finds no spare
  b.ConfirmTeardown();
  ASSERT_EQ(b.state(), JobState::kPaused);
  EXPECT_EQ(b.controller->progress().restarts, 0);
  const int spare = b.agents.Add("host-7");
  b.controller->OnAgentJoined(spare);
  ASSERT_TRUE(b.Resume("new host").ok());
  b.Step();
  ExpectTwoRestartsThenAPause(b);
}

// A restart whose teardown is never confirmed pauses; the resume launches
// what the restart planned: its checkpoint and its modifiers.
TEST(Scenario, AResumeLaunchesThePlanOfTheRestartThatPaused) {
  ControllerBench b;
  b.Start();
  b.Step(60);
  b.Step(1, {}, 10.0);  // restart from 50, skipping 4 batches
  b.Advance(b.spec().limits.TeardownTimeoutMs());
  ASSERT_EQ(b.state(), JobState::kPaused);
  b.ConfirmTeardown();  // the ranks are gone at last
  ASSERT_TRUE(b.Resume("the host answered").ok());
  const auto launches = b.agents.Launches(1);
  ASSERT_FALSE(launches.empty());
  EXPECT_EQ(launches.begin()->second.resume_from(), b.Checkpoint(50));
  EXPECT_EQ(launches.begin()->second.skip_batches(), 4u);
}

TEST(Scenario, AGenerationThatNeverStartsIsRestarted) {
  ControllerBench b;
  b.Start();
  b.Advance(b.spec().limits.start_timeout_ms - 1);
  EXPECT_TRUE(b.Events().empty());
  b.Advance(1);
  const auto events = b.Events("start_timeout");
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(b.ActionsFor(events[0]), (V{"restart_from_latest"}));
  EXPECT_EQ(b.agents.Killed(0), (std::set<int>{0, 1}));
}

TEST(Scenario, ATeardownNoAgentConfirmsPausesTheJob) {
  ControllerBench b;
  b.Start();
  b.Step(30);
  b.Exit(1, 0, 9);
  b.Advance(b.spec().limits.TeardownTimeoutMs() - 1);
  EXPECT_EQ(b.state(), JobState::kRecovering);
  b.Advance(1);
  EXPECT_EQ(b.state(), JobState::kPaused);
  const auto lost = b.Events("host_lost");
  ASSERT_EQ(lost.size(), 1u);
  EXPECT_EQ(Detail(lost[0])["reason"], "teardown not confirmed");
  EXPECT_EQ(b.Interventions("pause_and_page").at(0).actor, "auto:teardown");
  EXPECT_EQ(b.generation(), 0) << "never launched beside ranks that may hold the GPUs";
}

TEST(Scenario, ChaosFaultsNeedingRankHandlersAreRefusedInAJobStartedWithout) {
  ControllerBench b;
  b.Start();
  b.Step(5);
  const Status nan = b.controller->InjectChaos("nan:1", "tester");
  EXPECT_FALSE(nan.ok());
  EXPECT_NE(nan.message().find("--chaos"), std::string::npos) << nan.message();
  EXPECT_TRUE(b.controller->InjectChaos("kill-rank:1", "tester").ok());
  EXPECT_FALSE(b.agents.Launches(0).begin()->second.chaos());
  b.Step();
  EXPECT_EQ(b.agents.Count(wire::Envelope::kSignalRank), 1);
}

}  // namespace
}  // namespace vigil::coordinator::testing
