// LogbookWriter, the writer vigild uses: ids at once (on from the file's),
// rows committed in order on its own thread, callbacks only once what came
// before is in; a writer fenced by a newer epoch stops, and a destroyed one
// commits what was queued. (Run under ThreadSanitizer by scripts/test.sh.)
#include "logbook/logbook_writer.h"

#include <gtest/gtest.h>

#include <atomic>

#include "logbook/logbook.h"
#include "tests/unit/test_util.h"

namespace vigil {
namespace {

using testing::TempDir;

TEST(LogbookWriter, NumbersRowsAheadAndCallsBackOnlyAfterTheirCommit) {
  TempDir dir;
  const std::string path = dir / "logbook.sqlite";
  auto reader = Logbook::Open(path, true).value();
  const int64_t run = reader->CreateRun("r", "", "", "", 1).value();
  EventRow before;
  before.run_id = run;
  before.kind = "process_exit";
  ASSERT_EQ(reader->AddEvent(before).value(), 1);
  std::vector<std::string> errors;
  auto writer =
      LogbookWriter::Open(path, [&](const Status& st) { errors.push_back(st.message()); });
  ASSERT_TRUE(writer.ok()) << writer.status().ToString();
  auto& w = *writer.value();
  GenerationRow g;
  g.run_id = run;
  const int64_t gen = w.StartGeneration(g);
  EventRow e;
  e.run_id = run;
  e.generation_id = gen;
  e.kind = "rank_hang";
  e.host = "h1";
  const int64_t event = w.AddEvent(e);
  EXPECT_EQ(event, 2) << "ids go on from the file's";
  InterventionRow i;
  i.run_id = run;
  i.event_id = event;
  i.action = "restart_from_latest";
  const int64_t intervention = w.AddIntervention(i);
  // A row the schema refuses (no such run) is reported and dropped; the rest commit.
  EventRow orphan = e;
  orphan.run_id = run + 100;
  w.AddEvent(orphan);
  std::atomic<int> seen{-1};
  w.AfterCommit([&] {
    // Another connection sees the rows queued before the callback.
    auto other = Logbook::Open(path, false).value();
    seen = static_cast<int>(other->InterventionsOf(event).value().size());
  });
  w.Flush();
  EXPECT_TRUE(w.Idle());
  EXPECT_EQ(seen.load(), 1);
  const auto rows = reader->InterventionsOf(event).value();
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0].id, intervention);
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_NE(errors[0].find("FOREIGN KEY"), std::string::npos) << errors[0];
  EXPECT_GE(w.commits(), 1u);
}

TEST(LogbookWriter, AWriterFencedByANewerEpochWritesAndDoesNothingMore) {
  TempDir dir;
  const std::string path = dir / "logbook.sqlite";
  auto reader = Logbook::Open(path, true).value();
  const int64_t run = reader->CreateRun("r", "", "", "", 1).value();
  const int64_t mine = reader->BeginEpoch(run, 1, 100, "a").value();
  auto w = LogbookWriter::Open(path).value();
  std::atomic<int64_t> fenced_by{0};
  w->Fence(mine, [&](int64_t newer) { fenced_by = newer; });
  EventRow e;
  e.run_id = run;
  e.kind = "straggler";
  w->AddEvent(e);
  w->Flush();
  EXPECT_FALSE(w->fenced());
  EXPECT_EQ(reader->Events(run).value().size(), 1u) << "its own epoch is the newest: written";
  // A newer vigild takes the run over.
  const int64_t newer = reader->BeginEpoch(run, 2, 200, "b").value();
  std::atomic<bool> ordered{false};
  w->AddEvent(e);
  w->AfterCommit([&] { ordered = true; });
  w->Flush();  // returns: nothing is left waiting
  EXPECT_TRUE(w->fenced());
  EXPECT_EQ(fenced_by.load(), newer);
  EXPECT_FALSE(ordered.load()) << "what waited on the fenced commit never happens";
  w->AddEvent(e);
  w->Flush();
  EXPECT_EQ(reader->Events(run).value().size(), 1u) << "nothing of the fenced writer's";
}

TEST(LogbookWriter, CommitsEverythingQueuedWhenDestroyed) {
  TempDir dir;
  const std::string path = dir / "logbook.sqlite";
  auto reader = Logbook::Open(path, true).value();
  const int64_t run = reader->CreateRun("r", "", "", "", 1).value();
  {
    auto w = LogbookWriter::Open(path).value();
    for (int k = 0; k < 5000; ++k) {
      EventRow e;
      e.run_id = run;
      e.time_us = k;
      e.kind = "straggler";
      w->AddEvent(e);
    }
    w->FinishRun(run, "succeeded", 10, 300, 1.5, "d", 2.0);
  }
  EXPECT_EQ(reader->Runs().value().at(0).status, "succeeded");
  EntryFilter all;
  EXPECT_EQ(reader->Entries(all).value().size(), 5000u);
}

}  // namespace
}  // namespace vigil
