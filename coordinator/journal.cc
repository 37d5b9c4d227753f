#include "coordinator/journal.h"

namespace vigil::coordinator {

int64_t MemoryJournal::AddEvent(EventRow e) {
  std::lock_guard<std::mutex> lock(mu_);
  e.id = next_id_++;
  events_.push_back(e);
  return e.id;
}

int64_t MemoryJournal::AddIntervention(InterventionRow i) {
  std::lock_guard<std::mutex> lock(mu_);
  i.id = next_id_++;
  interventions_.push_back(i);
  return i.id;
}

int64_t MemoryJournal::StartGeneration(GenerationRow g) {
  std::lock_guard<std::mutex> lock(mu_);
  g.id = next_id_++;
  generations_.push_back(g);
  return g.id;
}

void MemoryJournal::MarkGenerationFirstStep(int64_t generation_id, int64_t at_us) {
  std::lock_guard<std::mutex> lock(mu_);
  for (auto& g : generations_) {
    if (g.id == generation_id && !g.first_step_at_us) g.first_step_at_us = at_us;
  }
}

void MemoryJournal::EndGeneration(int64_t generation_id, int64_t ended_at_us,
                                  const std::string& reason) {
  std::lock_guard<std::mutex> lock(mu_);
  for (auto& g : generations_) {
    if (g.id != generation_id || g.ended_at_us) continue;
    g.ended_at_us = ended_at_us;
    g.end_reason = reason;
  }
}

void MemoryJournal::AddStep(const StepRow& step) {
  std::lock_guard<std::mutex> lock(mu_);
  steps_.push_back(step);
}

int64_t MemoryJournal::AddCheckpoint(CheckpointRow c) {
  std::lock_guard<std::mutex> lock(mu_);
  c.id = next_id_++;
  checkpoints_.push_back(c);
  return c.id;
}

void MemoryJournal::SetCheckpointState(int64_t checkpoint_id, const std::string& state,
                                       int64_t /*at_us*/, const std::string& new_path) {
  std::lock_guard<std::mutex> lock(mu_);
  for (auto& c : checkpoints_) {
    if (c.id != checkpoint_id) continue;
    c.state = state;
    if (!new_path.empty()) c.path = new_path;
  }
}

void MemoryJournal::SetRunStatus(int64_t /*run_id*/, const std::string& status) {
  std::lock_guard<std::mutex> lock(mu_);
  run_status_ = status;
}

void MemoryJournal::FinishRun(int64_t /*run_id*/, const std::string& status,
                              int64_t /*ended_at_us*/, std::optional<int64_t> /*final_step*/,
                              std::optional<double> /*final_loss*/,
                              const std::string& /*params_digest*/,
                              std::optional<double> /*tokens_per_second*/) {
  std::lock_guard<std::mutex> lock(mu_);
  run_status_ = status;
}

std::vector<EventRow> MemoryJournal::events() const {
  std::lock_guard<std::mutex> lock(mu_);
  return events_;
}

std::vector<InterventionRow> MemoryJournal::interventions() const {
  std::lock_guard<std::mutex> lock(mu_);
  return interventions_;
}

std::vector<GenerationRow> MemoryJournal::generations() const {
  std::lock_guard<std::mutex> lock(mu_);
  return generations_;
}

std::vector<CheckpointRow> MemoryJournal::checkpoints() const {
  std::lock_guard<std::mutex> lock(mu_);
  return checkpoints_;
}

std::vector<StepRow> MemoryJournal::steps() const {
  std::lock_guard<std::mutex> lock(mu_);
  return steps_;
}

std::string MemoryJournal::run_status() const {
  std::lock_guard<std::mutex> lock(mu_);
  return run_status_;
}

std::vector<std::string> MemoryJournal::actions() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<std::string> out;
  for (const auto& i : interventions_) out.push_back(i.action);
  return out;
}

std::vector<std::string> MemoryJournal::actions_for(int64_t event_id) const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<std::string> out;
  for (const auto& i : interventions_) {
    if (i.event_id == event_id) out.push_back(i.action);
  }
  return out;
}

}  // namespace vigil::coordinator
