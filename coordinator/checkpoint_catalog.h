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
// The event loop's, but for the deletions' thread (which writes only
// through the journal and posts back).
#pragma once

#include <utility>

#include <boost/asio.hpp>
#include <functional>
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

struct CheckpointChoice {
  std::optional<CheckpointRow> checkpoint;  // none: a fresh start
  double lr_scale = 1.0;                    // the checkpoint's
  std::vector<CheckpointRow> rolled_back;   // newer ones the want rolls back over
  bool pause = false;                       // none usable is left
  std::string why;
};

class CheckpointCatalog {
 public:
  CheckpointCatalog(boost::asio::io_context& io, Clock* clock, Journal* journal,
                    const CheckpointSpec& spec, std::string checkpoint_dir,
                    checkpoint::Storage* storage, CheckpointProbe probe);
  ~CheckpointCatalog() { FinishFileWork(); }
  // Waits for the deletions under way.
  void FinishFileWork() { files_.join(); }

  const std::vector<CheckpointRow>& rows() const { return rows_; }
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

  // `on_corrupt(path, reason)` hears of each candidate the probe refuses
  // (already marked corrupt when it is called).
  CheckpointChoice Choose(
      const CheckpointWant& want,
      const std::function<void(const std::string&, const std::string&)>& on_corrupt);
  // Moves `rows` aside as rolled back, from the launch of `next_generation`.
  void RollBack(const std::vector<CheckpointRow>& rows, int64_t next_generation);
  // What retention deletes now (marked deleting: never chosen again),
  // never one of `protect` (the checkpoint resumed from, the one a restart
  // under way resumes from).
  std::vector<CheckpointRow> RetentionVictims(const std::set<std::string>& protect);
  // Deletes `row` once everything journaled so far is committed.
  void Delete(const CheckpointRow& row);

 private:
  void SetState(int64_t id, const std::string& state, const std::string& new_path = "");
  void Remember(int64_t id, const std::string& state, const std::string& new_path = "");

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
  // Deletions, off the event loop; last, so destroyed first.
  boost::asio::thread_pool files_{1};
};

}  // namespace vigil::coordinator
