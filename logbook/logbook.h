// The logbook: one SQLite file per run directory that records every run,
// generation, detection (event), action (intervention) and committed
// checkpoint. Events and interventions are append-only (triggers refuse
// UPDATE and DELETE). The schema version lives in PRAGMA user_version and is
// migrated forward on open; a file newer than this binary is refused.
//
// Thread-safety: a Logbook is used by one thread. Readers in other processes
// (the CLI) may open the same file at any time (WAL mode).
#pragma once

#include <sqlite3.h>

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/status.h"
#include "common/vocabulary.h"

namespace vigil {

inline constexpr int kLogbookSchemaVersion = 6;

struct EventRow {
  int64_t id = 0;
  int64_t run_id = 0;
  std::optional<int64_t> generation_id;
  int64_t time_us = 0;
  std::string kind;  // common/vocabulary.h's kind::*
  std::string host;
  std::optional<int> rank;
  std::optional<int64_t> step;
  std::string detail_json = "{}";
};

struct InterventionRow {
  int64_t id = 0;
  int64_t run_id = 0;
  std::optional<int64_t> event_id;
  int64_t time_us = 0;
  std::string action;  // restart_from_latest, fail_job, ...
  std::string actor;   // auto:<rule> or human:<name>
  std::string params_json = "{}";
  std::string outcome;
};

struct GenerationRow {
  int64_t id = 0;
  int64_t run_id = 0;
  int64_t number = 0;
  int world_size = 0;
  std::string hosts;
  std::optional<int64_t> resumed_from_step;
  std::string resumed_from_path;
  std::optional<int64_t> cause_intervention_id;
  int64_t started_at_us = 0;
  std::optional<int64_t> first_step_at_us;
  std::optional<int64_t> ended_at_us;
  std::string end_reason;
};

struct CheckpointRow {
  int64_t id = 0;
  int64_t run_id = 0;
  std::optional<int64_t> generation_id;
  int64_t step = 0;
  std::string path;
  int64_t bytes = 0;
  int64_t committed_at_us = 0;
  // committed | corrupt | deleted | delete_failed | rolled_back
  std::string state = checkpoint_state::kCommitted;
};

// One training step as rank 0 reported it (the `steps` table: every step,
// or every stride-th of a long run, and each generation's first).
struct StepRow {
  int64_t run_id = 0;
  int64_t generation_id = 0;
  int64_t step = 0;
  int64_t time_us = 0;
  std::optional<double> loss, lr, grad_norm, tokens_per_second, step_seconds;  // NaN: none
};

struct RunRow {
  int64_t id = 0;
  std::string name;
  std::string config_hash;
  std::string workdir;
  int64_t started_at_us = 0;
  std::optional<int64_t> ended_at_us;
  std::string status;  // common/vocabulary.h's job_state::*
  std::optional<int64_t> final_step;
  std::optional<double> final_loss;
  std::string params_digest;
  std::optional<double> tokens_per_second;
  std::string slurm_job_id;  // the Slurm job the run ran in (empty: not under Slurm)
};

// One start of a vigild on a run (the `coordinator_epochs` table). Epochs
// only grow, over every run of the file: a newer vigild's orders fence out
// an older one's.
struct EpochRow {
  int64_t epoch = 0;
  int64_t run_id = 0;
  int64_t started_at_us = 0;
  int64_t pid = 0;
  std::string host;
};

// A person's entry in the logbook (`vigil logbook note`).
struct NoteRow {
  int64_t id = 0;
  int64_t run_id = 0;
  int64_t time_us = 0;
  std::string author;
  std::string text;
};

// One line of `vigil logbook ls`: an event, an intervention or a note.
struct LogbookEntry {
  std::string type;  // "event" | "intervention" | "note"
  int64_t id = 0;
  int64_t run_id = 0;
  int64_t time_us = 0;
  std::optional<int64_t> generation;  // generation number, not row id
  std::string what;                   // event kind or intervention action
  std::string host;
  std::optional<int> rank;
  std::optional<int64_t> step;
  std::optional<int64_t> event_id;  // interventions: the event they answer
  std::string actor;                // interventions: who; notes: "human:<author>"
  std::string detail_json;          // notes: {"text": ...}
};

// The newest row id of each append-only table (a follower's cursor).
// The largest id of each append-only table: where a follower (`ls -f`)
// resumes, and where the writer numbers on from.
struct LogbookIds {
  int64_t event = 0, intervention = 0, note = 0, generation = 0, checkpoint = 0;
};

// What `vigil logbook ls` asks for; an unset field does not filter.
// Interventions match --host and --rank through the event they answer;
// notes have neither, and match --actor as "human:<author>".
struct EntryFilter {
  std::optional<int64_t> run_id;
  std::optional<int64_t> since_us, until_us;  // since <= time < until
  std::vector<std::string> kinds;             // event kinds, intervention actions, or "note"
  std::string host;
  std::optional<int> rank;
  // "human:alice" exactly; a bare "human" or "auto" any actor of that kind
  // (and a bare actor such as "chaos" itself).
  std::string actor;
  size_t last = 0;  // only the newest `last` entries (0: all)
  // A follower's window: rows with after < id <= upto, per table.
  LogbookIds after;
  std::optional<LogbookIds> upto;
};

// `vigil logbook stats`: what a run cost and why.
struct RunStats {
  int64_t run_id = 0;
  double wall_seconds = 0;        // start to end (or to now while it runs)
  double productive_seconds = 0;  // generations' first step to their end: training
  double goodput = 0;             // productive / wall
  int generations = 0, restarts = 0;
  std::optional<double> mtbf_seconds;  // training time per failure that stopped a generation
  double lost_seconds = 0;             // wall - productive
  std::vector<std::pair<std::string, int64_t>> failures_by_kind;  // most first
  std::vector<std::pair<std::string, int64_t>> failures_by_host;  // most first
  std::vector<std::pair<std::string, int64_t>> actions;           // interventions by action
};

// One recovery: a failure event, the restart it caused, and how long the job
// took to detect it and to train again.
struct RecoveryRow {
  int64_t event_id = 0;
  std::string kind;
  std::optional<int> rank;
  int64_t generation = 0;              // the generation that resumed
  std::optional<double> detection_ms;  // injected fault -> detection event
  std::optional<double> recovery_ms;   // failure -> first step of `generation`
};

// One logbook file: its schema (logbook_schema.cc), its row writes
// (logbook.cc), its reads (logbook_reads.cc, logbook_entries.cc) and its
// statistics (logbook_stats.cc). vigild writes through LogbookWriter.
class Logbook {
 public:
  ~Logbook();
  Logbook(const Logbook&) = delete;
  Logbook& operator=(const Logbook&) = delete;

