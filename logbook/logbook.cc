// The logbook's connection and its writes: opening (and migrating, in
// logbook_schema.cc), kept statements, transactions, and the rows vigild
// and the CLI write (runs, generations, events, interventions, checkpoints,
// notes, steps). The reads are in logbook_reads.cc, logbook_entries.cc and
// logbook_stats.cc.
#include "logbook/logbook.h"

#include <filesystem>

#include "logbook/sqlite_statement.h"

namespace vigil {
namespace {

using logbook_detail::Stmt;

}  // namespace

Logbook::~Logbook() {
  for (auto& [sql, stmt] : statements_) sqlite3_finalize(stmt);
  sqlite3_close(db_);
}

sqlite3_stmt* Logbook::Statement(const char* sql) {
  auto it = statements_.find(sql);
  if (it != statements_.end()) return it->second;
  sqlite3_stmt* stmt = nullptr;
  if (sqlite3_prepare_v3(db_, sql, -1, SQLITE_PREPARE_PERSISTENT, &stmt, nullptr) != SQLITE_OK) {
    sqlite3_finalize(stmt);
    return nullptr;  // the caller's Stmt reports sqlite3_errmsg
  }
  statements_.emplace(sql, stmt);
  return stmt;
}

Status Logbook::Exec(const std::string& sql) {
  char* err = nullptr;
  if (sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &err) != SQLITE_OK) {
    std::string msg = err ? err : "unknown error";
    sqlite3_free(err);
    return Status::IoError(path_ + ": " + msg);
  }
  return Status::Ok();
}

Result<std::unique_ptr<Logbook>> Logbook::Open(const std::string& path, bool create) {
  if (!create && !std::filesystem::exists(path)) {
    return Status::NotFound(path + ": no logbook here");
  }
  sqlite3* db = nullptr;
  int flags = SQLITE_OPEN_READWRITE | (create ? SQLITE_OPEN_CREATE : 0) | SQLITE_OPEN_FULLMUTEX;
  if (sqlite3_open_v2(path.c_str(), &db, flags, nullptr) != SQLITE_OK) {
    std::string msg = db ? sqlite3_errmsg(db) : "out of memory";
    sqlite3_close(db);
    return Status::IoError(path + ": cannot open logbook: " + msg);
  }
  std::unique_ptr<Logbook> lb(new Logbook(db, path));
  sqlite3_busy_timeout(db, 5000);
  // A file that is not a database fails here, on the first read.
  // Up to 256 MiB of page cache (taken as used): a months-long logbook's
  // indices stay in memory, where inserts at many hosts' and ranks' places are cheap.
  Status st = lb->Exec(
      "PRAGMA foreign_keys = ON; PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; "
      "PRAGMA cache_size = -262144;");
  if (!st.ok())
    return Status::InvalidArgument(path + ": not a vigil logbook (" + st.message() + ")");
  VIGIL_RETURN_IF_ERROR(lb->Migrate());
  return lb;
}

Status Logbook::Begin() { return Exec("BEGIN IMMEDIATE"); }

Status Logbook::Commit() { return Exec("COMMIT"); }

void Logbook::Rollback() { (void)Exec("ROLLBACK"); }

bool Logbook::InTransaction() const { return !sqlite3_get_autocommit(db_); }

Result<int64_t> Logbook::CreateRun(const std::string& name, const std::string& spec_yaml,
                                   const std::string& config_hash, const std::string& workdir,
                                   int64_t started_at_us) {
  Stmt s(
      db_,
      "INSERT INTO runs (name, spec_yaml, config_hash, workdir, started_at_us) VALUES (?,?,?,?,?)");
  s.Bind(1, name).Bind(2, spec_yaml).Bind(3, config_hash).Bind(4, workdir).Bind(5, started_at_us);
  VIGIL_RETURN_IF_ERROR(s.Run());
  return sqlite3_last_insert_rowid(db_);
}

Result<int64_t> Logbook::BeginEpoch(int64_t run_id, int64_t started_at_us, int64_t pid,
                                    const std::string& host) {
  Stmt s(db_, "INSERT INTO coordinator_epochs (run_id, started_at_us, pid, host) VALUES (?,?,?,?)");
  s.Bind(1, run_id).Bind(2, started_at_us).Bind(3, pid).Bind(4, host);
  VIGIL_RETURN_IF_ERROR(s.Run());
  return sqlite3_last_insert_rowid(db_);
}

