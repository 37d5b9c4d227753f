// The logbook's row reads: runs, generations, checkpoints, events,
// interventions, notes and steps of a run, one table each, and the largest
// id of each table (where LogbookWriter numbers on from).
#include "logbook/logbook.h"

#include <algorithm>

#include "logbook/sqlite_statement.h"

namespace vigil {
namespace {

using logbook_detail::OptInt;
using logbook_detail::OptReal;
using logbook_detail::Stmt;
using logbook_detail::Text;

constexpr const char* kStepColumns =
    "run_id, generation_id, step, time_us, loss, lr, grad_norm, tokens_per_second, step_seconds";

StepRow ReadStep(sqlite3_stmt* r) {
  StepRow s;
  s.run_id = sqlite3_column_int64(r, 0);
  s.generation_id = sqlite3_column_int64(r, 1);
  s.step = sqlite3_column_int64(r, 2);
  s.time_us = sqlite3_column_int64(r, 3);
  s.loss = OptReal(r, 4);
  s.lr = OptReal(r, 5);
  s.grad_norm = OptReal(r, 6);
  s.tokens_per_second = OptReal(r, 7);
  s.step_seconds = OptReal(r, 8);
  return s;
}

}  // namespace

Result<std::vector<StepRow>> Logbook::Steps(int64_t run_id, int64_t since_us, int64_t until_us,
                                            size_t limit) {
  std::vector<StepRow> out;
  const std::string sql = std::string("SELECT ") + kStepColumns +
                          " FROM steps WHERE run_id=? AND time_us>=? AND time_us<? ORDER BY "
                          "time_us LIMIT ?";
  Stmt s(db_, sql.c_str());
  s.Bind(1, run_id).Bind(2, since_us).Bind(3, until_us);
  s.Bind(4, limit ? static_cast<int64_t>(limit) : int64_t{-1});
  VIGIL_RETURN_IF_ERROR(s.ForEach([&](sqlite3_stmt* r) { out.push_back(ReadStep(r)); }));
  return out;
}

Result<std::vector<StepRow>> Logbook::StepsAround(int64_t run_id, int64_t time_us, size_t n) {
  std::vector<StepRow> out;
  const std::string before_sql =
      std::string("SELECT ") + kStepColumns +
      " FROM steps WHERE run_id=? AND time_us<=? ORDER BY time_us DESC LIMIT ?";
  Stmt before(db_, before_sql.c_str());
  before.Bind(1, run_id).Bind(2, time_us).Bind(3, static_cast<int64_t>(n));
  VIGIL_RETURN_IF_ERROR(before.ForEach([&](sqlite3_stmt* r) { out.push_back(ReadStep(r)); }));
  std::reverse(out.begin(), out.end());
  const std::string after_sql = std::string("SELECT ") + kStepColumns +
                                " FROM steps WHERE run_id=? AND time_us>? ORDER BY time_us LIMIT ?";
  Stmt after(db_, after_sql.c_str());
  after.Bind(1, run_id).Bind(2, time_us).Bind(3, static_cast<int64_t>(n));
  VIGIL_RETURN_IF_ERROR(after.ForEach([&](sqlite3_stmt* r) { out.push_back(ReadStep(r)); }));
  return out;
}

Result<LogbookIds> Logbook::MaxIds() {
  LogbookIds ids;
  Stmt s(db_,
         "SELECT (SELECT COALESCE(MAX(id), 0) FROM events), (SELECT COALESCE(MAX(id), 0) FROM "
         "interventions), (SELECT COALESCE(MAX(id), 0) FROM notes), (SELECT COALESCE(MAX(id), 0) "
         "FROM generations), (SELECT COALESCE(MAX(id), 0) FROM checkpoints)");
  VIGIL_RETURN_IF_ERROR(s.ForEach([&](sqlite3_stmt* r) {
    ids = {sqlite3_column_int64(r, 0), sqlite3_column_int64(r, 1), sqlite3_column_int64(r, 2),
           sqlite3_column_int64(r, 3), sqlite3_column_int64(r, 4)};
  }));
  return ids;
}

Result<std::vector<EpochRow>> Logbook::Epochs(int64_t run_id) {
  std::vector<EpochRow> out;
  Stmt s(db_,
         "SELECT epoch, run_id, started_at_us, pid, host FROM coordinator_epochs WHERE run_id = ? "
         "ORDER BY epoch");
  s.Bind(1, run_id);
  VIGIL_RETURN_IF_ERROR(s.ForEach([&](sqlite3_stmt* r) {
    EpochRow row;
    row.epoch = sqlite3_column_int64(r, 0);
    row.run_id = sqlite3_column_int64(r, 1);
    row.started_at_us = sqlite3_column_int64(r, 2);
    row.pid = sqlite3_column_int64(r, 3);
    row.host = Text(r, 4);
    out.push_back(std::move(row));
  }));
  return out;
}

Result<int64_t> Logbook::NewestEpoch() {
  int64_t newest = 0;
  Stmt s(db_, "SELECT COALESCE(MAX(epoch), 0) FROM coordinator_epochs");
  VIGIL_RETURN_IF_ERROR(s.ForEach([&](sqlite3_stmt* r) { newest = sqlite3_column_int64(r, 0); }));
  return newest;
}

Result<std::vector<RunRow>> Logbook::Runs() {
  std::vector<RunRow> out;
  Stmt s(db_,
         "SELECT id, name, config_hash, workdir, started_at_us, ended_at_us, status, final_step, "
         "final_loss, params_digest, tokens_per_second, slurm_job_id FROM runs ORDER BY id");
  VIGIL_RETURN_IF_ERROR(s.ForEach([&](sqlite3_stmt* r) {
    RunRow row;
    row.id = sqlite3_column_int64(r, 0);
    row.name = Text(r, 1);
    row.config_hash = Text(r, 2);
    row.workdir = Text(r, 3);
    row.started_at_us = sqlite3_column_int64(r, 4);
    row.ended_at_us = OptInt(r, 5);
    row.status = Text(r, 6);
    row.final_step = OptInt(r, 7);
    row.final_loss = OptReal(r, 8);
    row.params_digest = Text(r, 9);
    row.tokens_per_second = OptReal(r, 10);
    row.slurm_job_id = Text(r, 11);
    out.push_back(std::move(row));
  }));
  return out;
}

Result<std::vector<GenerationRow>> Logbook::Generations(int64_t run_id) {
  std::vector<GenerationRow> out;
  Stmt s(db_,
         "SELECT id, run_id, number, world_size, hosts, resumed_from_step, resumed_from_path, "
         "cause_intervention_id, started_at_us, first_step_at_us, ended_at_us, end_reason "
         "FROM generations WHERE run_id=? ORDER BY number");
  s.Bind(1, run_id);
  VIGIL_RETURN_IF_ERROR(s.ForEach([&](sqlite3_stmt* r) {
    GenerationRow g;
    g.id = sqlite3_column_int64(r, 0);
    g.run_id = sqlite3_column_int64(r, 1);
    g.number = sqlite3_column_int64(r, 2);
    g.world_size = sqlite3_column_int(r, 3);
    g.hosts = Text(r, 4);
    g.resumed_from_step = OptInt(r, 5);
    g.resumed_from_path = Text(r, 6);
    g.cause_intervention_id = OptInt(r, 7);
    g.started_at_us = sqlite3_column_int64(r, 8);
    g.first_step_at_us = OptInt(r, 9);
    g.ended_at_us = OptInt(r, 10);
    g.end_reason = Text(r, 11);
    out.push_back(std::move(g));
  }));
  return out;
}

Result<std::vector<CheckpointRow>> Logbook::Checkpoints(int64_t run_id) {
  std::vector<CheckpointRow> out;
  Stmt s(db_,
         "SELECT id, run_id, generation_id, step, path, bytes, committed_at_us, state FROM "
         "checkpoints WHERE run_id=? ORDER BY step DESC, id DESC");
  s.Bind(1, run_id);
  VIGIL_RETURN_IF_ERROR(s.ForEach([&](sqlite3_stmt* r) {
    CheckpointRow c;
    c.id = sqlite3_column_int64(r, 0);
    c.run_id = sqlite3_column_int64(r, 1);
    c.generation_id = OptInt(r, 2);
    c.step = sqlite3_column_int64(r, 3);
    c.path = Text(r, 4);
    c.bytes = sqlite3_column_int64(r, 5);
    c.committed_at_us = sqlite3_column_int64(r, 6);
    c.state = Text(r, 7);
    out.push_back(std::move(c));
  }));
  return out;
}

Result<std::vector<EventRow>> Logbook::Events(int64_t run_id) {
  return EventsWhere("run_id", run_id);
}

Result<std::vector<EventRow>> Logbook::EventsWhere(const char* column, int64_t value) {
  std::vector<EventRow> out;
  const std::string sql = std::string(
                              "SELECT id, run_id, generation_id, time_us, kind, host, rank, step, "
                              "detail FROM events WHERE ") +
                          column + "=? ORDER BY time_us, id";
  Stmt s(db_, sql.c_str());
  s.Bind(1, value);
  VIGIL_RETURN_IF_ERROR(s.ForEach([&](sqlite3_stmt* r) {
    EventRow e;
    e.id = sqlite3_column_int64(r, 0);
    e.run_id = sqlite3_column_int64(r, 1);
    e.generation_id = OptInt(r, 2);
    e.time_us = sqlite3_column_int64(r, 3);
    e.kind = Text(r, 4);
    e.host = Text(r, 5);
    if (auto rank = OptInt(r, 6)) e.rank = static_cast<int>(*rank);
    e.step = OptInt(r, 7);
    e.detail_json = Text(r, 8);
    out.push_back(std::move(e));
  }));
  return out;
}

Result<std::vector<InterventionRow>> Logbook::Interventions(int64_t run_id) {
  return InterventionsWhere("run_id", run_id);
}

Result<std::vector<InterventionRow>> Logbook::InterventionsOf(int64_t event_id) {
  return InterventionsWhere("event_id", event_id);
}

Result<std::vector<InterventionRow>> Logbook::InterventionsWhere(const char* column,
                                                                 int64_t value) {
  std::vector<InterventionRow> out;
  const std::string sql =
      std::string(
          "SELECT id, run_id, event_id, time_us, action, actor, params, outcome FROM "
          "interventions WHERE ") +
      column + "=? ORDER BY time_us, id";
  Stmt s(db_, sql.c_str());
  s.Bind(1, value);
  VIGIL_RETURN_IF_ERROR(s.ForEach([&](sqlite3_stmt* r) {
    InterventionRow i;
    i.id = sqlite3_column_int64(r, 0);
    i.run_id = sqlite3_column_int64(r, 1);
    i.event_id = OptInt(r, 2);
    i.time_us = sqlite3_column_int64(r, 3);
    i.action = Text(r, 4);
    i.actor = Text(r, 5);
    i.params_json = Text(r, 6);
    i.outcome = Text(r, 7);
    out.push_back(std::move(i));
  }));
  return out;
}

Result<std::optional<EventRow>> Logbook::Event(int64_t event_id) {
  auto rows = EventsWhere("id", event_id);
  if (!rows.ok()) return rows.status();
  if (rows->empty()) return std::optional<EventRow>();
  return std::optional<EventRow>(std::move(rows->front()));
}

Result<std::vector<NoteRow>> Logbook::Notes(int64_t run_id) {
  std::vector<NoteRow> out;
  Stmt s(db_, "SELECT id, run_id, time_us, author, text FROM notes WHERE run_id=? ORDER BY id");
  s.Bind(1, run_id);
  VIGIL_RETURN_IF_ERROR(s.ForEach([&](sqlite3_stmt* r) {
    out.push_back({sqlite3_column_int64(r, 0), sqlite3_column_int64(r, 1),
                   sqlite3_column_int64(r, 2), Text(r, 3), Text(r, 4)});
  }));
  return out;
}

Result<RunRow> Logbook::Run(int64_t run_id) {
  auto runs = Runs();
  if (!runs.ok()) return runs.status();
  for (auto& r : runs.value()) {
    if (r.id == run_id) return std::move(r);
  }
  return Status::NotFound("run " + std::to_string(run_id) + " is not in the logbook");
}

}  // namespace vigil
