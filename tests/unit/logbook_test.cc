#include "logbook/logbook.h"
#include "common/util.h"
#include "logbook/logbook_query.h"

#include <gtest/gtest.h>
#include <sqlite3.h>

#include <fstream>

#include "tests/unit/test_util.h"

namespace vigil {
namespace {

using testing::TempDir;

int ExecRaw(const std::string& path, const std::string& sql, std::string* err = nullptr) {
  sqlite3* db = nullptr;
  sqlite3_open(path.c_str(), &db);
  char* msg = nullptr;
  int rc = sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &msg);
  if (err && msg) *err = msg;
  sqlite3_free(msg);
  sqlite3_close(db);
  return rc;
}

TEST(Logbook, WritesSurviveReopen) {
  TempDir dir;
  const std::string path = dir / "logbook.sqlite";
  int64_t run = 0, gen = 0, ev = 0, iv = 0;
  {
    auto lb = Logbook::Open(path, true);
    ASSERT_TRUE(lb.ok()) << lb.status().ToString();
    auto& book = *lb.value();
    run = book.CreateRun("tiny", "name: tiny\n", "abc", "/w", 1000).value();
    GenerationRow g;
    g.run_id = run;
    g.number = 0;
    g.world_size = 4;
    g.hosts = "host-0,host-1";
    g.started_at_us = 1100;
    gen = book.StartGeneration(g).value();
    ASSERT_TRUE(book.MarkGenerationFirstStep(gen, 1200).ok());
    EventRow e;
    e.run_id = run;
    e.generation_id = gen;
    e.time_us = 1300;
    e.kind = "process_exit";
    e.host = "host-1";
    e.rank = 3;
    e.step = 42;
    e.detail_json = R"({"signal":9,"fault_injected_at_us":1290,"detection_latency_ms":0.01})";
    ev = book.AddEvent(e).value();
    InterventionRow i;
    i.run_id = run;
    i.event_id = ev;
    i.time_us = 1310;
    i.action = "restart_from_latest";
    i.actor = "auto:default";
    iv = book.AddIntervention(i).value();
    ASSERT_TRUE(book.EndGeneration(gen, 1320, "rank 3 killed").ok());
    GenerationRow g1 = g;
    g1.number = 1;
    g1.cause_intervention_id = iv;
    g1.resumed_from_step = 40;
    g1.started_at_us = 1400;
    auto gen1 = book.StartGeneration(g1).value();
    ASSERT_TRUE(book.MarkGenerationFirstStep(gen1, 2290).ok());
    CheckpointRow c;
    c.run_id = run;
    c.generation_id = gen;
    c.step = 40;
    c.path = "/w/checkpoints/step-00000040";
    c.bytes = 123;
    c.committed_at_us = 1250;
    ASSERT_TRUE(book.AddCheckpoint(c).ok());
    ASSERT_TRUE(book.FinishRun(run, "succeeded", 3000, 100, 1.25, "deadbeef", 5000.0).ok());
  }
  auto lb = Logbook::Open(path, false);
  ASSERT_TRUE(lb.ok());
  auto& book = *lb.value();
  auto runs = book.Runs().value();
  ASSERT_EQ(runs.size(), 1u);
  EXPECT_EQ(runs[0].status, "succeeded");
  EXPECT_EQ(runs[0].params_digest, "deadbeef");
  EXPECT_EQ(*runs[0].final_step, 100);
  auto gens = book.Generations(run).value();
  ASSERT_EQ(gens.size(), 2u);
  EXPECT_EQ(*gens[0].first_step_at_us, 1200);
  EXPECT_EQ(gens[0].end_reason, "rank 3 killed");
  EXPECT_EQ(*gens[1].cause_intervention_id, iv);
  auto events = book.Events(run).value();
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(*events[0].rank, 3);
  auto ivs = book.Interventions(run).value();
  ASSERT_EQ(ivs.size(), 1u);
  EXPECT_EQ(*ivs[0].event_id, ev);
  auto ckpts = book.Checkpoints(run).value();
  ASSERT_EQ(ckpts.size(), 1u);
  EXPECT_EQ(ckpts[0].step, 40);
  auto entries = book.Entries(run).value();
  ASSERT_EQ(entries.size(), 2u);
  EXPECT_EQ(entries[0].type, "event");
  EXPECT_EQ(entries[0].generation.value_or(-1), 0);
  EXPECT_EQ(entries[1].type, "intervention");
  auto rec = book.Recoveries(run).value();
  ASSERT_EQ(rec.size(), 1u);
  EXPECT_EQ(rec[0].event_id, ev);
  EXPECT_EQ(rec[0].generation, 1);
  EXPECT_DOUBLE_EQ(*rec[0].recovery_ms, 1.0);  // (2290 - 1290) us
  EXPECT_DOUBLE_EQ(*rec[0].detection_ms, 0.01);
}

TEST(Logbook, EventsAndInterventionsAreAppendOnly) {
  TempDir dir;
  const std::string path = dir / "logbook.sqlite";
  {
    auto lb = Logbook::Open(path, true);
    auto& book = *lb.value();
    auto run = book.CreateRun("r", "", "", "", 1).value();
    EventRow e;
    e.run_id = run;
    e.time_us = 2;
    e.kind = "process_exit";
    auto ev = book.AddEvent(e).value();
    InterventionRow i;
    i.run_id = run;
    i.event_id = ev;
    i.time_us = 3;
    i.action = "restart_from_latest";
    i.actor = "auto:default";
    ASSERT_TRUE(book.AddIntervention(i).ok());
  }
  std::string err;
  EXPECT_NE(ExecRaw(path, "UPDATE events SET kind='x'", &err), SQLITE_OK);
  EXPECT_NE(err.find("append-only"), std::string::npos);
  EXPECT_NE(ExecRaw(path, "DELETE FROM events"), SQLITE_OK);
  EXPECT_NE(ExecRaw(path, "UPDATE interventions SET action='x'"), SQLITE_OK);
  EXPECT_NE(ExecRaw(path, "DELETE FROM interventions"), SQLITE_OK);
}

TEST(Logbook, ForeignKeysAreEnforced) {
  TempDir dir;
  auto lb = Logbook::Open(dir / "logbook.sqlite", true);
  EventRow e;
  e.run_id = 999;  // no such run
  e.time_us = 1;
  e.kind = "process_exit";
  EXPECT_FALSE(lb.value()->AddEvent(e).ok());
}

TEST(Logbook, RefusesMissingForeignAndNewerFiles) {
  TempDir dir;
  auto missing = Logbook::Open(dir / "nope.sqlite", false);
  EXPECT_EQ(missing.status().code(), StatusCode::kNotFound);

  std::ofstream(dir / "text.sqlite")
      << "this is not a database, just text that is long enough to be a header";
  auto text = Logbook::Open(dir / "text.sqlite", false);
  ASSERT_FALSE(text.ok());
  EXPECT_NE(text.status().message().find("text.sqlite"), std::string::npos);

  ASSERT_EQ(ExecRaw(dir / "foreign.sqlite", "CREATE TABLE customers (id INTEGER)"), SQLITE_OK);
  auto foreign = Logbook::Open(dir / "foreign.sqlite", false);
  ASSERT_FALSE(foreign.ok());
  EXPECT_NE(foreign.status().message().find("not a vigil logbook"), std::string::npos);

  { ASSERT_TRUE(Logbook::Open(dir / "new.sqlite", true).ok()); }
  ASSERT_EQ(ExecRaw(dir / "new.sqlite", "PRAGMA user_version = 99"), SQLITE_OK);
  auto newer = Logbook::Open(dir / "new.sqlite", false);
  ASSERT_FALSE(newer.ok());
  EXPECT_NE(newer.status().message().find("newer"), std::string::npos);
}

// What versions 3 and 4 added, dropped again to make an older file.
constexpr const char* kDropV6 = "ALTER TABLE runs DROP COLUMN slurm_job_id; ";
constexpr const char* kDropV3 =
    "ALTER TABLE runs DROP COLUMN slurm_job_id; DROP TABLE coordinator_epochs; DROP TABLE steps; "
    "DROP TABLE notes; DROP INDEX events_time; "
    "DROP INDEX events_kind_time; "
    "DROP INDEX events_host_time; DROP INDEX events_rank_time; DROP INDEX interventions_time; "
    "DROP INDEX interventions_actor_time; DROP INDEX interventions_host_time; "
    "DROP INDEX interventions_rank_time; DROP INDEX interventions_action_time; "
    "DROP INDEX generations_cause; ALTER TABLE interventions DROP COLUMN host; "
    "ALTER TABLE interventions DROP COLUMN rank;";

// A version-5 file gains the run's Slurm job in place: empty for the runs it
// had, set for a run under Slurm.
TEST(Logbook, MigratesAVersion5FileAndRecordsASlurmJob) {
  TempDir dir;
  const std::string path = dir / "logbook.sqlite";
  int64_t old_run = 0;
  {
    auto lb = Logbook::Open(path, true);
    ASSERT_TRUE(lb.ok()) << lb.status().ToString();
    old_run = lb.value()->CreateRun("r", "", "", "/w", 1).value();
  }
  ASSERT_EQ(ExecRaw(path, std::string(kDropV6) + "PRAGMA user_version = 5;"), SQLITE_OK);
  auto lb = Logbook::Open(path, true);
  ASSERT_TRUE(lb.ok()) << lb.status().ToString();
  auto& book = *lb.value();
  EXPECT_EQ(book.Run(old_run).value().slurm_job_id, "");
  const int64_t run = book.CreateRun("s", "", "", "/w", 2).value();
  ASSERT_TRUE(book.SetRunSlurmJob(run, "4242").ok());
  EXPECT_EQ(book.Run(run).value().slurm_job_id, "4242");
  EXPECT_EQ(book.Run(old_run).value().slurm_job_id, "");
}

// Every vigild start takes an epoch larger than any before in the file, on
// every run, across reopens; a version-4 file gains the table in place.
TEST(Logbook, CoordinatorEpochsOnlyGrow) {
  TempDir dir;
  const std::string path = dir / "logbook.sqlite";
  int64_t run = 0;
  {
    auto lb = Logbook::Open(path, true);
    ASSERT_TRUE(lb.ok()) << lb.status().ToString();
    run = lb.value()->CreateRun("r", "", "", "/w", 1).value();
    EXPECT_EQ(lb.value()->BeginEpoch(run, 10, 100, "head-0").value(), 1);
    EXPECT_EQ(lb.value()->BeginEpoch(run, 20, 101, "head-0").value(), 2);
  }
  ASSERT_EQ(ExecRaw(path, std::string(kDropV6) +
                              "DROP TABLE coordinator_epochs; PRAGMA user_version = 4;"),
            SQLITE_OK);
  auto lb = Logbook::Open(path, false);
  ASSERT_TRUE(lb.ok()) << lb.status().ToString();
  auto& book = *lb.value();
  EXPECT_TRUE(book.Epochs(run).value().empty()) << "migrated: the table is new";
  const int64_t other = book.CreateRun("s", "", "", "/w", 2).value();
  EXPECT_EQ(book.BeginEpoch(run, 30, 102, "head-1").value(), 1);
  EXPECT_EQ(book.BeginEpoch(other, 40, 103, "head-1").value(), 2) << "over every run";
  EXPECT_EQ(book.BeginEpoch(run, 50, 104, "head-2").value(), 3);
  const auto epochs = book.Epochs(run).value();
  ASSERT_EQ(epochs.size(), 2u);
  EXPECT_EQ(epochs[0].epoch, 1);
  EXPECT_EQ(epochs[0].pid, 102);
  EXPECT_EQ(epochs[0].host, "head-1");
  EXPECT_EQ(epochs[1].epoch, 3);
  EXPECT_EQ(epochs[1].started_at_us, 50);
  EXPECT_FALSE(book.BeginEpoch(999, 60, 105, "x").ok()) << "a run that is not there";
}

// A version-1 logbook (written by an older vigil) is migrated in place on
// open: its checkpoints keep their rows and become `committed`, and the new
// state column takes corrupt and deleted marks.
TEST(Logbook, MigratesAVersion1FileInPlace) {
  TempDir dir;
  const std::string path = dir / "old.sqlite";
  int64_t run = 0;
  {
    auto lb = Logbook::Open(path, true);
    ASSERT_TRUE(lb.ok());
    run = lb.value()->CreateRun("old", "name: old\n", "abcd", "/w", 1).value();
  }
  ASSERT_EQ(ExecRaw(path, kDropV3), SQLITE_OK);
  ASSERT_EQ(ExecRaw(path,
                    "ALTER TABLE checkpoints DROP COLUMN state; "
                    "ALTER TABLE checkpoints DROP COLUMN state_changed_at_us; "
                    "INSERT INTO checkpoints (run_id, step, path, bytes, committed_at_us) "
                    "VALUES (" +
                        std::to_string(run) +
                        ", 20, '/w/step-20', 10, 5); "
                        "PRAGMA user_version = 1;"),
            SQLITE_OK);
  auto lb = Logbook::Open(path, false);
  ASSERT_TRUE(lb.ok()) << lb.status().ToString();
  auto rows = lb.value()->Checkpoints(run).value();
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0].state, "committed");
  ASSERT_TRUE(lb.value()->SetCheckpointState(rows[0].id, "corrupt", 7).ok());
  EXPECT_EQ(lb.value()->Checkpoints(run).value()[0].state, "corrupt");
  EXPECT_EQ(ExecRaw(path, "ALTER TABLE checkpoints DROP COLUMN state"), SQLITE_OK)
      << "the migrated file has the new column";
}

