#include "logbook/logbook.h"

#include "logbook/goodput_rule.h"

#include <algorithm>
#include <filesystem>
#include <functional>
#include <map>
#include <variant>

namespace vigil {
namespace {

// Schema version 1. Times are microseconds since the Unix epoch (UTC).
constexpr const char* kSchemaV1 = R"sql(
CREATE TABLE runs (
  id             INTEGER PRIMARY KEY,
  name           TEXT NOT NULL,
  spec_yaml      TEXT NOT NULL,
  config_hash    TEXT NOT NULL,
  workdir        TEXT NOT NULL,
  started_at_us  INTEGER NOT NULL,
  ended_at_us    INTEGER,
  status         TEXT NOT NULL DEFAULT 'running',
  final_step     INTEGER,
  final_loss     REAL,
  params_digest  TEXT NOT NULL DEFAULT '',
  tokens_per_second REAL
);
CREATE TABLE generations (
  id                INTEGER PRIMARY KEY,
  run_id            INTEGER NOT NULL REFERENCES runs(id),
  number            INTEGER NOT NULL,
  world_size        INTEGER NOT NULL,
  hosts             TEXT NOT NULL,
  resumed_from_step INTEGER,
  resumed_from_path TEXT NOT NULL DEFAULT '',
  cause_intervention_id INTEGER REFERENCES interventions(id),
  started_at_us     INTEGER NOT NULL,
  first_step_at_us  INTEGER,
  ended_at_us       INTEGER,
  end_reason        TEXT NOT NULL DEFAULT '',
  UNIQUE (run_id, number)
);
CREATE TABLE events (
  id             INTEGER PRIMARY KEY,
  run_id         INTEGER NOT NULL REFERENCES runs(id),
  generation_id  INTEGER REFERENCES generations(id),
  time_us        INTEGER NOT NULL,
  kind           TEXT NOT NULL,
  host           TEXT NOT NULL DEFAULT '',
  rank           INTEGER,
  step           INTEGER,
  detail         TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX events_run_time ON events(run_id, time_us);
CREATE TABLE interventions (
  id             INTEGER PRIMARY KEY,
  run_id         INTEGER NOT NULL REFERENCES runs(id),
  event_id       INTEGER REFERENCES events(id),
  time_us        INTEGER NOT NULL,
  action         TEXT NOT NULL,
  actor          TEXT NOT NULL,
  params         TEXT NOT NULL DEFAULT '{}',
  outcome        TEXT NOT NULL DEFAULT ''
);
CREATE INDEX interventions_run_time ON interventions(run_id, time_us);
CREATE INDEX interventions_event ON interventions(event_id);
CREATE TABLE checkpoints (
  id               INTEGER PRIMARY KEY,
  run_id           INTEGER NOT NULL REFERENCES runs(id),
  generation_id    INTEGER REFERENCES generations(id),
  step             INTEGER NOT NULL,
  path             TEXT NOT NULL,
  bytes            INTEGER NOT NULL,
  committed_at_us  INTEGER NOT NULL
);
CREATE INDEX checkpoints_run_step ON checkpoints(run_id, step);
CREATE TRIGGER events_no_update BEFORE UPDATE ON events
  BEGIN SELECT RAISE(ABORT, 'events are append-only'); END;
CREATE TRIGGER events_no_delete BEFORE DELETE ON events
  BEGIN SELECT RAISE(ABORT, 'events are append-only'); END;
CREATE TRIGGER interventions_no_update BEFORE UPDATE ON interventions
  BEGIN SELECT RAISE(ABORT, 'interventions are append-only'); END;
CREATE TRIGGER interventions_no_delete BEFORE DELETE ON interventions
  BEGIN SELECT RAISE(ABORT, 'interventions are append-only'); END;
)sql";

// A prepared statement that finalizes itself.
class Stmt {
 public:
  Stmt(sqlite3* db, const char* sql) : db_(db), owned_(true) {
    rc_ = sqlite3_prepare_v2(db, sql, -1, &stmt_, nullptr);
  }
  // One the connection keeps prepared (Logbook::Statement): reset, not
  // finalized, when done with.
  Stmt(sqlite3* db, sqlite3_stmt* kept)
      : db_(db), stmt_(kept), rc_(kept ? SQLITE_OK : SQLITE_ERROR), owned_(false) {}
  ~Stmt() {
    if (owned_) {
      sqlite3_finalize(stmt_);
    } else if (stmt_) {
      sqlite3_reset(stmt_);
      sqlite3_clear_bindings(stmt_);
    }
  }
  Stmt(const Stmt&) = delete;
  Stmt& operator=(const Stmt&) = delete;
  Status Prepared() const {
    return rc_ == SQLITE_OK
               ? Status::Ok()
               : Status::IoError(std::string("sqlite prepare: ") + sqlite3_errmsg(db_));
  }
  Stmt& Bind(int i, int64_t v) {
    sqlite3_bind_int64(stmt_, i, v);
    return *this;
  }
  Stmt& Bind(int i, double v) {
    sqlite3_bind_double(stmt_, i, v);
    return *this;
  }
  Stmt& Bind(int i, const std::string& v) {
    sqlite3_bind_text(stmt_, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
    return *this;
  }
  template <typename T>
  Stmt& Bind(int i, const std::optional<T>& v) {
    if (v)
      return Bind(
          i, static_cast<std::conditional_t<std::is_floating_point_v<T>, double, int64_t>>(*v));
    sqlite3_bind_null(stmt_, i);
    return *this;
  }
  // Makes the statement ready to bind and run again.
  void Reset() {
    sqlite3_reset(stmt_);
    sqlite3_clear_bindings(stmt_);
  }
  // Runs a statement that returns no rows.
  Status Run() {
    VIGIL_RETURN_IF_ERROR(Prepared());
    int rc = sqlite3_step(stmt_);
    if (rc != SQLITE_DONE) return Status::IoError(std::string("sqlite: ") + sqlite3_errmsg(db_));
    return Status::Ok();
  }
  // Iterates rows; returns an error if stepping fails.
  Status ForEach(const std::function<void(sqlite3_stmt*)>& row) {
    VIGIL_RETURN_IF_ERROR(Prepared());
    while (true) {
      int rc = sqlite3_step(stmt_);
      if (rc == SQLITE_ROW) {
        row(stmt_);
        continue;
      }
      if (rc == SQLITE_DONE) return Status::Ok();
      return Status::IoError(std::string("sqlite: ") + sqlite3_errmsg(db_));
    }
  }

 private:
  sqlite3* db_;
  sqlite3_stmt* stmt_ = nullptr;
  int rc_;
  bool owned_;
};

std::string Text(sqlite3_stmt* s, int col) {
  const unsigned char* t = sqlite3_column_text(s, col);
  return t ? reinterpret_cast<const char*>(t) : "";
}
std::optional<int64_t> OptInt(sqlite3_stmt* s, int col) {
  if (sqlite3_column_type(s, col) == SQLITE_NULL) return std::nullopt;
  return sqlite3_column_int64(s, col);
}
std::optional<double> OptReal(sqlite3_stmt* s, int col) {
  if (sqlite3_column_type(s, col) == SQLITE_NULL) return std::nullopt;
  return sqlite3_column_double(s, col);
}

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

// Version 2: a checkpoint's life after its commit. `state` is committed,
// corrupt (failed verification; never loaded again) or deleted (by
// retention; the deletion is also an intervention row).
constexpr const char* kMigrationV2 = R"sql(
ALTER TABLE checkpoints ADD COLUMN state TEXT NOT NULL DEFAULT 'committed';
ALTER TABLE checkpoints ADD COLUMN state_changed_at_us INTEGER;
)sql";

// Version 3: people's notes; an intervention's host and rank (its event's,
// copied when it is written, so that `--host` and `--rank` find both through
// an index); and indices for `vigil logbook ls` filters (time across runs,
// kind, host, rank, actor, action) and for a generation's cause.
constexpr const char* kMigrationV3 = R"sql(
ALTER TABLE interventions ADD COLUMN host TEXT NOT NULL DEFAULT '';
ALTER TABLE interventions ADD COLUMN rank INTEGER;
DROP TRIGGER interventions_no_update;
UPDATE interventions SET
  host = COALESCE((SELECT host FROM events WHERE events.id = interventions.event_id), ''),
  rank = (SELECT rank FROM events WHERE events.id = interventions.event_id);
CREATE TRIGGER interventions_no_update BEFORE UPDATE ON interventions
  BEGIN SELECT RAISE(ABORT, 'interventions are append-only'); END;
CREATE INDEX events_rank_time ON events(rank, time_us);
CREATE INDEX interventions_host_time ON interventions(host, time_us);
CREATE INDEX interventions_rank_time ON interventions(rank, time_us);
CREATE INDEX interventions_action_time ON interventions(action, time_us);
CREATE TABLE notes (
  id       INTEGER PRIMARY KEY,
  run_id   INTEGER NOT NULL REFERENCES runs(id),
  time_us  INTEGER NOT NULL,
  author   TEXT NOT NULL,
  text     TEXT NOT NULL
);
CREATE INDEX notes_run_time ON notes(run_id, time_us);
CREATE TRIGGER notes_no_update BEFORE UPDATE ON notes
  BEGIN SELECT RAISE(ABORT, 'notes are append-only'); END;
CREATE TRIGGER notes_no_delete BEFORE DELETE ON notes
  BEGIN SELECT RAISE(ABORT, 'notes are append-only'); END;
CREATE INDEX events_time ON events(time_us);
CREATE INDEX events_kind_time ON events(kind, time_us);
CREATE INDEX events_host_time ON events(host, time_us);
CREATE INDEX interventions_time ON interventions(time_us);
CREATE INDEX interventions_actor_time ON interventions(actor, time_us);
CREATE INDEX generations_cause ON generations(cause_intervention_id);
)sql";

// Version 4: the training curve, for `vigil logbook show` (the metrics
// around an event) and `vigil report`.
constexpr const char* kMigrationV4 = R"sql(
CREATE TABLE steps (
  run_id            INTEGER NOT NULL REFERENCES runs(id),
  generation_id     INTEGER NOT NULL REFERENCES generations(id),
  step              INTEGER NOT NULL,
  time_us           INTEGER NOT NULL,
  loss              REAL,
  lr                REAL,
  grad_norm         REAL,
  tokens_per_second REAL,
  step_seconds      REAL,
  PRIMARY KEY (generation_id, step)
) WITHOUT ROWID;
CREATE INDEX steps_run_time ON steps(run_id, time_us);
)sql";

