#include "logbook/logbook.h"

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

}  // namespace
}  // namespace vigil
