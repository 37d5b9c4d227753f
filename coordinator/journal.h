// The journal: the one writer of what vigild detects and does. Events,
// interventions, generations, checkpoints, the training curve and the run's
// status all go through it, and nothing else in vigild writes a logbook row.
//
// Every write returns at once with the row's id. LogbookJournal queues the
// rows on the logbook's writer thread (logbook_writer.h), which commits them
// in order; MemoryJournal is its twin for tests, committing each row the
// moment it is written and keeping every row for the test to read.
//
// AfterCommit(fn) runs fn once every write before it is committed: the
// write-ahead rule (a deletion, a rename, an order to an agent happens only
// after the decision to do it is in the logbook). LogbookJournal runs fn on
// the writer's thread, MemoryJournal at once on the caller's.
//
// Thread-safe: retention's file thread records its deletions through it.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "logbook/logbook.h"
#include "logbook/logbook_writer.h"

namespace vigil::coordinator {

class Journal {
 public:
  virtual ~Journal() = default;
  virtual int64_t AddEvent(EventRow e) = 0;
  virtual int64_t AddIntervention(InterventionRow i) = 0;
  virtual int64_t StartGeneration(GenerationRow g) = 0;
  virtual void MarkGenerationFirstStep(int64_t generation_id, int64_t at_us) = 0;
  virtual void EndGeneration(int64_t generation_id, int64_t ended_at_us,
                             const std::string& reason) = 0;
  virtual void AddStep(const StepRow& step) = 0;
  virtual int64_t AddCheckpoint(CheckpointRow c) = 0;
  virtual void SetCheckpointState(int64_t checkpoint_id, const std::string& state, int64_t at_us,
                                  const std::string& new_path = "") = 0;
  virtual void SetRunStatus(int64_t run_id, const std::string& status) = 0;
  virtual void FinishRun(int64_t run_id, const std::string& status, int64_t ended_at_us,
                         std::optional<int64_t> final_step, std::optional<double> final_loss,
                         const std::string& params_digest,
                         std::optional<double> tokens_per_second) = 0;
  virtual void AfterCommit(std::function<void()> fn) = 0;
};

class LogbookJournal : public Journal {
 public:
  explicit LogbookJournal(LogbookWriter* writer) : w_(writer) {}
  int64_t AddEvent(EventRow e) override { return w_->AddEvent(std::move(e)); }
  int64_t AddIntervention(InterventionRow i) override { return w_->AddIntervention(std::move(i)); }
  int64_t StartGeneration(GenerationRow g) override { return w_->StartGeneration(std::move(g)); }
  void MarkGenerationFirstStep(int64_t id, int64_t at_us) override {
    w_->MarkGenerationFirstStep(id, at_us);
  }
  void EndGeneration(int64_t id, int64_t ended_at_us, const std::string& reason) override {
    w_->EndGeneration(id, ended_at_us, reason);
  }
  void AddStep(const StepRow& step) override { w_->AddStep(step); }
  int64_t AddCheckpoint(CheckpointRow c) override { return w_->AddCheckpoint(std::move(c)); }
  void SetCheckpointState(int64_t id, const std::string& state, int64_t at_us,
                          const std::string& new_path) override {
    w_->SetCheckpointState(id, state, at_us, new_path);
  }
  void SetRunStatus(int64_t run_id, const std::string& status) override {
    w_->SetRunStatus(run_id, status);
  }
  void FinishRun(int64_t run_id, const std::string& status, int64_t ended_at_us,
                 std::optional<int64_t> final_step, std::optional<double> final_loss,
                 const std::string& params_digest,
                 std::optional<double> tokens_per_second) override {
    w_->FinishRun(run_id, status, ended_at_us, final_step, final_loss, params_digest,
                  tokens_per_second);
  }
  void AfterCommit(std::function<void()> fn) override { w_->AfterCommit(std::move(fn)); }

 private:
  LogbookWriter* w_;
};

class MemoryJournal : public Journal {
 public:
  int64_t AddEvent(EventRow e) override;
  int64_t AddIntervention(InterventionRow i) override;
  int64_t StartGeneration(GenerationRow g) override;
  void MarkGenerationFirstStep(int64_t generation_id, int64_t at_us) override;
  void EndGeneration(int64_t generation_id, int64_t ended_at_us,
                     const std::string& reason) override;
  void AddStep(const StepRow& step) override;
  int64_t AddCheckpoint(CheckpointRow c) override;
  void SetCheckpointState(int64_t checkpoint_id, const std::string& state, int64_t at_us,
                          const std::string& new_path) override;
  void SetRunStatus(int64_t run_id, const std::string& status) override;
  void FinishRun(int64_t run_id, const std::string& status, int64_t ended_at_us,
                 std::optional<int64_t> final_step, std::optional<double> final_loss,
                 const std::string& params_digest,
                 std::optional<double> tokens_per_second) override;
  void AfterCommit(std::function<void()> fn) override { fn(); }

  // What was written, in order (copies: the file thread may be writing).
  std::vector<EventRow> events() const;
  std::vector<InterventionRow> interventions() const;
  std::vector<GenerationRow> generations() const;
  std::vector<CheckpointRow> checkpoints() const;
  std::vector<StepRow> steps() const;
  std::string run_status() const;
  // Interventions' actions in order, and those answering one event.
  std::vector<std::string> actions() const;
  std::vector<std::string> actions_for(int64_t event_id) const;

 private:
  mutable std::mutex mu_;
  int64_t next_id_ = 1;  // one sequence for every table: ids never collide in a test's messages
  std::vector<EventRow> events_;
  std::vector<InterventionRow> interventions_;
  std::vector<GenerationRow> generations_;
  std::vector<CheckpointRow> checkpoints_;
  std::vector<StepRow> steps_;
  std::string run_status_ = "running";
};

}  // namespace vigil::coordinator