Status Logbook::Migrate() {
  int version = -1;
  Stmt q(db_, "PRAGMA user_version");
  VIGIL_RETURN_IF_ERROR(q.ForEach([&](sqlite3_stmt* s) { version = sqlite3_column_int(s, 0); }));
  if (version > kLogbookSchemaVersion) {
    return Status::FailedPrecondition(path_ + ": logbook schema version " +
                                      std::to_string(version) +
                                      " is newer than this vigil understands (" +
                                      std::to_string(kLogbookSchemaVersion) + "); upgrade vigil");
  }
  if (version == 0) {
    // An empty file or someone else's database: refuse to write into a foreign schema.
    int tables = 0;
    Stmt t(db_, "SELECT count(*) FROM sqlite_master WHERE type = 'table'");
    VIGIL_RETURN_IF_ERROR(t.ForEach([&](sqlite3_stmt* s) { tables = sqlite3_column_int(s, 0); }));
    if (tables > 0) {
      return Status::InvalidArgument(path_ + ": an SQLite file that is not a vigil logbook");
    }
    VIGIL_RETURN_IF_ERROR(
        Exec(std::string("BEGIN IMMEDIATE;") + kSchemaV1 + "PRAGMA user_version = 1; COMMIT;"));
    version = 1;
  }
  if (version == 1) {
    VIGIL_RETURN_IF_ERROR(
        Exec(std::string("BEGIN IMMEDIATE;") + kMigrationV2 + "PRAGMA user_version = 2; COMMIT;"));
    version = 2;
  }
  if (version == 2) {
    VIGIL_RETURN_IF_ERROR(
        Exec(std::string("BEGIN IMMEDIATE;") + kMigrationV3 + "PRAGMA user_version = 3; COMMIT;"));
    version = 3;
  }
  if (version == 3) {
    VIGIL_RETURN_IF_ERROR(
        Exec(std::string("BEGIN IMMEDIATE;") + kMigrationV4 + "PRAGMA user_version = 4; COMMIT;"));
  }
  return Status::Ok();
}

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

