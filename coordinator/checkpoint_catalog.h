// The run's checkpoints as vigild knows them: one row per committed save,
// newest first (by step, then by id), each with its state
// (common/vocabulary.h's checkpoint_state), kept in memory and in the
// logbook through the journal.
//
// Choosing: Choose() picks the checkpoint the next generation resumes from,
// once per recovery (the plan records it and the launch uses that same
// one). Only a committed checkpoint that is not known corrupt is a
// candidate; with `before_step` (a numerical anomaly's step) only older ones
// (the newer may hold the bad update: rolled back over), and `rollback` N
// skips N more. Each candidate is probed first (the manifest and every
// shard's size: a cheap check before a whole world is launched at it); one
// that fails is reported through `on_corrupt` and the next older one is
// tried: a fallback. Past checkpoint.max_fallbacks fallbacks in one
// recovery, or with none left, the choice is to pause for a person. A run
// that never committed one starts fresh; a rollback past every checkpoint
// starts from scratch (the one state known good).
//
// The probes read files, which on a sick parallel file system can take
// seconds: they run on an executor of their own (not behind retention's
// deletions), never on the event loop, one candidate at a time; the choice
// comes back to the loop through `done`. One choice is under way at a time.
// What it may still resume from or roll back over is never a victim of
// retention meanwhile. Past checkpoint.choose_timeout_ms the choice is to
// pause (a hung file system); a late probe's answer is ignored, as is every
// answer once the choice is cancelled (the job ended).
//
// Rolling back: the checkpoints rolled back over are never chosen again and
// are moved aside (renamed, not deleted: a person may want to look), once
// the intervention that decided it is committed.
//
// Retention: after each commit, what checkpoint.keep_last and keep_every do
// not keep (never the one being resumed from) is deleted through the
// Storage seam on a thread of its own (a sharded checkpoint on a parallel
// file system can take seconds to remove), once its delete_checkpoint
// intervention is committed; the outcome comes back to the event loop.
//
// The event loop's, but for the file work (probes, deletions), which writes
// only through the journal and posts back.
#pragma once

#include <utility>

#include <boost/asio.hpp>
#include <functional>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "checkpoint/storage.h"
#include "common/job_spec.h"
#include "common/status.h"
#include "common/util.h"
#include "coordinator/clock.h"
#include "coordinator/journal.h"
#include "logbook/logbook.h"

namespace vigil::coordinator {

// Checks a committed checkpoint before a launch: its lr_scale, or why it is unusable.
using CheckpointProbe = std::function<Result<double>(const std::string& path)>;
// The real probe: opens the manifest and checks every shard's size.
CheckpointProbe ManifestProbe(checkpoint::Storage* storage);

struct CheckpointWant {
  int rollback = 0;                    // checkpoints older than the newest usable one
  std::optional<int64_t> before_step;  // only checkpoints older than this step
};

// Hears of each candidate the probe refuses (already marked corrupt).
using OnCorrupt = std::function<void(const std::string& path, const std::string& reason)>;

struct CheckpointChoice {
  std::optional<CheckpointRow> checkpoint;  // none: a fresh start
  double lr_scale = 1.0;                    // the checkpoint's
  std::vector<CheckpointRow> rolled_back;   // newer ones the want rolls back over
  bool pause = false;                       // none usable is left
  std::string why;
};

class CheckpointCatalog {
 public:
  // `file_work` runs the probes and deletions (empty: a thread of the
  // catalog's own for each; the scenario tests pass their event loop's, to
  // run it deterministically).
  CheckpointCatalog(boost::asio::io_context& io, Clock* clock, Journal* journal,
                    const CheckpointSpec& spec, std::string checkpoint_dir,
                    checkpoint::Storage* storage, CheckpointProbe probe,
                    boost::asio::any_io_executor file_work = {});
  ~CheckpointCatalog();
  // Waits for the file work under way (on the catalog's own threads).
  void FinishFileWork() {
    probe_pool_.join();
    delete_pool_.join();
  }

  const std::vector<CheckpointRow>& rows() const { return rows_; }
  // The rows a vigild that took the run over read from the logbook (each
  // with its state; a corrupt one is never chosen again).
  void Restore(std::vector<CheckpointRow> rows);
  // A save committed: one `checkpoints` row. A step saved again (after a
  // fallback) replaces a damaged copy at the same path.
  CheckpointRow Add(CheckpointRow c);
  // The newest committed one not known corrupt ("" if none).
  std::string NewestUsable() const;

  // Marks `path` corrupt, never to be chosen again: one more fallback.
  // False if it was known corrupt already.
  bool MarkCorrupt(const std::string& path);
  int fallbacks() const { return fallbacks_; }
  // A generation restored (or a person resumed): fallbacks count afresh.
  void ResetFallbacks() { fallbacks_ = 0; }

  // Chooses for `want`; `done` hears the choice, on the event loop. An
  // error if a choice is under way already.
  Status Choose(const CheckpointWant& want, OnCorrupt on_corrupt,
                std::function<void(CheckpointChoice)> done);
  bool choosing() const { return walk_ != nullptr; }
  // Drops the choice under way: `done` is never called, answers are ignored.
  void CancelChoice();
  // The paths the choice under way may resume from or roll back over.
  std::set<std::string> InChoice() const;
  // Moves `rows` aside as rolled back, from the launch of `next_generation`.
  void RollBack(const std::vector<CheckpointRow>& rows, int64_t next_generation);
  // What retention deletes now (marked deleting: never chosen again),
  // never one of `protect` (the checkpoint resumed from, the one a restart
  // under way resumes from) nor what the choice under way may use.
  std::vector<CheckpointRow> RetentionVictims(std::set<std::string> protect);
  // Deletes `row` once everything journaled so far is committed.
  void Delete(const CheckpointRow& row);

 private:
  void SetState(int64_t id, const std::string& state, const std::string& new_path = "");
  void Remember(int64_t id, const std::string& state, const std::string& new_path = "");
  const CheckpointRow* Find(int64_t id) const;
  bool Usable(const CheckpointRow& row) const;
  // The choice's walk over the candidates, newest first.
  struct Walk;
  void Continue();
  void OnProbed(uint64_t walk, const Result<double>& lr_scale);
  void Finish();
  void Done(CheckpointChoice c);

  boost::asio::io_context& io_;
  Clock* clock_;
  Journal* journal_;
  const CheckpointSpec& spec_;
  std::string dir_;
  checkpoint::Storage* storage_;
  CheckpointProbe probe_;
  std::shared_ptr<spdlog::logger> log_;
  std::vector<CheckpointRow> rows_;
  std::set<std::string> bad_;
  int fallbacks_ = 0;
  std::unique_ptr<Walk> walk_;  // the choice under way
  uint64_t walks_ = 0;          // choices begun (each walk's id)
  std::unique_ptr<Timer> choose_timer_;
  // File work, off the event loop; last, so destroyed first.
  boost::asio::thread_pool probe_pool_{1}, delete_pool_{1};
  boost::asio::any_io_executor probes_, deletions_;
};

}  // namespace vigil::coordinator