// A version-2 file gains the notes table and the filter indices in place.
TEST(Logbook, MigratesAVersion2FileInPlace) {
  TempDir dir;
  const std::string path = dir / "v2.sqlite";
  { ASSERT_TRUE(Logbook::Open(path, true).ok()); }
  // A version-2 file with an event and the intervention that answered it.
  ASSERT_EQ(
      ExecRaw(path, std::string(kDropV3) +
                        "INSERT INTO runs (id, name, spec_yaml, config_hash, workdir, "
                        "started_at_us) VALUES (1, 'r', '', '', '', 1);"
                        "INSERT INTO events (id, run_id, time_us, kind, host, rank) "
                        "VALUES (1, 1, 2, 'process_exit', 'host-9', 5);"
                        "INSERT INTO interventions (run_id, event_id, time_us, action, actor) "
                        "VALUES (1, 1, 3, 'restart_from_latest', 'auto:restart');"
                        "PRAGMA user_version = 2;"),
      SQLITE_OK);
  auto lb = Logbook::Open(path, false);
  ASSERT_TRUE(lb.ok()) << lb.status().ToString();
  const int64_t run = 1;
  EntryFilter on_host;
  on_host.host = "host-9";
  on_host.rank = 5;
  const auto found = lb.value()->Entries(on_host);
  ASSERT_TRUE(found.ok()) << found.status().ToString();
  ASSERT_EQ(found->size(), 2u) << "the old intervention took its event's host and rank";
  EXPECT_EQ(found->at(1).what, "restart_from_latest");
  EXPECT_EQ(found->at(1).host, "host-9");
  ASSERT_TRUE(lb.value()->AddNote({0, run, 5, "alice", "host-3 swapped"}).ok());
  EXPECT_EQ(lb.value()->Notes(run).value().at(0).text, "host-3 swapped");
  std::string err;
  EXPECT_NE(ExecRaw(path, "UPDATE notes SET text='x'", &err), SQLITE_OK);
  EXPECT_NE(err.find("append-only"), std::string::npos) << err;
  EXPECT_NE(ExecRaw(path, "DELETE FROM notes"), SQLITE_OK);
}