  // Opens (creating if `create`) and migrates. A file that is not SQLite, or
  // a schema newer than kLogbookSchemaVersion, is an error naming the path.
  static Result<std::unique_ptr<Logbook>> Open(const std::string& path, bool create);

  Result<int64_t> CreateRun(const std::string& name, const std::string& spec_yaml,
                            const std::string& config_hash, const std::string& workdir,
                            int64_t started_at_us);
  // This vigild's start on `run_id`: a new epoch, larger than any before
  // in this file (two vigilds starting at once get two).
  Result<int64_t> BeginEpoch(int64_t run_id, int64_t started_at_us, int64_t pid,
                             const std::string& host);
  Status FinishRun(int64_t run_id, const std::string& status, int64_t ended_at_us,
                   std::optional<int64_t> final_step, std::optional<double> final_loss,
                   const std::string& params_digest, std::optional<double> tokens_per_second);

  // Inserts take the row's id when it is set (> 0), else the next one.
  Result<int64_t> StartGeneration(const GenerationRow& g);
  Status MarkGenerationFirstStep(int64_t generation_id, int64_t at_us);
  Status EndGeneration(int64_t generation_id, int64_t ended_at_us, const std::string& reason);

  Result<int64_t> AddEvent(const EventRow& e);
  // Many events in one transaction (one sync): all or none. Their ids, in order.
  Result<std::vector<int64_t>> AddEvents(const std::vector<EventRow>& events);
  Result<int64_t> AddIntervention(const InterventionRow& i);
  Result<std::vector<int64_t>> AddInterventions(const std::vector<InterventionRow>& rows);
  Result<int64_t> AddCheckpoint(const CheckpointRow& c);
  Result<int64_t> AddNote(const NoteRow& n);
  // committed -> corrupt (failed verification), deleted (retention) or
  // rolled_back (a playbook resumed from an older one; moved to new_path).
  Status SetCheckpointState(int64_t checkpoint_id, const std::string& state, int64_t at_us,
                            const std::string& new_path = "");
  Status AddSteps(const std::vector<StepRow>& steps);
  // A run's steps in time order: [since, until), at most `limit` (0: all).
  Result<std::vector<StepRow>> Steps(int64_t run_id, int64_t since_us, int64_t until_us,
                                     size_t limit = 0);
  // The `n` steps of a run at or before `time_us`, then the `n` after it, in time order.
  Result<std::vector<StepRow>> StepsAround(int64_t run_id, int64_t time_us, size_t n);

