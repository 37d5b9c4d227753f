// A vigild taking over a run whose vigild died (takeover.h,
// job_controller_takeover.cc): what it reads back from the logbook, and how
// the job controller reconciles that with what the agents say they run.
// The run is made by one bench's controller (the vigild that dies) and
// taken over by another's, on fake time, with real checkpoint folders.
#include <gtest/gtest.h>

#include "coordinator/takeover.h"
#include "logbook/logbook.h"
#include "tests/unit/controller_test.h"

namespace vigil::coordinator::testing {
namespace {

using nlohmann::json;

// What an agent says when it registers again: the ranks it runs.
wire::Hello HelloOf(const std::string& host, uint64_t generation, std::vector<int> live,
                    std::vector<int> exited = {}) {
  wire::Hello h;
  h.set_host(host);
  h.set_reconnecting(true);
  for (int r : live) {
    auto* l = h.add_live_ranks();
    l->set_generation(generation);
    l->set_rank(static_cast<uint32_t>(r));
    l->set_pid(static_cast<uint32_t>(1000 + r));
  }
  for (int r : exited) {
    auto* l = h.add_exited_ranks();
    l->set_generation(generation);
    l->set_rank(static_cast<uint32_t>(r));
  }
  return h;
}

// The generation the vigild before launched, as the new bench's agents run it.
void AdoptedAsLaunched(const ControllerBench& before, ControllerBench* after, int64_t g) {
  after->agents.adopted[g] = before.agents.Launches(g);
}

TEST(Takeover, AWorldWhoseRanksAllLiveIsAdoptedAsItStands) {
  ControllerBench first;
  first.Start();
  first.Step(60);  // checkpoints at 25 and 50
  ASSERT_EQ(first.state(), JobState::kRunning);
  const RunTakeover t = first.LogbookOf();
  ASSERT_NE(t.in_flight(), nullptr);
  EXPECT_EQ(t.SlotHosts(), (V{"host-0", "host-1"}));

  ControllerBench second;
  second.ContinueFrom(first);
  AdoptedAsLaunched(first, &second, 0);
  second.controller->Restore(t);
  EXPECT_EQ(second.controller->takeover_hosts(), (V{"host-0", "host-1"}));
  second.controller->Adopt({0, 1},
                           {{0, HelloOf("host-0", 0, {0, 1})}, {1, HelloOf("host-1", 0, {2, 3})}});
  second.Settle();
  EXPECT_EQ(second.state(), JobState::kRunning);
  EXPECT_EQ(second.agents.Count(wire::Envelope::kLaunchRanks), 0) << "nothing was relaunched";
  EXPECT_EQ(second.agents.Count(wire::Envelope::kKillGeneration), 0);
  const auto restarts = second.Events(kind::kCoordinatorRestart);
  ASSERT_EQ(restarts.size(), 1u);
  const json d = Detail(restarts[0]);
  EXPECT_EQ(d["adopted"]["generation"], 0);
  EXPECT_EQ(d["adopted"]["pids"]["3"], 1003);
  EXPECT_EQ(d["found"]["checkpoints"], 2);
  EXPECT_EQ(d["found"]["step"], 60);
  // It trains on, commits, and finishes as if nothing happened.
  second.Step(20);
  EXPECT_EQ(second.state(), JobState::kRunning);
  EXPECT_EQ(second.journal.checkpoints().size(), 1u);  // step 75, this vigild's
  for (int r = 0; r < 4; ++r) second.Exit(r, 0);
  EXPECT_EQ(second.state(), JobState::kSucceeded);
  EXPECT_EQ(second.controller->progress().restarts, 0);
}

TEST(Takeover, ARankGoneWhileVigildWasAwayIsADetectionAnsweredByThePlaybook) {
  ControllerBench first;
  first.Start();
  first.Step(60);
  ControllerBench second;
  second.ContinueFrom(first);
  AdoptedAsLaunched(first, &second, 0);
  second.controller->Restore(first.LogbookOf());
  // Rank 3 is neither live nor among the exits host-1 kept.
  second.controller->Adopt({0, 1},
                           {{0, HelloOf("host-0", 0, {0, 1})}, {1, HelloOf("host-1", 0, {2})}});
  second.Settle();
  const auto exits = second.Events(kind::kProcessExit);
  ASSERT_EQ(exits.size(), 1u);
  EXPECT_EQ(exits[0].rank, 3);
  EXPECT_EQ(Detail(exits[0])["reason"], "gone while vigild was away; its exit status was not kept");
  EXPECT_EQ(second.ActionsFor(exits[0]), (V{"restart_from_latest"}));
  EXPECT_EQ(second.agents.Killed(0), (std::set<int>{0, 1}));
  second.Recover();
  EXPECT_EQ(second.generation(), 1);
  EXPECT_EQ(second.ResumedFrom(), first.Checkpoint(50));
  EXPECT_EQ(second.controller->progress().restarts, 1);
}

TEST(Takeover, AKeptExitIsHandledOnceTheGenerationIsAdopted) {
  ControllerBench first;
  first.Start();
  first.Step(60);
  ControllerBench second;
  second.ContinueFrom(first);
  AdoptedAsLaunched(first, &second, 0);
  second.controller->Restore(first.LogbookOf());
  second.controller->Adopt(
      {0, 1}, {{0, HelloOf("host-0", 0, {0, 1})}, {1, HelloOf("host-1", 0, {2}, {3})}});
  EXPECT_EQ(second.state(), JobState::kRunning);
  EXPECT_TRUE(second.Events(kind::kProcessExit).empty());
  second.Exit(3, 0, 9);  // the kept RankExited, delivered after the Hello
  const auto exits = second.Events(kind::kProcessExit);
  ASSERT_EQ(exits.size(), 1u);
  EXPECT_EQ(Detail(exits[0])["signal"], 9);
  EXPECT_EQ(second.state(), JobState::kRecovering);
}

TEST(Takeover, BetweenGenerationsTheRestartDecidedIsCarriedOut) {
  ControllerBench first;
  first.Start();
  first.Step(60);
  first.Exit(1, 0, 9);  // the restart is decided and ordered; vigild dies before the launch
  ASSERT_EQ(first.state(), JobState::kRecovering);
  const RunTakeover t = first.LogbookOf();
  ASSERT_EQ(t.in_flight(), nullptr);
  ASSERT_TRUE(t.PendingRestart().has_value());
  EXPECT_EQ(json::parse(t.PendingRestart()->params_json)["checkpoint"], first.Checkpoint(50));

  ControllerBench second;
  second.ContinueFrom(first);
  AdoptedAsLaunched(first, &second, 0);
  second.controller->Restore(t);
  // host-1 still runs rank 2 of the old generation (its teardown order was lost).
  second.controller->Adopt({0, 1}, {{0, HelloOf("host-0", 0, {})}, {1, HelloOf("host-1", 0, {2})}});
  EXPECT_EQ(second.state(), JobState::kRecovering);
  EXPECT_EQ(second.agents.Killed(0), (std::set<int>{0, 1}));
  EXPECT_EQ(second.agents.Count(wire::Envelope::kLaunchRanks), 0) << "not before the teardown";
  for (int a : {0, 1}) second.controller->OnGenerationStopped(a, 0);
  second.Settle();
  EXPECT_EQ(second.generation(), 1);
  EXPECT_EQ(second.ResumedFrom(), first.Checkpoint(50));
  EXPECT_EQ(second.controller->progress().restarts, 1);
  ASSERT_EQ(second.journal.generations().size(), 1u);
  EXPECT_EQ(second.journal.generations()[0].cause_intervention_id, t.PendingRestart()->id);
}

TEST(Takeover, AHostThatNeverCameBackIsLostAndAPausedRunStaysPaused) {
  const std::string world = "world: {hosts: 2, ranks_per_host: 2}\n";
  const std::string playbook =
      "version: 1\nrules:\n  - name: lost\n    when: {kind: host_lost}\n"
      "    do: [pause_and_page]\n";
  ControllerBench first(world, playbook);
  first.Start();
  first.Step(60);
  ControllerBench second(world, playbook);
  second.ContinueFrom(first);
  AdoptedAsLaunched(first, &second, 0);
  second.controller->Restore(first.LogbookOf());
  // host-1 never registered again: the coordinator gives up on it and reports it lost.
  second.controller->Adopt({0, 1}, {{0, HelloOf("host-0", 0, {0, 1})}});
  second.LoseAgent(1, "did not register again");
  const auto lost = second.Events(kind::kHostLost);
  ASSERT_EQ(lost.size(), 1u);
  EXPECT_EQ(lost[0].host, "host-1");
  EXPECT_EQ(second.state(), JobState::kPaused);

  ControllerBench third(world, playbook);
  third.ContinueFrom(second);
  third.controller->Restore(second.LogbookOf());
  third.controller->Adopt({0, 1}, {{0, HelloOf("host-0", 0, {})}});
  EXPECT_EQ(third.state(), JobState::kPaused);
  EXPECT_EQ(third.agents.Count(wire::Envelope::kLaunchRanks), 0);
}

TEST(Takeover, ThePlaybooksWindowsAndCountsCarryOver) {
  // A rule that gives up on the third death within an hour counts the
  // deaths the vigild before saw.
  const std::string playbook =
      "version: 1\nrules:\n  - name: twice\n    when: {kind: process_exit}\n"
      "    do: [restart_from_latest]\n    limit: {max: 2, within: 1h, then: [fail_job]}\n";
  ControllerBench first("world: {hosts: 2, ranks_per_host: 2}\n", playbook);
  first.Start();
  first.Step(30);
  first.Exit(1, 0, 9);
  first.Recover();
  first.Step(30);
  first.Exit(2, 0, 9);
  first.Recover();
  first.Step(10);
  ASSERT_EQ(first.controller->progress().restarts, 2);
  const RunTakeover t = first.LogbookOf();
  EXPECT_EQ(t.Restarts(), 2);
  const PlaybookHistory h = t.History();
  EXPECT_EQ(h.seen.size(), 2u);
  EXPECT_EQ(h.applied.size(), 2u);
  EXPECT_EQ(h.restarts.size(), 2u);

  ControllerBench second("world: {hosts: 2, ranks_per_host: 2}\n", playbook);
  second.ContinueFrom(first);
  AdoptedAsLaunched(first, &second, 2);
  second.controller->Restore(t);
  second.controller->Adopt({0, 1},
                           {{0, HelloOf("host-0", 2, {0, 1})}, {1, HelloOf("host-1", 2, {2, 3})}});
  EXPECT_EQ(second.controller->progress().restarts, 2);
  second.Step(5);
  second.Exit(0, 0, 9);
  EXPECT_EQ(second.state(), JobState::kFailed) << "the limit's third application escalates";
}

TEST(Takeover, FindsTheUnfinishedRunOfTheJobInTheLogbook) {
  vigil::testing::TempDir dir;
  auto lb = Logbook::Open(dir / "logbook.sqlite", true);
  ASSERT_TRUE(lb.ok());
  Logbook& l = *lb.value();
  const int64_t done = l.CreateRun("tiny", "", "h", dir.path(), 1).value();
  ASSERT_TRUE(l.FinishRun(done, job_state::kSucceeded, 2, 300, 1.2, "d", std::nullopt).ok());
  EXPECT_EQ(FindUnfinishedRun(l, "tiny").value(), std::nullopt);
  const int64_t open = l.CreateRun("tiny", "", "h", dir.path(), 3).value();
  EXPECT_EQ(FindUnfinishedRun(l, "tiny").value(), open);
  EXPECT_EQ(FindUnfinishedRun(l, "other").value(), std::nullopt);
  GenerationRow g;
  g.run_id = open;
  g.number = 0;
  g.world_size = 4;
  g.hosts = "host-0,host-1";
  g.started_at_us = 4;
  ASSERT_TRUE(l.StartGeneration(g).ok());
  ASSERT_TRUE(l.BeginEpoch(open, 5, 77, "here").ok());
  auto t = LoadTakeover(l, open);
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  ASSERT_NE(t->in_flight(), nullptr);
  EXPECT_EQ(t->SlotHosts(), (V{"host-0", "host-1"}));
  EXPECT_EQ(t->epochs.size(), 1u);
  EXPECT_EQ(t->LastWrittenUs(), 5);
  EXPECT_FALSE(t->paused());
}

}  // namespace
}  // namespace vigil::coordinator::testing
