#include "coordinator/recovery_planner.h"

#include "common/vocabulary.h"

namespace vigil::coordinator {

using nlohmann::json;

namespace {

std::string ActorOf(const Decision& d) { return "auto:" + (d.rule.empty() ? "fallback" : d.rule); }

// cordon_host and use_spare as the decision asks.
void PlanHosts(const PlanInput& in, RecoveryPlan* plan) {
  const Detection& d = *in.detection;
  const Decision& decision = *in.decision;
  if (decision.Find(action::kCordonHost) && plan->placement.Cordon(d.host))
    plan->actions.push_back(
        {action::kCordonHost, json{{"host", d.host}, {"kind", d.kind}}, d.summary});
  if (!decision.Find(action::kUseSpare)) return;
  for (auto& a : FillVacancies(&plan->placement, in.spec->world.ranks_per_host))
    plan->actions.push_back(std::move(a));
}

RecoveryPlan PauseInstead(RecoveryPlan plan, const Detection& d, const json& params,
                          const std::string& why) {
  plan.kind = RecoveryPlan::Kind::kPause;
  plan.decision_carried = false;
  plan.counts_as_restart = false;
  plan.actions.push_back({action::kPauseAndPage, params, why});
  plan.reason = d.summary + "; " + why;
  plan.checkpoint = CheckpointChoice{};
  plan.modifiers = LaunchModifiers{};
  return plan;
}

}  // namespace

std::vector<PlannedAction> FillVacancies(Placement* placement, int ranks_per_host) {
  std::vector<PlannedAction> out;
  const AgentLink* agents = placement->agents();
  while (auto slot = placement->VacantSlot()) {
    const std::string vacancy = placement->VacancyReason(*slot);
    const auto move = placement->FillOne();
    if (!move) {
      out.push_back({action::kUseSpare, json{{"slot", *slot}}, vacancy});
      break;
    }
    const int first = move->slot * ranks_per_host;
    out.push_back({action::kUseSpare,
                   json{{"slot", move->slot},
                        {"replaced", agents->agent_host(move->replaced)},
                        {"spare", agents->agent_host(move->spare)},
                        {"ranks", json::array({first, first + ranks_per_host - 1})},
                        {"spares_left", move->spares_left}},
                   "ordered"});
  }
  return out;
}

RecoveryPlan PlanRecovery(const PlanInput& in) {
  const Detection& d = *in.detection;
  const Decision& decision = *in.decision;
  RecoveryPlan plan(in.placement);
  plan.actor = ActorOf(decision);
  plan.why = decision.why;
  plan.decision_carried = true;
  std::string outcome = decision.outcome().name;
  if (decision.restarts() && in.restarts >= in.spec->limits.max_restarts) {
    outcome = action::kFailJob;
    plan.why = "restart limit reached (limits.max_restarts " +
               std::to_string(in.spec->limits.max_restarts) + ")";
    plan.decision_carried = false;
  }
  if (decision.Find(action::kPage)) {
    plan.actions.push_back({action::kPage, json::object(), d.summary});
    plan.paged = true;
  }
  if (outcome == action::kContinue) {
    plan.kind = RecoveryPlan::Kind::kContinue;
    plan.actions.push_back({action::kContinueTraining, json{{"rule", decision.rule}}, plan.why});
    return plan;
  }
  if (outcome == action::kFailJob) {
    plan.kind = RecoveryPlan::Kind::kFail;
    plan.actions.push_back({action::kFailJob,
                            json{{"restarts", in.restarts},
                                 {"max_restarts", in.spec->limits.max_restarts},
                                 {"rule", decision.rule}},
                            plan.why});
    plan.reason = d.summary + "; " + plan.why;
    return plan;
  }
  if (outcome == action::kPauseAndPage) {
    plan.kind = RecoveryPlan::Kind::kPause;
    plan.actions.push_back({action::kPauseAndPage, json{{"rule", decision.rule}}, plan.why});
    plan.reason = d.summary + "; " + plan.why;
    return plan;
  }

  // A restart: the hosts, the checkpoint, the modifiers.
  PlanHosts(in, &plan);
  if (decision.Find(action::kShrinkWorld) && plan.placement.VacantSlot()) {
    const auto shrink = plan.placement.PlanShrink();
    const json params{{"from_world", shrink.from_world},
                      {"to_world", shrink.to_world},
                      {"batch_per_rank", shrink.batch_per_rank},
                      {"global_batch", shrink.global_batch}};
    plan.actions.push_back({action::kShrinkWorld, params,
                            shrink.cannot.empty() ? "ordered" : "cannot shrink: " + shrink.cannot});
    if (shrink.cannot.empty()) plan.placement.Apply(shrink);
  }
  if (auto slot = plan.placement.VacantSlot()) {
    const std::string vacancy = plan.placement.VacancyReason(*slot);
    return PauseInstead(std::move(plan), d, json{{"slot", *slot}}, vacancy);
  }
  plan.kind = RecoveryPlan::Kind::kRestart;
  plan.counts_as_restart = true;
  plan.want.emplace();
  if (const auto* rb = decision.Find(action::kRollback))
    plan.want->rollback = static_cast<int>(rb->count);
  if (d.step) plan.want->before_step = d.step;
  return plan;
}

namespace {

// The restart's own row and its modifiers, from its chosen checkpoint.
void PlanRestart(const PlanInput& in, RecoveryPlan* plan) {
  const Detection& d = *in.detection;
  const Decision& decision = *in.decision;
  const std::string outcome = decision.outcome().name;
  const auto& ckpt = plan->checkpoint.checkpoint;
  json params{{"checkpoint", ckpt ? ckpt->path : ""},
              {"checkpoint_step", ckpt ? ckpt->step : 0},
              {"next_generation", in.next_generation}};
  if (outcome == action::kRollback) {
    params["rollback"] = plan->want->rollback;
    json over = json::array();
    for (const auto& r : plan->checkpoint.rolled_back) over.push_back(r.step);
    params["rolled_back_steps"] = over;
  }
  plan->cause = static_cast<int>(plan->actions.size());
  plan->actions.push_back({outcome, params, plan->why});
  for (const auto& a : decision.actions) {
    if (a.name == action::kSkipBatches) {
      plan->modifiers.skip_batches = a.count;
      plan->modifiers.skip_end_step = d.step;
      plan->actions.push_back(
          {action::kSkipBatches,
           json{{"batches", a.count}, {"ending_at_step", d.step ? json(*d.step) : json()}},
           "ordered"});
    } else if (a.name == action::kScaleLr) {
      plan->modifiers.scale_lr = a.factor;
      plan->actions.push_back({action::kScaleLr,
                               json{{"factor", a.factor},
                                    {"from", plan->checkpoint.lr_scale},
                                    {"to", plan->checkpoint.lr_scale * a.factor}},
                               "ordered"});
    } else if (a.name == action::kSwitchOptimizer) {
      plan->modifiers.optimizer = a.optimizer;
      plan->actions.push_back({action::kSwitchOptimizer, json{{"to", a.optimizer}}, "ordered"});
    }
  }
}

}  // namespace

void CompleteRestart(const PlanInput& in, CheckpointChoice choice, int fallbacks,
                     RecoveryPlan* plan) {
  const Detection& d = *in.detection;
  plan->checkpoint = std::move(choice);
  if (plan->checkpoint.pause) {
    const std::string why = plan->checkpoint.why;
    *plan = PauseInstead(std::move(*plan), d, json{{"fallbacks", fallbacks}}, why);
    if (plan->fallback) plan->why = why;
    return;
  }
  if (!plan->fallback) return PlanRestart(in, plan);
  const auto& ckpt = plan->checkpoint.checkpoint;
  plan->cause = static_cast<int>(plan->actions.size());
  plan->actions.push_back({action::kFallbackToOlderCheckpoint,
                           json{{"checkpoint", ckpt ? ckpt->path : ""},
                                {"checkpoint_step", ckpt ? ckpt->step : 0},
                                {"next_generation", in.next_generation}},
                           "ordered"});
}

RecoveryPlan PlanFallback(const PlanInput& in) {
  RecoveryPlan plan(in.placement);
  plan.actor = "auto:checkpoints";
  plan.kind = RecoveryPlan::Kind::kRestart;
  plan.fallback = true;
  plan.want.emplace();
  plan.why = "the checkpoint resumed from is corrupt: the next older one is tried";
  return plan;
}

RecoveryPlan PlanHostActions(const PlanInput& in, const std::string& why_nothing_more) {
  RecoveryPlan plan(in.placement);
  plan.kind = RecoveryPlan::Kind::kContinue;
  plan.actor = ActorOf(*in.decision);
  PlanHosts(in, &plan);
  plan.actions.push_back({action::kNone, json{{"rule", in.decision->rule}}, why_nothing_more});
  return plan;
}

}  // namespace vigil::coordinator