Status Logbook::FinishRun(int64_t run_id, const std::string& status, int64_t ended_at_us,
                          std::optional<int64_t> final_step, std::optional<double> final_loss,
                          const std::string& params_digest,
                          std::optional<double> tokens_per_second) {
  Stmt s(db_,
         "UPDATE runs SET status=?, ended_at_us=?, final_step=?, final_loss=?, params_digest=?, "
         "tokens_per_second=? WHERE id=?");
  s.Bind(1, status)
      .Bind(2, ended_at_us)
      .Bind(3, final_step)
      .Bind(4, final_loss)
      .Bind(5, params_digest);
  s.Bind(6, tokens_per_second).Bind(7, run_id);
  return s.Run();
}

Status Logbook::SetRunStatus(int64_t run_id, const std::string& status) {
  Stmt s(db_, "UPDATE runs SET status=? WHERE id=?");
  s.Bind(1, status).Bind(2, run_id);
  return s.Run();
}

Status Logbook::SetRunSlurmJob(int64_t run_id, const std::string& slurm_job_id) {
  Stmt s(db_, "UPDATE runs SET slurm_job_id=? WHERE id=?");
  s.Bind(1, slurm_job_id).Bind(2, run_id);
  return s.Run();
}

namespace {

// A row's id: the one given (a writer that numbers its rows ahead), or NULL for the next.
std::optional<int64_t> IdOrNull(int64_t id) {
  return id > 0 ? std::optional<int64_t>(id) : std::nullopt;
}

}  // namespace

Result<int64_t> Logbook::StartGeneration(const GenerationRow& g) {
  Stmt s(db_,
         "INSERT INTO generations (run_id, number, world_size, hosts, resumed_from_step, "
         "resumed_from_path, cause_intervention_id, started_at_us, id) VALUES (?,?,?,?,?,?,?,?,?)");
  s.Bind(9, IdOrNull(g.id));
  s.Bind(1, g.run_id)
      .Bind(2, g.number)
      .Bind(3, static_cast<int64_t>(g.world_size))
      .Bind(4, g.hosts);
  s.Bind(5, g.resumed_from_step).Bind(6, g.resumed_from_path).Bind(7, g.cause_intervention_id);
  s.Bind(8, g.started_at_us);
  VIGIL_RETURN_IF_ERROR(s.Run());
  return sqlite3_last_insert_rowid(db_);
}

Status Logbook::MarkGenerationFirstStep(int64_t generation_id, int64_t at_us) {
  Stmt s(db_, "UPDATE generations SET first_step_at_us=? WHERE id=? AND first_step_at_us IS NULL");
  s.Bind(1, at_us).Bind(2, generation_id);
  return s.Run();
}

Status Logbook::EndGeneration(int64_t generation_id, int64_t ended_at_us,
                              const std::string& reason) {
  Stmt s(db_,
         "UPDATE generations SET ended_at_us=?, end_reason=? WHERE id=? AND ended_at_us IS NULL");
  s.Bind(1, ended_at_us).Bind(2, reason).Bind(3, generation_id);
  return s.Run();
}

namespace {

// Inserts rows with one kept statement in one transaction: all or none.
// Inside a transaction the caller began, in that one.
template <typename Row, typename BindRow>
Result<std::vector<int64_t>> InsertAll(sqlite3* db, sqlite3_stmt* kept,
                                       const std::vector<Row>& rows, BindRow bind) {
  std::vector<int64_t> ids;
  ids.reserve(rows.size());
  if (!sqlite3_get_autocommit(db)) {
    Stmt s(db, kept);
    for (const auto& row : rows) {
      s.Reset();
      bind(s, row);
      VIGIL_RETURN_IF_ERROR(s.Run());
      ids.push_back(sqlite3_last_insert_rowid(db));
    }
    return ids;
  }
  if (sqlite3_exec(db, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr) != SQLITE_OK)
    return Status::IoError(std::string("sqlite begin: ") + sqlite3_errmsg(db));
  Status st;
  {
    Stmt s(db, kept);
    for (const auto& row : rows) {
      s.Reset();
      bind(s, row);
      st = s.Run();
      if (!st.ok()) break;
      ids.push_back(sqlite3_last_insert_rowid(db));
    }
  }
  if (!st.ok()) {
    sqlite3_exec(db, "ROLLBACK", nullptr, nullptr, nullptr);
    return st;
  }
  if (sqlite3_exec(db, "COMMIT", nullptr, nullptr, nullptr) != SQLITE_OK)
    return Status::IoError(std::string("sqlite commit: ") + sqlite3_errmsg(db));
  return ids;
}

Result<int64_t> First(Result<std::vector<int64_t>> ids) {
  if (!ids.ok()) return ids.status();
  return ids->at(0);
}

}  // namespace