// A small run: two generations, a failure between them, notes.
class LogbookQueries : public ::testing::Test {
 protected:
  void SetUp() override {
    lb_ = std::move(Logbook::Open(dir_ / "logbook.sqlite", true).value());
    run_ = lb_->CreateRun("r", "", "", "", kSecond).value();
    GenerationRow g0;
    g0.run_id = run_;
    g0.number = 0;
    g0.world_size = 4;
    g0.hosts = "host-0,host-1";
    g0.started_at_us = 2 * kSecond;
    gen0_ = lb_->StartGeneration(g0).value();
    ASSERT_TRUE(lb_->MarkGenerationFirstStep(gen0_, 3 * kSecond).ok());
    CheckpointRow c;
    c.run_id = run_;
    c.generation_id = gen0_;
    c.step = 100;
    c.path = "/ckpt/step-100";
    c.committed_at_us = 7 * kSecond;
    ASSERT_TRUE(lb_->AddCheckpoint(c).ok());
    exit_ = Event("process_exit", "host-1", 2, 10 * kSecond);
    restart_ = Intervention(exit_, "restart_from_latest", "auto:restart", 10 * kSecond + 1);
    ASSERT_TRUE(lb_->EndGeneration(gen0_, 10 * kSecond + 2, "rank 2 died").ok());
    GenerationRow g1 = g0;
    g1.number = 1;
    g1.resumed_from_step = 100;
    g1.resumed_from_path = "/ckpt/step-100";
    g1.cause_intervention_id = restart_;
    g1.started_at_us = 11 * kSecond;
    gen1_ = lb_->StartGeneration(g1).value();
    ASSERT_TRUE(lb_->MarkGenerationFirstStep(gen1_, 12 * kSecond).ok());
    straggler_ = Event("straggler", "host-0", 1, 15 * kSecond);
    Intervention(straggler_, "page", "auto:straggler", 15 * kSecond + 1);
    ASSERT_TRUE(lb_->AddNote({0, run_, 16 * kSecond, "alice", "looking at host-0"}).ok());
    Intervention(std::nullopt, "resume", "human:bob", 17 * kSecond);
    ASSERT_TRUE(lb_->EndGeneration(gen1_, 20 * kSecond, "all ranks finished").ok());
    ASSERT_TRUE(lb_->FinishRun(run_, "succeeded", 21 * kSecond, 300, 1.0, "d", 1.0).ok());
  }

