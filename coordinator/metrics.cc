#include "coordinator/metrics.h"

#include <prometheus/text_serializer.h>

namespace vigil::coordinator {
namespace {

using prometheus::BuildCounter;
using prometheus::BuildGauge;
using prometheus::BuildHistogram;

constexpr const char* kStates[] = {"pending",   "rendezvous", "running", "recovering",
                                   "succeeded", "failed",     "paused"};

prometheus::Gauge& G(prometheus::Registry& r, const std::string& name, const std::string& help) {
  return BuildGauge().Name(name).Help(help).Register(r).Add({});
}

prometheus::Histogram& H(prometheus::Registry& r, const std::string& name, const std::string& help,
                         prometheus::Histogram::BucketBoundaries b) {
  return BuildHistogram().Name(name).Help(help).Register(r).Add({}, std::move(b));
}

}  // namespace

CoordinatorMetrics::CoordinatorMetrics()
    : registry_(std::make_shared<prometheus::Registry>()),
      step(G(*registry_, "vigil_step", "Optimizer steps completed by the current generation")),
      total_steps(G(*registry_, "vigil_total_steps", "Steps the job trains for")),
      loss(G(*registry_, "vigil_loss", "Training loss of the latest step (mean over ranks)")),
      learning_rate(G(*registry_, "vigil_learning_rate", "Learning rate of the latest step")),
      grad_norm(G(*registry_, "vigil_grad_norm",
                  "Global gradient L2 norm of the latest step, before clipping")),
      tokens_per_second(
          G(*registry_, "vigil_tokens_per_second", "Training throughput of the latest step")),
      tokens_seen(G(*registry_, "vigil_tokens_seen",
                    "Tokens consumed by the training state (resets on rollback)")),
      moe_aux_loss(G(*registry_, "vigil_moe_aux_loss",
                     "MoE load-balancing loss of the latest step (1 = balanced, experts = "
                     "collapsed; 0 for dense models)")),
      moe_dropped_choices(BuildCounter()
                              .Name("vigil_moe_dropped_choices_total")
                              .Help("Expert choices dropped by capacity, summed over ranks")
                              .Register(*registry_)
                              .Add({})),
      live_ranks(G(*registry_, "vigil_live_ranks", "Trainer ranks currently alive")),
      world_size(G(*registry_, "vigil_world_size", "Ranks the job runs on")),
      generation(
          G(*registry_, "vigil_generation", "Number of the current generation (0 = first start)")),
      agents_connected(G(*registry_, "vigil_agents_connected", "Agents registered and connected")),
      last_checkpoint_step(
          G(*registry_, "vigil_last_checkpoint_step", "Step of the newest committed checkpoint")),
      last_checkpoint_timestamp(G(*registry_, "vigil_last_checkpoint_timestamp_seconds",
                                  "Unix time the newest checkpoint was committed")),
      checkpoints_total(BuildCounter()
                            .Name("vigil_checkpoints_committed_total")
                            .Help("Checkpoints committed")
                            .Register(*registry_)
                            .Add({})),
      step_seconds(H(*registry_, "vigil_step_duration_seconds", "Wall time of one training step",
                     {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10})),
      detection_latency_seconds(H(*registry_, "vigil_detection_latency_seconds",
                                  "From an injected fault to its detection event",
                                  {0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10})),
      recovery_seconds(H(*registry_, "vigil_recovery_seconds",
                         "From a failure to the first step of the next generation",
                         {0.1, 0.25, 0.5, 1, 2, 3, 5, 10, 30, 60, 300})),
      pages_total(BuildCounter()
                      .Name("vigil_pages_total")
                      .Help("Times a playbook paged a person")
                      .Register(*registry_)
                      .Add({})),
      waiting_for_human(G(*registry_, "vigil_waiting_for_human",
                          "1 while the job is paused until `vigil resume`")) {
  restarts_ = &BuildCounter()
                   .Name("vigil_restarts_total")
                   .Help("Generations restarted, by reason")
                   .Register(*registry_);
  failures_ = &BuildCounter()
                   .Name("vigil_failures_detected_total")
                   .Help("Failures detected, by kind")
                   .Register(*registry_);
  state_ = &BuildGauge()
                .Name("vigil_job_state")
                .Help("1 for the job's current state")
                .Register(*registry_);
  for (const char* kind : kFailureKinds) {
    failures_->Add({{"kind", kind}});
    restarts_->Add({{"reason", kind}});
  }
  for (const char* s : kStates) state_->Add({{"state", s}});
  hosts_ = &BuildGauge()
                .Name("vigil_hosts")
                .Help("Hosts of the job: active (running ranks), spare, cordoned, lost")
                .Register(*registry_);
  SetHosts(0, 0, 0, 0);
}

void CoordinatorMetrics::SetHosts(int active, int spare, int cordoned, int lost) {
  hosts_->Add({{"state", "active"}}).Set(active);
  hosts_->Add({{"state", "spare"}}).Set(spare);
  hosts_->Add({{"state", "cordoned"}}).Set(cordoned);
  hosts_->Add({{"state", "lost"}}).Set(lost);
}

prometheus::Counter& CoordinatorMetrics::Restarts(const std::string& reason) {
  return restarts_->Add({{"reason", reason}});
}

prometheus::Counter& CoordinatorMetrics::Failures(const std::string& kind) {
  return failures_->Add({{"kind", kind}});
}

void CoordinatorMetrics::SetState(const std::string& state) {
  for (const char* s : kStates) state_->Add({{"state", s}}).Set(state == s ? 1 : 0);
}

std::string CoordinatorMetrics::Render() const {
  prometheus::TextSerializer serializer;
  return serializer.Serialize(registry_->Collect());
}

}  // namespace vigil::coordinator