Result<int64_t> Logbook::AddEvent(const EventRow& e) { return First(AddEvents({e})); }

Result<std::vector<int64_t>> Logbook::AddEvents(const std::vector<EventRow>& events) {
  return InsertAll(
      db_,
      Statement("INSERT INTO events (run_id, generation_id, time_us, kind, host, rank, step, "
                "detail, id) VALUES (?,?,?,?,?,?,?,?,?)"),
      events, [](Stmt& s, const EventRow& e) {
        s.Bind(9, IdOrNull(e.id));
        s.Bind(1, e.run_id).Bind(2, e.generation_id).Bind(3, e.time_us);
        s.Bind(4, e.kind).Bind(5, e.host).Bind(6, e.rank).Bind(7, e.step);
        s.Bind(8, e.detail_json);
      });
}

Result<int64_t> Logbook::AddIntervention(const InterventionRow& i) {
  return First(AddInterventions({i}));
}

Result<std::vector<int64_t>> Logbook::AddInterventions(const std::vector<InterventionRow>& rows) {
  return InsertAll(
      db_,
      Statement("INSERT INTO interventions (run_id, event_id, time_us, action, actor, params, "
                "outcome, host, rank, id) VALUES (?1,?2,?3,?4,?5,?6,?7, "
                "COALESCE((SELECT host FROM events WHERE id = ?2), ''), "
                "(SELECT rank FROM events WHERE id = ?2), ?8)"),
      rows, [](Stmt& s, const InterventionRow& i) {
        s.Bind(8, IdOrNull(i.id));
        s.Bind(1, i.run_id).Bind(2, i.event_id).Bind(3, i.time_us);
        s.Bind(4, i.action).Bind(5, i.actor).Bind(6, i.params_json);
        s.Bind(7, i.outcome);
      });
}

Result<int64_t> Logbook::AddCheckpoint(const CheckpointRow& c) {
  Stmt s(db_,
         "INSERT INTO checkpoints (run_id, generation_id, step, path, bytes, committed_at_us, id) "
         "VALUES (?,?,?,?,?,?,?)");
  s.Bind(7, IdOrNull(c.id));
  s.Bind(1, c.run_id).Bind(2, c.generation_id).Bind(3, c.step).Bind(4, c.path).Bind(5, c.bytes);
  s.Bind(6, c.committed_at_us);
  VIGIL_RETURN_IF_ERROR(s.Run());
  return sqlite3_last_insert_rowid(db_);
}

Status Logbook::SetCheckpointState(int64_t checkpoint_id, const std::string& state, int64_t at_us,
                                   const std::string& new_path) {
  Stmt s(db_,
         "UPDATE checkpoints SET state=?, state_changed_at_us=?, path=CASE WHEN ?='' THEN path "
         "ELSE ? END WHERE id=?");
  s.Bind(1, state).Bind(2, at_us).Bind(3, new_path).Bind(4, new_path).Bind(5, checkpoint_id);
  return s.Run();
}

Result<int64_t> Logbook::AddNote(const NoteRow& n) {
  Stmt s(db_, "INSERT INTO notes (run_id, time_us, author, text) VALUES (?,?,?,?)");
  s.Bind(1, n.run_id).Bind(2, n.time_us).Bind(3, n.author).Bind(4, n.text);
  VIGIL_RETURN_IF_ERROR(s.Run());
  return sqlite3_last_insert_rowid(db_);
}

Status Logbook::AddSteps(const std::vector<StepRow>& steps) {
  return InsertAll(
             db_,
             Statement(
                 "INSERT OR REPLACE INTO steps (run_id, generation_id, step, time_us, loss, lr, "
                 "grad_norm, tokens_per_second, step_seconds) VALUES (?,?,?,?,?,?,?,?,?)"),
             steps,
             [](Stmt& s, const StepRow& r) {
               s.Bind(1, r.run_id).Bind(2, r.generation_id).Bind(3, r.step);
               s.Bind(4, r.time_us).Bind(5, r.loss).Bind(6, r.lr).Bind(7, r.grad_norm);
               s.Bind(8, r.tokens_per_second).Bind(9, r.step_seconds);
             })
      .status();
}

}  // namespace vigil