namespace {

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

Status Logbook::Begin() { return Exec("BEGIN IMMEDIATE"); }

Status Logbook::Commit() { return Exec("COMMIT"); }

void Logbook::Rollback() { (void)Exec("ROLLBACK"); }

bool Logbook::InTransaction() const { return !sqlite3_get_autocommit(db_); }

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

Status Logbook::SetRunStatus(int64_t run_id, const std::string& status) {
  Stmt s(db_, "UPDATE runs SET status=? WHERE id=?");
  s.Bind(1, status).Bind(2, run_id);
  return s.Run();
}

Status Logbook::SetCheckpointState(int64_t checkpoint_id, const std::string& state, int64_t at_us,
                                   const std::string& new_path) {
  Stmt s(db_,
         "UPDATE checkpoints SET state=?, state_changed_at_us=?, path=CASE WHEN ?='' THEN path "
         "ELSE ? END WHERE id=?");
  s.Bind(1, state).Bind(2, at_us).Bind(3, new_path).Bind(4, new_path).Bind(5, checkpoint_id);
  return s.Run();
}

Result<std::vector<RunRow>> Logbook::Runs() {
  std::vector<RunRow> out;
  Stmt s(db_,
         "SELECT id, name, config_hash, workdir, started_at_us, ended_at_us, status, final_step, "
         "final_loss, params_digest, tokens_per_second FROM runs ORDER BY id");
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

Result<std::vector<RecoveryRow>> Logbook::Recoveries(int64_t run_id) {
  std::vector<RecoveryRow> out;
  // The failure time is when the fault was injected if it was, else when the rank exited.
  Stmt s(db_, R"sql(
    SELECT e.id, e.kind, e.rank, g.number,
           json_extract(e.detail, '$.detection_latency_ms'),
           (g.first_step_at_us - COALESCE(json_extract(e.detail, '$.fault_injected_at_us'),
                                          json_extract(e.detail, '$.exited_at_us'), e.time_us)) / 1000.0
      FROM generations g
      JOIN interventions i ON i.id = g.cause_intervention_id
      JOIN events e ON e.id = i.event_id
     WHERE g.run_id = ?
     ORDER BY g.number)sql");
  s.Bind(1, run_id);
  VIGIL_RETURN_IF_ERROR(s.ForEach([&](sqlite3_stmt* r) {
    RecoveryRow row;
    row.event_id = sqlite3_column_int64(r, 0);
    row.kind = Text(r, 1);
    if (auto rank = OptInt(r, 2)) row.rank = static_cast<int>(*rank);
    row.generation = sqlite3_column_int64(r, 3);
    row.detection_ms = OptReal(r, 4);
    row.recovery_ms = OptReal(r, 5);
    out.push_back(row);
  }));
  return out;
}

Result<std::vector<LogbookEntry>> Logbook::Entries(std::optional<int64_t> run_id) {
  EntryFilter f;
  f.run_id = run_id;
  return Entries(f);
}

namespace {
// `vigil logbook ls --actor KIND` walks each actor's index range on its own
// up to this many actors (SQLite allows 500 parts in one compound SELECT).
constexpr size_t kMaxActorParts = 200;
}  // namespace

Result<std::vector<std::string>> Logbook::ActorsOfKind(const std::string& kind) {
  // The distinct actors in [kind, kind;) through the actor index, one index
  // step each (a loose index scan); ';' follows ':'.
  Stmt s(db_,
         "WITH RECURSIVE a(actor) AS ("
         " SELECT min(actor) FROM interventions WHERE actor >= ?1 AND actor < ?2"
         " UNION ALL SELECT (SELECT min(actor) FROM interventions WHERE actor > a.actor AND "
         " actor < ?2) FROM a WHERE a.actor IS NOT NULL) "
         "SELECT actor FROM a WHERE actor = ?1 OR substr(actor, 1, length(?1) + 1) = ?1 || ':'");
  s.Bind(1, kind).Bind(2, kind + ";");
  std::vector<std::string> out;
  VIGIL_RETURN_IF_ERROR(s.ForEach([&](sqlite3_stmt* r) { out.push_back(Text(r, 0)); }));
  return out;
}

Result<std::vector<LogbookEntry>> Logbook::Entries(const EntryFilter& f) {
  // Built from the filters given, so that each part can use its index.
  std::vector<std::variant<int64_t, std::string>> params;
  auto param = [&](std::variant<int64_t, std::string> v) {
    params.push_back(std::move(v));
    return "?" + std::to_string(params.size());
  };
  auto in_list = [&](const std::string& column) {
    std::string sql = column + " IN (";
    for (size_t i = 0; i < f.kinds.size(); ++i) sql += (i ? "," : "") + param(f.kinds[i]);
    return sql + ")";
  };
  // An exact actor ("human:alice"), or a bare kind ("human", "auto") that
  // matches itself ("chaos") and every actor of it ("human:...").
  auto actor_matches = [&](const std::string& column) {
    if (f.actor.find(':') != std::string::npos) return column + " = " + param(f.actor);
    const std::string kind = param(f.actor);
    return "(" + column + " = " + kind + " OR substr(" + column + ", 1, length(" + kind +
           ") + 1) = " + kind + " || ':')";
  };
  auto common = [&](const std::string& table, int64_t after, std::optional<int64_t> upto) {
    std::string w = table + ".id > " + param(after);
    if (upto) w += " AND " + table + ".id <= " + param(*upto);
    if (f.run_id) w += " AND " + table + ".run_id = " + param(*f.run_id);
    if (f.since_us) w += " AND " + table + ".time_us >= " + param(*f.since_us);
    if (f.until_us) w += " AND " + table + ".time_us < " + param(*f.until_us);
    return w;
  };
  const bool want_note =
      f.kinds.empty() || std::find(f.kinds.begin(), f.kinds.end(), "note") != f.kinds.end();
  struct Part {
    std::string alias, select, where;  // select: "SELECT ... FROM table alias [JOIN ...]"
  };
  std::vector<Part> parts;
  if (f.actor.empty()) {
    std::string w =
        common("e", f.after.event, f.upto ? std::optional(f.upto->event) : std::nullopt);
    if (!f.kinds.empty()) w += " AND " + in_list("e.kind");
    if (!f.host.empty()) w += " AND e.host = " + param(f.host);
    if (f.rank) w += " AND e.rank = " + param(static_cast<int64_t>(*f.rank));
    parts.push_back(
        {"e",
         "SELECT 'event' AS type, e.id, e.run_id, e.time_us AS time_us, g.number, e.kind, e.host, "
         "e.rank, e.step, NULL, '', e.detail FROM events e LEFT JOIN generations g ON g.id = "
         "e.generation_id",
         w});
  }
  std::vector<std::string> actors;  // interventions' parts: one per actor, or one for all
  if (f.actor.empty()) {
    actors.emplace_back();
  } else if (f.actor.find(':') != std::string::npos) {
    actors.push_back(f.actor);
  } else {
    auto of_kind = ActorsOfKind(f.actor);
    if (!of_kind.ok()) return of_kind.status();
    actors = std::move(of_kind.value());
    // Past SQLite's compound-select limit, one part with every such actor (sorted, not walked).
    if (actors.size() > kMaxActorParts) actors = {""};
  }
  for (const std::string& actor : actors) {
    std::string w = common("i", f.after.intervention,
                           f.upto ? std::optional(f.upto->intervention) : std::nullopt);
    if (!f.kinds.empty()) w += " AND " + in_list("i.action");
    if (!f.host.empty()) w += " AND i.host = " + param(f.host);
    if (f.rank) w += " AND i.rank = " + param(static_cast<int64_t>(*f.rank));
    if (!actor.empty()) {
      w += " AND i.actor = " + param(actor);
    } else if (!f.actor.empty()) {
      w += " AND " + actor_matches("i.actor");
    }
    parts.push_back(
        {"i",
         "SELECT 'intervention', i.id, i.run_id, i.time_us, NULL, i.action, i.host, i.rank, "
         "NULL, i.event_id, i.actor, json_object('params', json(i.params), 'outcome', "
         "i.outcome) FROM interventions i",
         w});
  }
  if (want_note && f.host.empty() && !f.rank) {
    std::string w = common("n", f.after.note, f.upto ? std::optional(f.upto->note) : std::nullopt);
    // A note's actor is "human:<author>".
    if (!f.actor.empty()) w += " AND " + actor_matches("('human:' || n.author)");
    parts.push_back({"n",
                     "SELECT 'note', n.id, n.run_id, n.time_us, NULL, 'note', '', NULL, NULL, "
                     "NULL, 'human:' || n.author, json_object('text', n.text) FROM notes n",
                     w});
  }
  // With `last`, each part takes only its newest `last` rows before the
  // merge: walking its time index (or the filter's: (actor, time_us) for one
  // actor), the newest 50 of ten million cost a few index steps, not a sort
  // of everything.
  std::string sql;
  for (const auto& p : parts) {
    const std::string& a = p.alias;
    std::string part = p.select + " WHERE " + p.where;
    if (f.last) {
      part = "SELECT * FROM (" + part + " ORDER BY " + a + ".time_us DESC, " + a +
             ".id DESC LIMIT " + std::to_string(f.last) + ")";
    }
    sql += (sql.empty() ? "" : " UNION ALL ") + part;
  }
  // The newest `last`, read newest first, then put back in order.
  sql += f.last ? " ORDER BY 4 DESC, 1 DESC, 2 DESC LIMIT " + std::to_string(f.last)
                : " ORDER BY 4, 1, 2";
  Stmt s(db_, sql.c_str());
  for (size_t i = 0; i < params.size(); ++i) {
    if (const auto* v = std::get_if<int64_t>(&params[i]))
      s.Bind(static_cast<int>(i + 1), *v);
    else
      s.Bind(static_cast<int>(i + 1), std::get<std::string>(params[i]));
  }
  std::vector<LogbookEntry> out;
  VIGIL_RETURN_IF_ERROR(s.ForEach([&](sqlite3_stmt* r) {
    LogbookEntry e;
    e.type = Text(r, 0);
    e.id = sqlite3_column_int64(r, 1);
    e.run_id = sqlite3_column_int64(r, 2);
    e.time_us = sqlite3_column_int64(r, 3);
    e.generation = OptInt(r, 4);
    e.what = Text(r, 5);
    e.host = Text(r, 6);
    if (auto rank = OptInt(r, 7)) e.rank = static_cast<int>(*rank);
    e.step = OptInt(r, 8);
    e.event_id = OptInt(r, 9);
    e.actor = Text(r, 10);
    e.detail_json = Text(r, 11);
    out.push_back(std::move(e));
  }));
  if (f.last) std::reverse(out.begin(), out.end());
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

Result<RunStats> Logbook::Stats(int64_t run_id, int64_t now_us) {
  auto found = Run(run_id);
  if (!found.ok()) return found.status();
  const RunRow* run = &found.value();
  auto gens = Generations(run_id);
  if (!gens.ok()) return gens.status();
  auto ckpts = Checkpoints(run_id);
  if (!ckpts.ok()) return ckpts.status();
  RunStats st;
  st.run_id = run_id;
  const int64_t end = run->ended_at_us.value_or(now_us);
  st.wall_seconds = static_cast<double>(end - run->started_at_us) / 1e6;
  st.generations = static_cast<int>(gens->size());
  // Productive time: logbook/goodput_rule.h.
  std::map<std::string, const CheckpointRow*> by_path;
  for (const auto& c : ckpts.value()) by_path.emplace(c.path, &c);
  double trained = 0;  // every generation's training, kept or not (for MTBF)
  const auto& g = gens.value();
  for (size_t i = 0; i < g.size(); ++i) {
    const int64_t to = g[i].ended_at_us.value_or(end);
    if (g[i].first_step_at_us)
      trained += static_cast<double>(std::max<int64_t>(0, to - *g[i].first_step_at_us)) / 1e6;
    const bool superseded = i + 1 < g.size();
    std::optional<int64_t> kept;
    if (superseded) {
      const auto it = by_path.find(g[i + 1].resumed_from_path);
      if (it != by_path.end() && it->second->generation_id == g[i].id)
        kept = it->second->committed_at_us;
    }
    st.productive_seconds += ProductiveSeconds(g[i].first_step_at_us, to, superseded, kept);
  }
  st.lost_seconds = std::max(0.0, st.wall_seconds - st.productive_seconds);
  st.goodput = GoodputRatio(st.productive_seconds, st.wall_seconds);
  // Restarts: generations caused by an intervention that answered an event.
  Stmt restarts(db_, R"sql(
    SELECT count(*) FROM generations g JOIN interventions i ON i.id = g.cause_intervention_id
     WHERE g.run_id = ? AND i.event_id IS NOT NULL)sql");
  restarts.Bind(1, run_id);
  VIGIL_RETURN_IF_ERROR(
      restarts.ForEach([&](sqlite3_stmt* r) { st.restarts = sqlite3_column_int(r, 0); }));
  if (st.restarts > 0) st.mtbf_seconds = trained / st.restarts;
  auto count_by = [&](const char* sql, std::vector<std::pair<std::string, int64_t>>* out) {
    Stmt q(db_, sql);
    q.Bind(1, run_id);
    return q.ForEach(
        [&](sqlite3_stmt* r) { out->emplace_back(Text(r, 0), sqlite3_column_int64(r, 1)); });
  };
  VIGIL_RETURN_IF_ERROR(
      count_by("SELECT kind, count(*) FROM events WHERE run_id=? GROUP BY kind ORDER BY 2 DESC, 1",
               &st.failures_by_kind));
  VIGIL_RETURN_IF_ERROR(
      count_by("SELECT host, count(*) FROM events WHERE run_id=? AND host != '' GROUP BY host "
               "ORDER BY 2 DESC, 1",
               &st.failures_by_host));
  VIGIL_RETURN_IF_ERROR(
      count_by("SELECT action, count(*) FROM interventions WHERE run_id=? GROUP BY action ORDER BY "
               "2 DESC, 1",
               &st.actions));
  return st;
}

}  // namespace vigil
