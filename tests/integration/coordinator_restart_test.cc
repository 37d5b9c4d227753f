// vigild dies and nothing healthy notices (issue 18), end to end: `vigil
// run` with real vigild, agents and Gloo ranks; vigild SIGKILLed (by its
// own chaos fault, or by the test) and SIGSTOPped; `vigil run` starts it
// again, it takes the run over from the logbook, and the agents, whose
// ranks trained on meanwhile, register with it.
#include "tests/integration/takeover_fixture.h"

namespace vigil {
namespace {

using nlohmann::json;
using std::chrono::milliseconds;
using testing::CleanRun;
using testing::CoordinatorRestart;
using testing::EventsOfKind;
using testing::IntegrityCheck;
using testing::RunJob;
using testing::Slurp;
using testing::StartedRanks;
using testing::SummaryOf;
using testing::VigildPid;
using testing::WaitForStep;
using testing::WriteJob;

TEST_F(CoordinatorRestart, SigkilledFiveTimesTheRanksTrainOnBitExactly) {
  const std::string workdir = dir_ / "killed";
  std::string chaos;
  for (int step : {50, 100, 150, 200, 250}) chaos += " --chaos kill-vigild@" + std::to_string(step);
  const auto run = RunJob(dir_, job_, workdir, chaos);
  EXPECT_EQ(run.summary["params_digest"], (*clean_)["params_digest"]) << run.err;
  EXPECT_EQ(run.summary["final_loss"], (*clean_)["final_loss"]);
  EXPECT_EQ(run.summary["restarts"], 0);
  EXPECT_EQ(run.summary["steps"], 300);
  EXPECT_NE(run.err.find("starting it again (5 of 10)"), std::string::npos) << run.err;

  // One rank process each, started once: nothing healthy restarted.
  const auto started = StartedRanks(workdir);
  ASSERT_EQ(started.size(), 4u);
  std::map<std::string, int> pids;
  for (const auto& [key, pid] : started) {
    EXPECT_EQ(key.second, 0) << "rank " << key.first << " started in generation " << key.second;
    pids[std::to_string(key.first)] = pid;
  }

  auto lb = Logbook::Open(workdir + "/logbook.sqlite", false);
  ASSERT_TRUE(lb.ok());
  const int64_t id = run.summary["run_id"];
  EXPECT_EQ(lb.value()->Runs().value().size(), 1u);
  EXPECT_EQ(lb.value()->Generations(id).value().size(), 1u);
  EXPECT_EQ(lb.value()->Epochs(id).value().size(), 6u);
  const auto restarts = EventsOfKind(*lb.value(), id, kind::kCoordinatorRestart);
  ASSERT_EQ(restarts.size(), 5u);
  for (const auto& e : restarts) {
    const json d = json::parse(e.detail_json);
    EXPECT_EQ(d["adopted"]["generation"], 0) << d.dump();
    EXPECT_EQ(d["adopted"]["missing_ranks"].size(), 0u) << d.dump();
    for (const auto& [rank, pid] : pids) EXPECT_EQ(d["adopted"]["pids"][rank], pid) << d.dump();
    EXPECT_TRUE(d["hosts_not_back"].empty()) << d.dump();
    EXPECT_LT(d["waited_ms"].get<double>(), 2000.0) << d.dump();
  }
  // Nothing but the five: no detection, no restart.
  EXPECT_EQ(lb.value()->Events(id).value().size(), 5u);
  // Every step is in the training curve, once: none lost while vigild was away.
  const auto steps = lb.value()->Steps(id, 0, std::numeric_limits<int64_t>::max()).value();
  std::set<int64_t> seen;
  for (const auto& s : steps) EXPECT_TRUE(seen.insert(s.step).second) << "step " << s.step;
  EXPECT_EQ(seen.size(), 300u);
  EXPECT_EQ(IntegrityCheck(workdir + "/logbook.sqlite"), "ok");
  EXPECT_TRUE(testing::ProcessesMentioning(workdir).empty());
}

TEST_F(CoordinatorRestart, ARankKilledWhileVigildIsAwayIsFoundAndAnswered) {
  // The test, not vigil run's watchdog, decides when the stopped vigild dies.
  job_ = WriteJob(dir_, "\n  coordinator_watchdog_ms: -1");
  const std::string workdir = dir_ / "away";
  pid_t vigil =
      testing::StartVigil({"run", job_, "--workdir", workdir, "-o", "json"}, dir_ / "away.out");
  ASSERT_GT(vigil, 0);
  ASSERT_GE(WaitForStep(workdir, 60), 60);
  // vigild stops; past the agents' heartbeat timeout they count it lost
  // and keep what their ranks report.
  const int first = VigildPid(workdir);
  ASSERT_GT(first, 0);
  ASSERT_EQ(::kill(first, SIGSTOP), 0);
  std::this_thread::sleep_for(milliseconds(2500));
  const auto started = StartedRanks(workdir);
  ASSERT_TRUE(started.count({1, 0}));
  ASSERT_EQ(::kill(started.at({1, 0}), SIGKILL), 0);
  std::this_thread::sleep_for(milliseconds(300));  // reaped, its exit kept
  ASSERT_EQ(::kill(first, SIGKILL), 0);            // `vigil run` starts another
  int status = 0;
  ASSERT_EQ(::waitpid(vigil, &status, 0), vigil);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << Slurp(dir_ / "away.out");
  const std::string out = Slurp(dir_ / "away.out");
  const json summary = SummaryOf(out);
  ASSERT_TRUE(summary.is_object()) << out;
  EXPECT_EQ(summary["status"], "succeeded");
  EXPECT_EQ(summary["params_digest"], (*clean_)["params_digest"]);
  EXPECT_EQ(summary["restarts"], 1);

  auto lb = Logbook::Open(workdir + "/logbook.sqlite", false);
  ASSERT_TRUE(lb.ok());
  const int64_t id = summary["run_id"];
  const auto takeovers = EventsOfKind(*lb.value(), id, kind::kCoordinatorRestart);
  ASSERT_EQ(takeovers.size(), 1u);
  const json d = json::parse(takeovers[0].detail_json);
  int kept = 0;
  for (const auto& h : d["hosts"]) kept += h.value("exits_kept", 0);
  EXPECT_GE(kept, 1) << d.dump();  // rank 1's, and its peers' collective errors
  const auto exits = EventsOfKind(*lb.value(), id, kind::kProcessExit);
  ASSERT_EQ(exits.size(), 1u);
  EXPECT_EQ(exits[0].rank, 1);
  EXPECT_EQ(json::parse(exits[0].detail_json)["signal"], 9);
  EXPECT_EQ(lb.value()->Generations(id).value().size(), 2u);
  EXPECT_EQ(IntegrityCheck(workdir + "/logbook.sqlite"), "ok");
  EXPECT_TRUE(testing::ProcessesMentioning(workdir).empty());
}

TEST_F(CoordinatorRestart, AStoppedVigildIsFencedOutByTheOneThatTookOver) {
  // vigil run's watchdog would kill the stopped vigild: here it is left stopped.
  job_ = WriteJob(dir_, "\n  coordinator_watchdog_ms: -1");
  const std::string workdir = dir_ / "stopped";
  pid_t vigil =
      testing::StartVigil({"run", job_, "--workdir", workdir, "-o", "json"}, dir_ / "stopped.out");
  ASSERT_GT(vigil, 0);
  ASSERT_GE(WaitForStep(workdir, 60), 60);
  const int stale = VigildPid(workdir);
  ASSERT_GT(stale, 0);
  ASSERT_EQ(::kill(stale, SIGSTOP), 0);
  std::this_thread::sleep_for(milliseconds(2500));  // past the agents' heartbeat timeout
  // A second vigild (a person's, a standby's) takes the run over: the
  // stopped one still holds its port, so the agents find it in vigild.addr.
  pid_t fresh = testing::StartVigild(job_, workdir, workdir + "/token", dir_ / "fresh.log");
  ASSERT_GT(fresh, 0);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (VigildPid(workdir) != fresh && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(milliseconds(50));
  ASSERT_EQ(VigildPid(workdir), fresh) << Slurp(dir_ / "fresh.log");
  ASSERT_GE(WaitForStep(workdir, 150), 150) << Slurp(dir_ / "fresh.log");
  ::kill(stale, SIGCONT);  // it wakes into a run that is no longer its own (if it lives)

  int status = 0;
  ASSERT_EQ(::waitpid(vigil, &status, 0), vigil);
  const std::string out = Slurp(dir_ / "stopped.out");
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << out;
  // Fenced either way: woken into a newer epoch, it left; or, stopped in
  // the middle of a logbook transaction (holding the file's lock), the
  // new vigild killed it.
  const bool killed =
      Slurp(dir_ / "fresh.log").find("holding the logbook's lock: killing it") != std::string::npos;
  EXPECT_NE(out.find(killed ? "following it" : "was fenced out"), std::string::npos) << out;
  ASSERT_EQ(::waitpid(fresh, &status, 0), fresh);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << Slurp(dir_ / "fresh.log");
  const json summary = SummaryOf(out);
  ASSERT_TRUE(summary.is_object()) << out;
  EXPECT_EQ(summary["status"], "succeeded");
  EXPECT_EQ(summary["params_digest"], (*clean_)["params_digest"]);
  EXPECT_EQ(summary["restarts"], 0);
  EXPECT_EQ(StartedRanks(workdir).size(), 4u);  // nothing restarted

  // The stale vigild wrote nothing once it woke: its first commit found the
  // newer epoch, and it left.
  if (!killed) {
    EXPECT_NE(Slurp(workdir + "/logs/vigild.log").find("writes and orders nothing more"),
              std::string::npos);
  }
  auto lb = Logbook::Open(workdir + "/logbook.sqlite", false);
  ASSERT_TRUE(lb.ok());
  const int64_t id = summary["run_id"];
  const auto events = lb.value()->Events(id).value();
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].kind, kind::kCoordinatorRestart);
  EXPECT_EQ(lb.value()->Epochs(id).value().size(), 2u);
  EXPECT_EQ(IntegrityCheck(workdir + "/logbook.sqlite"), "ok");
  EXPECT_TRUE(testing::ProcessesMentioning(workdir).empty());
}

// Stood still for twice the agents' heartbeat timeout with no watchdog to
// kill it, vigild wakes to agents that gave it up and are reconnecting: the
// silence was its own, so they come back in place and nothing restarts.
TEST_F(CoordinatorRestart, AVigildThatStoodStillKeepsItsHostsWhenItRunsAgain) {
  job_ = WriteJob(dir_, "\n  coordinator_watchdog_ms: -1");
  const std::string workdir = dir_ / "stood-still";
  const auto run = RunJob(dir_, job_, workdir, "--chaos hang-vigild:3000@80");
  EXPECT_EQ(run.summary["params_digest"], (*clean_)["params_digest"]) << run.err;
  EXPECT_EQ(run.summary["restarts"], 0);
  EXPECT_EQ(StartedRanks(workdir).size(), 4u);  // nothing restarted
  auto lb = Logbook::Open(workdir + "/logbook.sqlite", false);
  ASSERT_TRUE(lb.ok());
  const int64_t id = run.summary["run_id"];
  EXPECT_TRUE(EventsOfKind(*lb.value(), id, kind::kHostLost).empty());
  EXPECT_TRUE(EventsOfKind(*lb.value(), id, kind::kCoordinatorRestart).empty());
  const auto cut_off = EventsOfKind(*lb.value(), id, kind::kCoordinatorCutOff);
  ASSERT_EQ(cut_off.size(), 1u) << "the agents gave vigild up and came back";
  const json detail = json::parse(cut_off[0].detail_json);
  EXPECT_EQ(detail.value("cause", ""), "event loop stood still");
  EXPECT_EQ(detail["hosts_lost"], json::array());
  EXPECT_EQ(detail["hosts_back"].size(), 2u) << detail.dump();
  EXPECT_EQ(lb.value()->Events(id).value().size(), 1u);
  EXPECT_TRUE(testing::ProcessesMentioning(workdir).empty());
}

TEST_F(CoordinatorRestart, AWedgedVigildIsKilledByVigilRunAndTakenOver) {
  // The default watchdog: max(heartbeat timeout, 3 s).
  const std::string workdir = dir_ / "wedged";
  const auto run = RunJob(dir_, job_, workdir, "--chaos hang-vigild:30000@80");
  EXPECT_EQ(run.summary["params_digest"], (*clean_)["params_digest"]) << run.err;
  EXPECT_EQ(run.summary["restarts"], 0);
  EXPECT_NE(run.err.find("has not answered for 3000 ms"), std::string::npos) << run.err;
  EXPECT_EQ(StartedRanks(workdir).size(), 4u);
  auto lb = Logbook::Open(workdir + "/logbook.sqlite", false);
  ASSERT_TRUE(lb.ok());
  const int64_t id = run.summary["run_id"];
  EXPECT_EQ(EventsOfKind(*lb.value(), id, kind::kCoordinatorRestart).size(), 1u);
  EXPECT_EQ(lb.value()->Events(id).value().size(), 1u);
  EXPECT_TRUE(testing::ProcessesMentioning(workdir).empty());
}

}  // namespace
}  // namespace vigil