  int64_t Event(const std::string& kind, const std::string& host, int rank, int64_t t) {
    EventRow e;
    e.run_id = run_;
    e.generation_id = t < 11 * kSecond ? gen0_ : gen1_;
    e.time_us = t;
    e.kind = kind;
    e.host = host;
    e.rank = rank;
    return lb_->AddEvent(e).value();
  }
  int64_t Intervention(std::optional<int64_t> event, const std::string& action,
                       const std::string& actor, int64_t t) {
    InterventionRow i;
    i.run_id = run_;
    i.event_id = event;
    i.time_us = t;
    i.action = action;
    i.actor = actor;
    return lb_->AddIntervention(i).value();
  }
  std::vector<std::string> Whats(const EntryFilter& f) {
    const auto entries = lb_->Entries(f);
    EXPECT_TRUE(entries.ok()) << entries.status().ToString();
    std::vector<std::string> out;
    if (!entries.ok()) return out;
    for (const auto& e : entries.value()) out.push_back(e.what);
    return out;
  }

  static constexpr int64_t kSecond = 1'000'000;
  TempDir dir_;
  std::unique_ptr<Logbook> lb_;
  int64_t run_ = 0, gen0_ = 0, gen1_ = 0, exit_ = 0, restart_ = 0, straggler_ = 0;
};

