// The logbook is written ahead of what vigild does: a real vigild driven by
// a hand-written agent through a storm of restarts (each launch of a
// generation answered at once by its rank's death, so vigild records an
// event, decides a restart, kills and relaunches, hundreds of times a
// second) is SIGKILLed in the middle of it. The file it leaves passes
// PRAGMA integrity_check and accounts for every order the agent received:
// each generation launched has its row and the intervention and event that
// caused it; each generation killed has the event it answered.
#include <gtest/gtest.h>
#include <sqlite3.h>
#include <sys/wait.h>

#include <fstream>
#include <map>
#include <random>
#include <set>

#include "common/framed_socket.h"
#include "common/fs.h"
#include "common/host_storage.h"
#include "common/util.h"
#include "tests/integration/process_util.h"
#include "tests/unit/test_util.h"

namespace vigil {
namespace {

using std::chrono::milliseconds;
using testing::Slurp;
using testing::TempDir;

// Runs `sql` on the file and returns the first column of every row.
std::vector<std::string> Query(sqlite3* db, const std::string& sql) {
  std::vector<std::string> out;
  sqlite3_stmt* s = nullptr;
  EXPECT_EQ(sqlite3_prepare_v2(db, sql.c_str(), -1, &s, nullptr), SQLITE_OK) << sql;
  while (sqlite3_step(s) == SQLITE_ROW) {
    const auto* text = sqlite3_column_text(s, 0);
    out.push_back(text ? reinterpret_cast<const char*>(text) : "");
  }
  sqlite3_finalize(s);
  return out;
}

class LogbookDurability : public ::testing::TestWithParam<int> {};

TEST_P(LogbookDurability, SigkillDuringARestartStormLosesNothingVigildActedOn) {
  TempDir dir;
  // Every death is restarted, without end: the storm goes on until the kill.
  std::ofstream(dir / "playbook.yaml")
      << "version: 1\nrules:\n  - name: restart\n    when: {kind: process_exit}\n"
         "    do: [restart_from_latest]\n";
  std::ofstream(dir / "job.yaml")
      << "name: storm\nmodel: {d_model: 16, heads: 2}\nschedule: {steps: 10}\n"
         "world: {hosts: 1, ranks_per_host: 1}\nplaybook: playbook.yaml\n"
         "limits: {max_restarts: 1000000, heartbeat_timeout_ms: 60000, agent_wait_ms: 60000}\n";
  const std::string token = WriteTokenFile(dir / "token").value();
  pid_t vigild =
      testing::StartVigild(dir / "job.yaml", dir / "work", dir / "token", dir / "vigild.log");
  ASSERT_GT(vigild, 0);
  const auto addr = testing::WaitForVigildAddress(dir / "work", std::chrono::seconds(10));
  ASSERT_TRUE(addr) << Slurp(dir / "vigild.log");

  wire::Hello hello;
  hello.set_protocol_version(kProtocolVersion);
  hello.set_role(wire::Hello::AGENT);
  hello.set_host("storm-host");
  hello.set_slots(1);
  wire::HelloAck ack;
  auto agent = FramedSocket::ConnectAndHello(addr->rpc, hello, token, milliseconds(5000), &ack);
  ASSERT_TRUE(agent.ok()) << agent.status().ToString();
  // Registered once it has checked the job's storage, as an agent does.
  wire::Envelope ready;
  const Status storage =
      CheckHostStorage("storm-host", ack.checkpoint_dir(), ack.storage_id(), ack.log_dir());
  ASSERT_TRUE(storage.ok()) << storage.ToString();
  ready.mutable_host_ready()->set_ok(true);
  ASSERT_TRUE(agent->Send(ready).ok());

  // How many orders to take before the kill: a different moment each run.
  std::mt19937 rng(static_cast<unsigned>(GetParam()) * 7919u + 17u);
  const int kill_after = std::uniform_int_distribution<int>(150, 400)(rng);
  std::set<int64_t> launched, killed;
  int orders = 0;
  while (orders < kill_after) {
    auto env = agent->Receive(milliseconds(10000));
    ASSERT_TRUE(env.ok()) << env.status().ToString() << "\n" << Slurp(dir / "vigild.log");
    wire::Envelope reply;
    if (env->has_launch_ranks()) {
      const auto g = static_cast<int64_t>(env->launch_ranks().generation());
      launched.insert(g);
      auto* e = reply.mutable_rank_exited();
      e->set_generation(static_cast<uint64_t>(g));
      e->set_rank(0);
      e->set_signal(9);
      e->set_exited_at_us(NowMicros());
      e->set_pid(4242);
    } else if (env->has_kill_generation()) {
      const auto g = static_cast<int64_t>(env->kill_generation().generation());
      killed.insert(g);
      reply.mutable_generation_stopped()->set_generation(static_cast<uint64_t>(g));
    } else {
      continue;
    }
    ++orders;
    ASSERT_TRUE(agent->Send(reply).ok());
  }
  ASSERT_EQ(::kill(vigild, SIGKILL), 0);
  ASSERT_EQ(::waitpid(vigild, nullptr, 0), vigild);

  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open((dir / "work/logbook.sqlite").c_str(), &db), SQLITE_OK);
  EXPECT_EQ(Query(db, "PRAGMA integrity_check"), std::vector<std::string>{"ok"});
  EXPECT_EQ(Query(db, "PRAGMA foreign_key_check"), std::vector<std::string>{});
  // Every generation the agent was told to launch is in the logbook, and
  // every one after the first with the restart that caused it and the
  // death that restart answered.
  const auto max_launched = *launched.rbegin();
  for (int64_t g : launched) {
    const auto rows =
        Query(db,
              "SELECT e.kind FROM generations g LEFT JOIN interventions i ON i.id = "
              "g.cause_intervention_id LEFT JOIN events e ON e.id = i.event_id WHERE g.number = " +
                  std::to_string(g));
    ASSERT_EQ(rows.size(), 1u) << "generation " << g << " was launched but is not in the logbook";
    if (g > 0) {
      EXPECT_EQ(rows[0], "process_exit") << "generation " << g << "'s cause";
    }
  }
  // Every generation killed: its death is recorded, with the restart decided.
  for (int64_t g : killed) {
    const auto rows =
        Query(db,
              "SELECT i.action FROM events e JOIN generations g ON g.id = e.generation_id "
              "JOIN interventions i ON i.event_id = e.id WHERE g.number = " +
                  std::to_string(g));
    ASSERT_EQ(rows, std::vector<std::string>{"restart_from_latest"}) << "generation " << g;
  }
  const int events = std::stoi(Query(db, "SELECT count(*) FROM events")[0]);
  EXPECT_GE(events, static_cast<int>(killed.size()));
  std::printf(
      "orders received %d (launches %zu, up to generation %lld; kills %zu); events in the "
      "logbook %d\n",
      orders, launched.size(), static_cast<long long>(max_launched), killed.size(), events);
  sqlite3_close(db);
}

INSTANTIATE_TEST_SUITE_P(ThreeMoments, LogbookDurability, ::testing::Values(1, 2, 3));

}  // namespace
}  // namespace vigil
