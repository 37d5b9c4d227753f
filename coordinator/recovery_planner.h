// The recovery planner turns a detection and the playbook's decision into
// one plan: what the job does (go on, restart, pause for a person, fail),
// each intervention to record in the order it is done, where the next
// generation runs, which checkpoint it resumes from (chosen here, once: the
// launch uses this choice and the logbook row names the same one) and the
// modifiers it starts with.
//
// For a restart: first the hosts (cordon_host, then use_spare for each
// vacant slot, then shrink_world if a slot is still vacant), then the
// checkpoint (the newest usable one, or `rollback` N older; never one taken
// at or after a numerical anomaly's step), then the modifiers (skip_batches,
// scale_lr, switch_optimizer). A slot no spare fills, or no checkpoint left,
// turns the restart into a pause; a restart past limits.max_restarts into a
// failure.
//
// Pure but for the checkpoint choice, which probes candidates through the
// catalog (a corrupt one is reported and skipped as it is found). It plans
// on a copy of the placement; the controller adopts the plan's copy when it
// carries the plan out.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/job_spec.h"
#include "coordinator/checkpoint_catalog.h"
#include "coordinator/detection.h"
#include "coordinator/placement.h"
#include "coordinator/playbook.h"

namespace vigil::coordinator {

// What the next generation is launched with, beyond its checkpoint.
struct LaunchModifiers {
  int64_t skip_batches = 0;
  std::optional<int64_t> skip_end_step;  // the skipped batches end here (else: at the resume)
  double scale_lr = 0.0;                 // multiplies the checkpoint's scale (0: none)
  std::string optimizer;                 // a switch (it stays in force for later generations)
};

// One intervention to record.
struct PlannedAction {
  std::string action;  // common/vocabulary.h's action::*
  nlohmann::json params = nlohmann::json::object();
  std::string outcome;
};

struct RecoveryPlan {
  explicit RecoveryPlan(Placement p) : placement(std::move(p)) {}
  enum class Kind { kContinue, kRestart, kPause, kFail };
  Kind kind = Kind::kContinue;
  std::string actor;                   // auto:<rule>
  std::string why;                     // the decision's reason (or what overrode it)
  std::vector<PlannedAction> actions;  // in order
  int cause = -1;      // kRestart: the index of the action the next generation is caused by
  bool paged = false;  // actions hold a page
  // Whether the playbook's decision is what is carried out (its rule was
  // applied); a restart turned into a pause or a failure is not.
  bool decision_carried = false;
  bool counts_as_restart = false;  // toward limits.max_restarts and the restart loop
  std::string reason;              // kPause, kFail: what the job's message says
  Placement placement;
  CheckpointChoice checkpoint;
  LaunchModifiers modifiers;
};

struct PlanInput {
  const JobSpec* spec = nullptr;
  const Detection* detection = nullptr;
  const Decision* decision = nullptr;
  Placement placement;  // now (copied)
  int restarts = 0;     // carried out so far
  int64_t next_generation = 0;
};

// Corrupt-checkpoint callback of the catalog's choice (records the event).
using OnCorrupt = std::function<void(const std::string& path, const std::string& reason)>;

// Spares into the vacant slots of `placement`, one use_spare each; the last
// says why a slot stays vacant if one does (then placement->VacantSlot()).
std::vector<PlannedAction> FillVacancies(Placement* placement, int ranks_per_host);

// A detection the playbook answered, while the job runs.
RecoveryPlan PlanRecovery(const PlanInput& in, CheckpointCatalog* catalog,
                          const OnCorrupt& on_corrupt);
// A checkpoint the ranks refused (not the playbook's: a fallback to the
// next older one, bounded by checkpoint.max_fallbacks; not a restart).
RecoveryPlan PlanFallback(const PlanInput& in, CheckpointCatalog* catalog,
                          const OnCorrupt& on_corrupt);
// A detection while a restart is under way or the job is paused: only the
// decision's host actions (cordon, spare) apply, to the next launch.
RecoveryPlan PlanHostActions(const PlanInput& in, const std::string& why_nothing_more);

}  // namespace vigil::coordinator