TEST_F(LogbookQueries, EveryFilterAndTheirCombinations) {
  using V = std::vector<std::string>;
  EntryFilter all;
  EXPECT_EQ(Whats(all),
            (V{"process_exit", "restart_from_latest", "straggler", "page", "note", "resume"}));
  EntryFilter f;
  f.since_us = 10 * kSecond + 1;
  f.until_us = 16 * kSecond;
  EXPECT_EQ(Whats(f), (V{"restart_from_latest", "straggler", "page"})) << "since <= t < until";
  f = {};
  f.kinds = {"process_exit", "note"};
  EXPECT_EQ(Whats(f), (V{"process_exit", "note"}));
  f = {};
  f.host = "host-1";
  EXPECT_EQ(Whats(f), (V{"process_exit", "restart_from_latest"}))
      << "an intervention goes with the event it answers";
  f = {};
  f.rank = 1;
  EXPECT_EQ(Whats(f), (V{"straggler", "page"}));
  f = {};
  f.actor = "human";
  EXPECT_EQ(Whats(f), (V{"note", "resume"})) << "every human actor, notes included";
  f.actor = "human:bob";
  EXPECT_EQ(Whats(f), (V{"resume"}));
  f.actor = "auto";
  EXPECT_EQ(Whats(f), (V{"restart_from_latest", "page"}));
  f.actor = "auto:restart";
  f.host = "host-1";
  EXPECT_EQ(Whats(f), (V{"restart_from_latest"}));
  f = {};
  f.last = 2;
  EXPECT_EQ(Whats(f), (V{"note", "resume"})) << "the newest two, in time order";
  f = {};
  f.run_id = run_ + 1;
  EXPECT_TRUE(Whats(f).empty());
}

