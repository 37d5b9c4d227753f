// Writes vigild's logbook on a thread of its own, so that a slow disk (an
// fsync per commit: the logbook is synchronous = FULL) never stalls the event
// loop that detects failures.
//
// Every write is queued and returns at once; rows get their ids when they
// are queued (numbered on from the file's largest), so a caller links an
// intervention to its event, or a checkpoint to its generation, without
// waiting. The thread commits whatever has queued up in one transaction, in
// order, and retries a batch whose commit failed (a full disk) until it
// succeeds: nothing queued is dropped.
//
// Write-ahead: AfterCommit(fn) runs fn once every write queued before it is
// committed. vigild sends its orders to the agents that way (a generation
// killed, relaunched, a rank signalled), so whatever it does is in the
// logbook first, and a vigild killed at any moment leaves a logbook that
// accounts for everything it did.
//
// Fencing: a writer fenced at its vigild's coordinator epoch checks, inside
// every transaction, that no newer epoch exists. Once one does (a newer
// vigild took the run over while this one was stopped or cut off), it
// writes nothing more, ever: the batch is rolled back, its callbacks (the
// orders waiting on it) never run, and `on_fenced` hears of it once.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "logbook/logbook.h"

namespace vigil {

class LogbookWriter {
 public:
  // Opens the logbook at `path` (it exists: vigild created the run) with a
  // connection of its own. `on_error` hears of failed writes and commits
  // (from the writer thread).
  static Result<std::unique_ptr<LogbookWriter>> Open(
      const std::string& path, std::function<void(const Status&)> on_error = nullptr);
  // Commits everything queued, then stops the thread.
  ~LogbookWriter();
  LogbookWriter(const LogbookWriter&) = delete;
  LogbookWriter& operator=(const LogbookWriter&) = delete;

  // The row's id, at once; the row is committed in the order of the calls.
  int64_t AddEvent(EventRow e);
  int64_t AddIntervention(InterventionRow i);
  int64_t StartGeneration(GenerationRow g);
  int64_t AddCheckpoint(CheckpointRow c);
  void AddStep(const StepRow& step);
  void MarkGenerationFirstStep(int64_t generation_id, int64_t at_us);
  void EndGeneration(int64_t generation_id, int64_t ended_at_us, const std::string& reason);
  void SetCheckpointState(int64_t checkpoint_id, const std::string& state, int64_t at_us,
                          const std::string& new_path = "");
  void SetRunStatus(int64_t run_id, const std::string& status);
  void FinishRun(int64_t run_id, const std::string& status, int64_t ended_at_us,
                 std::optional<int64_t> final_step, std::optional<double> final_loss,
                 const std::string& params_digest, std::optional<double> tokens_per_second);

  // `fn` runs on the writer thread once every write queued before it is
  // committed; callbacks run in the order they were queued.
  void AfterCommit(std::function<void()> fn);
  // From now on, commits only while `epoch` is the newest coordinator
  // epoch of the file; `on_fenced` (writer thread) hears of the newer one.
  void Fence(int64_t epoch, std::function<void(int64_t newer)> on_fenced);
  bool fenced() const { return fenced_.load(); }
  // Waits until everything queued so far is committed (or dropped, fenced).
  void Flush();
  // True when every write queued so far is committed and no callback waits.
  bool Idle() const;
  // Transactions committed so far (each holds every write queued meanwhile).
  uint64_t commits() const { return commits_.load(); }

 private:
  using Op = std::function<Status(Logbook&)>;
  struct Item {
    Op op;                       // a write, or
    std::function<void()> then;  // a callback
  };
  LogbookWriter(std::unique_ptr<Logbook> db, LogbookIds ids,
                std::function<void(const Status&)> on_error);
  void Queue(Item item);
  void Run();

  std::unique_ptr<Logbook> db_;
  std::function<void(const Status&)> on_error_;
  // Ids handed out so far; only the caller's thread numbers rows.
  LogbookIds ids_;
  mutable std::mutex mu_;
  std::condition_variable wake_, drained_;
  std::deque<Item> queue_;
  uint64_t queued_ = 0, done_ = 0;  // items queued, items committed (or run)
  bool stop_ = false;
  int64_t fence_epoch_ = 0;  // 0: not fenced (guarded by mu_)
  std::function<void(int64_t)> on_fenced_;
  std::atomic<bool> fenced_{false};
  std::atomic<uint64_t> commits_{0};
  std::thread thread_;
};

}  // namespace vigil
