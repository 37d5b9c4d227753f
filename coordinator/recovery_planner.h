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
// A restart is planned in two halves, because its checkpoint is chosen off
// the event loop (the catalog probes candidates' files): PlanRecovery (or
// PlanFallback) plans all that comes before the checkpoint and says what
// checkpoint it wants; once the catalog has chosen, CompleteRestart adds the
// restart's own row and its modifiers, or turns it into a pause when none
// is left. Pure: it plans on a copy of the placement; the controller adopts
// the plan's copy when it carries the plan out.
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
  // kRestart: the checkpoint to choose before CompleteRestart.
  std::optional<CheckpointWant> want;
  bool fallback = false;  // a fallback to an older checkpoint, not a restart
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

// Spares into the vacant slots of `placement`, one use_spare each; the last
// says why a slot stays vacant if one does (then placement->VacantSlot()).
std::vector<PlannedAction> FillVacancies(Placement* placement, int ranks_per_host);

// A detection the playbook answered, while the job runs. A restart's plan
// is the first half: `want` says which checkpoint to choose.
RecoveryPlan PlanRecovery(const PlanInput& in);
// A checkpoint the ranks refused (not the playbook's: a fallback to the
// next older one, bounded by checkpoint.max_fallbacks; not a restart). The
// first half, as above.
RecoveryPlan PlanFallback(const PlanInput& in);
// The second half of a restart (or fallback) `plan`, made by PlanRecovery
// or PlanFallback from the same input, once the catalog chose `choice`
// (`fallbacks` so far): its row (the cause of the next generation) and
// modifiers, or a pause when no checkpoint is left.
void CompleteRestart(const PlanInput& in, CheckpointChoice choice, int fallbacks,
                     RecoveryPlan* plan);
// A detection while a restart is under way or the job is paused: only the
// decision's host actions (cordon, spare) apply, to the next launch.
RecoveryPlan PlanHostActions(const PlanInput& in, const std::string& why_nothing_more);

}  // namespace vigil::coordinator