TEST_F(LogbookQueries, AnActorKindMergesItsActorsNewestFirst) {
  using V = std::vector<std::string>;
  // Look-alikes that share the prefix but not the kind.
  Intervention(std::nullopt, "humanoid", "humanoid:x", 30 * kSecond);
  Intervention(std::nullopt, "human-ish", "human-ish", 31 * kSecond);
  Intervention(std::nullopt, "chaos", "chaos", 32 * kSecond);
  // Interleaved in time across actors, so the newest few come from several.
  Intervention(std::nullopt, "a", "human:zed", 33 * kSecond);
  Intervention(std::nullopt, "b", "human:amy", 34 * kSecond);
  Intervention(std::nullopt, "c", "human", 35 * kSecond);
  Intervention(std::nullopt, "d", "human:zed", 36 * kSecond);
  EntryFilter f;
  f.actor = "human";
  f.last = 4;
  EXPECT_EQ(Whats(f), (V{"a", "b", "c", "d"}));
  f.last = 0;
  EXPECT_EQ(Whats(f), (V{"note", "resume", "a", "b", "c", "d"}));
  f.actor = "chaos";
  EXPECT_EQ(Whats(f), (V{"chaos"}));
  f.actor = "humanoid";
  EXPECT_EQ(Whats(f), (V{"humanoid"}));

  // More actors of a kind than one query walks one by one: the same answer, sorted.
  for (int k = 0; k < 250; ++k) {
    Intervention(std::nullopt, "bulk" + std::to_string(k), "auto:rule" + std::to_string(k),
                 (40 + k) * kSecond);
  }
  f.actor = "auto";
  f.last = 3;
  EXPECT_EQ(Whats(f), (V{"bulk247", "bulk248", "bulk249"}));
  f.last = 0;
  EXPECT_EQ(Whats(f).size(), 252u) << "250 rules, restart and page";
}

TEST_F(LogbookQueries, AFollowerSeesEachNewRowOnce) {
  EntryFilter f;
  const LogbookIds first = lb_->MaxIds().value();
  EXPECT_EQ(first.event, straggler_);
  f.upto = first;
  EXPECT_EQ(lb_->Entries(f).value().size(), 6u);
  f.after = first;
  const int64_t later = Event("rank_hang", "host-0", 3, 18 * kSecond);
  ASSERT_TRUE(lb_->AddNote({0, run_, 19 * kSecond, "carol", "hang on host-0"}).ok());
  f.upto = lb_->MaxIds().value();
  const auto next = lb_->Entries(f).value();
  ASSERT_EQ(next.size(), 2u);
  EXPECT_EQ(next[0].id, later);
  EXPECT_EQ(next[1].type, "note");
  EXPECT_EQ(next[1].actor, "human:carol");
  f.after = *f.upto;
  f.upto = lb_->MaxIds().value();
  EXPECT_TRUE(lb_->Entries(f).value().empty());
}

