// The logbook's schema: version 1's tables, indices and triggers, each
// migration since, and Logbook::Migrate, which brings a file forward to
// kLogbookSchemaVersion (and refuses one newer, or someone else's database).
#include "logbook/logbook.h"

#include <string>

#include "logbook/sqlite_statement.h"

namespace vigil {
namespace {

using logbook_detail::Stmt;

// Schema version 1. Times are microseconds since the Unix epoch (UTC).
// runs.status's DEFAULT 'running' is job_state::kRunning, and version 2's
// checkpoints.state DEFAULT 'committed' checkpoint_state::kCommitted
// (common/vocabulary.h), spelled in the SQL: a migration's text never changes.
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

// Version 5: every start of a vigild takes a coordinator epoch, never
// reused (AUTOINCREMENT): the fencing token its orders carry.
constexpr const char* kMigrationV5 = R"sql(
CREATE TABLE coordinator_epochs (
  epoch         INTEGER PRIMARY KEY AUTOINCREMENT,
  run_id        INTEGER NOT NULL REFERENCES runs(id),
  started_at_us INTEGER NOT NULL,
  pid           INTEGER NOT NULL,
  host          TEXT NOT NULL
);
CREATE INDEX coordinator_epochs_run ON coordinator_epochs(run_id, epoch);
)sql";

// Version 6: the Slurm job a run ran in (`launcher: slurm`); its hosts are
// named by their Slurm node names, and each drain is an intervention.
constexpr const char* kMigrationV6 = R"sql(
ALTER TABLE runs ADD COLUMN slurm_job_id TEXT NOT NULL DEFAULT '';
)sql";

}  // namespace

Status Logbook::Migrate() {
  // One writer at a time: two processes opening an old file at once (two
  // vigilds on one work directory, vigild and the CLI) must not both
  // migrate it, so the version is read inside the transaction.
  VIGIL_RETURN_IF_ERROR(Begin());
  Status st = MigrateLocked();
  if (!st.ok()) {
    Rollback();
    return st;
  }
  return Commit();
}

Status Logbook::MigrateLocked() {
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
  }
  // Each version's schema change, in order, from the file's on.
  static const char* const kSteps[] = {kSchemaV1,    kMigrationV2, kMigrationV3,
                                       kMigrationV4, kMigrationV5, kMigrationV6};
  static_assert(sizeof(kSteps) / sizeof(kSteps[0]) == kLogbookSchemaVersion);
  for (int v = version; v < kLogbookSchemaVersion; ++v) {
    VIGIL_RETURN_IF_ERROR(
        Exec(std::string(kSteps[v]) + "PRAGMA user_version = " + std::to_string(v + 1) + ";"));
  }
  return Status::Ok();
}

}  // namespace vigil