  // One write transaction around several calls (BEGIN IMMEDIATE ... COMMIT).
  Status Begin();
  Status Commit();
  void Rollback();
  bool InTransaction() const;
  Result<LogbookIds> MaxIds();

  // A run's status while it goes on (job_state::kRunning | kPaused).
  Status SetRunStatus(int64_t run_id, const std::string& status);
  // The Slurm job `run_id` runs in (its hosts are named by their Slurm node names).
  Status SetRunSlurmJob(int64_t run_id, const std::string& slurm_job_id);

  Result<std::vector<RunRow>> Runs();
  Result<std::vector<EpochRow>> Epochs(int64_t run_id);  // oldest first
  // The newest coordinator epoch of the file, of any run (0: none).
  Result<int64_t> NewestEpoch();
  Result<std::vector<GenerationRow>> Generations(int64_t run_id);
  Result<std::vector<CheckpointRow>> Checkpoints(int64_t run_id);  // newest step first
  Result<std::vector<EventRow>> Events(int64_t run_id);
  Result<std::vector<InterventionRow>> Interventions(int64_t run_id);
  Result<std::vector<InterventionRow>> InterventionsOf(int64_t event_id);  // what answered it
  Result<std::vector<RecoveryRow>> Recoveries(int64_t run_id);
  // Events, interventions and notes of one run (or all runs if run_id is empty), by time.
  Result<std::vector<LogbookEntry>> Entries(std::optional<int64_t> run_id);
  Result<std::vector<LogbookEntry>> Entries(const EntryFilter& filter);
  Result<std::optional<EventRow>> Event(int64_t event_id);
  Result<std::vector<NoteRow>> Notes(int64_t run_id);
  Result<RunRow> Run(int64_t run_id);  // NotFound when it is not in the file
  Result<RunStats> Stats(int64_t run_id, int64_t now_us);

  const std::string& path() const { return path_; }

 private:
  Logbook(sqlite3* db, std::string path) : db_(db), path_(std::move(path)) {}
  // A statement kept prepared for the connection's life (the inserts, run
  // once per row); nullptr if it does not prepare. Keyed by the literal.
  sqlite3_stmt* Statement(const char* sql);
  // The actors of a kind ("human": "human" itself and every "human:<name>").
  Result<std::vector<std::string>> ActorsOfKind(const std::string& kind);
  Status Exec(const std::string& sql);
  Result<std::vector<InterventionRow>> InterventionsWhere(const char* column, int64_t value);
  Result<std::vector<EventRow>> EventsWhere(const char* column, int64_t value);
  Status Migrate();
  Status MigrateLocked();  // inside Migrate's transaction
  sqlite3* db_;
  std::string path_;
  std::map<const char*, sqlite3_stmt*> statements_;
};

}  // namespace vigil