TEST_F(LogbookQueries, StatsCountGoodputAgainstWhatWasRedone) {
  const RunStats s = lb_->Stats(run_, 0).value();
  EXPECT_DOUBLE_EQ(s.wall_seconds, 20.0);
  // Generation 0 trained 3 s -> 10 s, but only up to its checkpoint at 7 s
  // survived; generation 1 trained 12 s -> 20 s.
  EXPECT_NEAR(s.productive_seconds, 4.0 + 8.0, 1e-9);
  EXPECT_NEAR(s.lost_seconds, 8.0, 1e-9);
  EXPECT_NEAR(s.goodput, 12.0 / 20.0, 1e-9);
  EXPECT_EQ(s.generations, 2);
  EXPECT_EQ(s.restarts, 1);
  ASSERT_TRUE(s.mtbf_seconds);
  EXPECT_NEAR(*s.mtbf_seconds, 7.0 + 8.0, 1e-5) << "training time per failure";
  EXPECT_EQ(s.failures_by_kind,
            (std::vector<std::pair<std::string, int64_t>>{{"process_exit", 1}, {"straggler", 1}}));
  EXPECT_EQ(s.failures_by_host,
            (std::vector<std::pair<std::string, int64_t>>{{"host-0", 1}, {"host-1", 1}}));
  EXPECT_FALSE(lb_->Stats(run_ + 1, 0).ok());
  const auto ev = lb_->Event(exit_).value();
  ASSERT_TRUE(ev);
  EXPECT_EQ(ev->kind, "process_exit");
  EXPECT_FALSE(lb_->Event(9999).value());
}

TEST(LogbookQuery, UrlQueriesBecomeFilters) {
  const int64_t now = 1'800'000'000'000'000;
  auto f = ParseEntryQuery(
      "kind=rank_hang&kind=host_lost&host=host%2D7&rank=3&actor=human%3Aalice"
      "&since=2h&until=2026-11-24T04%3A00%3A00&run=2&last=50",
      now, 1000);
  ASSERT_TRUE(f.ok()) << f.status().ToString();
  EXPECT_EQ(f->kinds, (std::vector<std::string>{"rank_hang", "host_lost"}));
  EXPECT_EQ(f->host, "host-7");
  EXPECT_EQ(f->rank, 3);
  EXPECT_EQ(f->actor, "human:alice");
  EXPECT_EQ(f->since_us, now - 2 * 3600 * 1'000'000LL);
  EXPECT_EQ(f->until_us, ParseTimePoint("2026-11-24T04:00:00", now).value());
  EXPECT_EQ(f->run_id, 2);
  EXPECT_EQ(f->last, 50u);
  EXPECT_EQ(ParseEntryQuery("", now, 1000).value().last, 1000u) << "the default cap";
  for (const char* bad : {"color=red", "rank=-1", "last=many", "since=yesterday", "host=%zz"}) {
    EXPECT_FALSE(ParseEntryQuery(bad, now, 10).ok()) << bad;
  }
  EXPECT_NE(ParseEntryQuery("color=red", now, 10).status().message().find("unknown parameter"),
            std::string::npos);
}

TEST(TimePoints, JournalctlForms) {
  const int64_t now = 1'800'000'000'000'000;
  EXPECT_EQ(ParseTimePoint("now", now).value(), now);
  EXPECT_EQ(ParseTimePoint("30m", now).value(), now - 30 * 60 * 1'000'000LL);
  EXPECT_EQ(ParseTimePoint("1w", now).value(), now - 7 * 86400 * 1'000'000LL);
  const int64_t t = 1795996800LL * 1'000'000;  // 2026-11-30T00:00:00Z
  EXPECT_EQ(ParseTimePoint("2026-11-30", now).value(), t);
  EXPECT_EQ(ParseTimePoint("2026-11-30 01:02", now).value(), t + 3720 * 1'000'000LL);
  EXPECT_EQ(ParseTimePoint("2026-11-30T01:02:03Z", now).value(), t + 3723 * 1'000'000LL);
  EXPECT_EQ(ParseTimePoint("2026-11-30T01:02:03.250", now).value(),
            t + 3723 * 1'000'000LL + 250'000);
  for (const char* bad : {"", "yesterday", "2026-13-01", "2026-02-30", "2026-11-30T25:00",
                          "2026-11-30T01:02:03+01:00", "11/30/2026", "-2h"}) {
    EXPECT_FALSE(ParseTimePoint(bad, now).ok()) << bad;
  }
}

}  // namespace
}  // namespace vigil
