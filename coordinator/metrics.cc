#include "coordinator/metrics.h"

#include <prometheus/text_serializer.h>

namespace vigil::coordinator {
namespace {

using prometheus::BuildCounter;
using prometheus::BuildGauge;
using prometheus::BuildHistogram;
using Buckets = prometheus::Histogram::BucketBoundaries;

const Buckets kDetectionBuckets = {0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60};
const Buckets kRecoveryBuckets = {0.1, 0.25, 0.5, 1, 2, 3, 5, 10, 30, 60, 300, 600, 1800};

prometheus::Gauge& G(prometheus::Registry& r, const std::string& name, const std::string& help) {
  return BuildGauge().Name(name).Help(help).Register(r).Add({});
}

prometheus::Counter& C(prometheus::Registry& r, const std::string& name, const std::string& help) {
  return BuildCounter().Name(name).Help(help).Register(r).Add({});
}

prometheus::Histogram& H(prometheus::Registry& r, const std::string& name, const std::string& help,
                         Buckets b) {
  return BuildHistogram().Name(name).Help(help).Register(r).Add({}, std::move(b));
}

template <typename T>
prometheus::Family<T>* Family(prometheus::Registry& r, const std::string& name,
                              const std::string& help) {
  if constexpr (std::is_same_v<T, prometheus::Counter>) {
    return &BuildCounter().Name(name).Help(help).Register(r);
  } else if constexpr (std::is_same_v<T, prometheus::Gauge>) {
    return &BuildGauge().Name(name).Help(help).Register(r);
  } else {
    return &BuildHistogram().Name(name).Help(help).Register(r);
  }
}

}  // namespace

CoordinatorMetrics::CoordinatorMetrics()
    : registry_(std::make_shared<prometheus::Registry>()),
      step(G(*registry_, "vigil_step", "Optimizer steps completed by the current generation")),
      total_steps(G(*registry_, "vigil_total_steps", "Steps the job trains for")),
      last_step_timestamp(G(*registry_, "vigil_last_step_timestamp_seconds",
                            "Unix time of the latest step report (0 before the first)")),
      loss(G(*registry_, "vigil_loss", "Training loss of the latest step (mean over ranks)")),
      learning_rate(G(*registry_, "vigil_learning_rate", "Learning rate of the latest step")),
      grad_norm(G(*registry_, "vigil_grad_norm",
                  "Global gradient L2 norm of the latest step, before clipping")),
      tokens_per_second(G(*registry_, "vigil_tokens_per_second",
                          "Training throughput of the latest step, whole world")),
      tokens_trained(C(*registry_, "vigil_tokens_trained_total",
                       "Tokens trained on, recomputed ones after a rollback included")),
      tokens_seen(G(*registry_, "vigil_tokens_seen",
                    "Tokens consumed by the training state (resets on rollback)")),
      step_seconds(H(*registry_, "vigil_step_duration_seconds", "Wall time of one training step",
                     {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10})),
      model_flops_per_token(G(*registry_, "vigil_model_flops_per_token",
                              "Training FLOPs per token of the model (forward and backward)")),
      peak_flops(G(*registry_, "vigil_peak_flops",
                   "Peak FLOP/s of the whole world, from the job spec (0: not given)")),
      mfu(G(*registry_, "vigil_model_flops_utilization_ratio",
            "Model FLOPs utilisation of the latest step (0 when the peak is not given)")),
      moe_aux_loss(G(*registry_, "vigil_moe_aux_loss",
                     "MoE load-balancing loss of the latest step (1 = balanced, experts = "
                     "collapsed; 0 for dense models)")),
      moe_dropped_choices(C(*registry_, "vigil_moe_dropped_choices_total",
                            "Expert choices dropped by capacity, summed over ranks")),
      start_timestamp(G(*registry_, "vigil_start_timestamp_seconds", "Unix time the run started")),
      live_ranks(G(*registry_, "vigil_live_ranks", "Trainer ranks currently alive")),
      world_size(G(*registry_, "vigil_world_size", "Ranks the job runs on")),
      generation(
          G(*registry_, "vigil_generation", "Number of the current generation (0 = first start)")),
      agents_connected(G(*registry_, "vigil_agents_connected", "Agents registered and connected")),
      coordinator_epoch(G(*registry_, "vigil_coordinator_epoch",
                          "This vigild's coordinator epoch (the logbook's coordinator_epochs)")),
      goodput(G(*registry_, "vigil_goodput_ratio",
                "Productive training time over wall time since the run started")),
      productive_seconds(G(*registry_, "vigil_productive_seconds",
                           "Training time kept by the run so far (what a rollback recomputes "
                           "and time spent restarting are not)")),
      checkpoint_every_steps(G(*registry_, "vigil_checkpoint_interval_steps",
                               "Steps between checkpoints, from the job spec")),
      last_checkpoint_step(G(*registry_, "vigil_checkpoint_last_success_step",
                             "Step of the newest committed checkpoint")),
      last_checkpoint_timestamp(G(*registry_, "vigil_checkpoint_last_success_timestamp_seconds",
                                  "Unix time the newest checkpoint was committed (0: none yet)")),
      checkpoint_size_bytes(G(*registry_, "vigil_checkpoint_size_bytes",
                              "Bytes of the newest committed checkpoint, all shards")),
      checkpoints_total(
          C(*registry_, "vigil_checkpoints_committed_total", "Checkpoints committed")),
      checkpoint_written_bytes(C(*registry_, "vigil_checkpoint_written_bytes_total",
                                 "Bytes of committed checkpoints written")),
      checkpoint_save_seconds(
          H(*registry_, "vigil_checkpoint_save_duration_seconds",
            "From the snapshot of the state to the commit of a checkpoint",
            {0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600})),
      pages_total(C(*registry_, "vigil_pages_total", "Times a playbook paged a person")),
      waiting_for_human(G(*registry_, "vigil_waiting_for_human",
                          "1 while the job is paused until `vigil resume`")) {
  auto& r = *registry_;
  restarts_ = Family<prometheus::Counter>(r, "vigil_restarts_total",
                                          "Generations restarted, by the failure kind that led "
                                          "to the restart");
  failures_ =
      Family<prometheus::Counter>(r, "vigil_failures_detected_total", "Failures detected, by kind");
  interventions_ = Family<prometheus::Counter>(r, "vigil_interventions_total",
                                               "Interventions recorded in the logbook, by action");
  detection_ = Family<prometheus::Histogram>(
      r, "vigil_detection_latency_seconds",
      "From a fault (its injection, or the signal that killed a rank) to its detection, by kind");
  recovery_ = Family<prometheus::Histogram>(
      r, "vigil_recovery_seconds",
      "From a failure to the first step of the next generation, by failure kind");
  state_ = Family<prometheus::Gauge>(r, "vigil_job_state", "1 for the job's current state");
  ranks_ = Family<prometheus::Gauge>(
      r, "vigil_ranks",
      "Ranks of the world by state: starting (no step yet), training, saving, down");
  hosts_ = Family<prometheus::Gauge>(
      r, "vigil_hosts", "Hosts of the job: active (running ranks), spare, cordoned, lost");
  host_state_ = Family<prometheus::Gauge>(r, "vigil_host_state", "1 for each host's state");
  host_registrations_ = Family<prometheus::Counter>(r, "vigil_host_registrations_total",
                                                    "Times each host's agent registered");
  host_refused_ = Family<prometheus::Counter>(
      r, "vigil_host_refused_total",
      "Times each host's agent was refused at registration (its storage check failed)");
  host_lost_ = Family<prometheus::Counter>(
      r, "vigil_host_lost_total", "Times each host's agent was lost (connection or heartbeats)");
  gpu_faults_ = Family<prometheus::Counter>(r, "vigil_gpu_faults_total",
                                            "GPU faults reported by each host's agent, by type");
  gpu_xids_ = Family<prometheus::Counter>(r, "vigil_gpu_xid_errors_total",
                                          "Xid errors reported by each host's agent, by code");
  gpu_temperature_ = Family<prometheus::Gauge>(r, "vigil_gpu_temperature_celsius",
                                               "GPU temperature, as NVML last read it");
  gpu_slowdown_ = Family<prometheus::Gauge>(r, "vigil_gpu_slowdown_temperature_celsius",
                                            "Temperature at which the GPU slows itself down");
  gpu_ecc_ = Family<prometheus::Gauge>(
      r, "vigil_gpu_uncorrected_ecc_errors",
      "Uncorrectable ECC errors since the driver loaded (NVML's volatile count)");
  auth_failures_ = Family<prometheus::Counter>(
      r, "vigil_auth_failures_total",
      "Connections to the RPC port that failed to prove the job's token, by reason");
  connections_ = Family<prometheus::Gauge>(
      r, "vigil_rpc_connections",
      "Connections open on the RPC port: handshaking (not yet authenticated), authenticated");
  for (const char* reason : kAuthReasons) auth_failures_->Add({{"reason", reason}});
  SetConnections(0, 0);
  for (const char* kind : kFailureKinds) {
    failures_->Add({{"kind", kind}});
    restarts_->Add({{"reason", kind}});
    detection_->Add({{"kind", kind}}, kDetectionBuckets);
    recovery_->Add({{"kind", kind}}, kRecoveryBuckets);
  }
  for (const char* action : kInterventionActions) interventions_->Add({{"action", action}});
  for (const char* s : kJobStates) state_->Add({{"state", s}});
  SetRanks({});
  SetHosts({});
}

void CoordinatorMetrics::SetRanks(const std::map<std::string, int>& by_state) {
  for (const char* s : kRankStates) {
    auto it = by_state.find(s);
    ranks_->Add({{"state", s}}).Set(it == by_state.end() ? 0 : it->second);
  }
}

void CoordinatorMetrics::SetHosts(const std::map<std::string, int>& by_state) {
  for (const char* s : kHostStates) {
    auto it = by_state.find(s);
    hosts_->Add({{"state", s}}).Set(it == by_state.end() ? 0 : it->second);
  }
}

void CoordinatorMetrics::HostRegistered(const std::string& host) {
  host_registrations_->Add({{"host", host}}).Increment();
  host_lost_->Add({{"host", host}});
  for (const char* type : kGpuFaultTypes) gpu_faults_->Add({{"host", host}, {"type", type}});
}

void CoordinatorMetrics::HostRefused(const std::string& host) {
  host_refused_->Add({{"host", host}}).Increment();
}

void CoordinatorMetrics::SetHostState(const std::string& host, const std::string& state) {
  std::string& now = host_state_now_[host];
  if (now == state) return;
  now = state;
  for (const char* s : kHostStates)
    host_state_->Add({{"host", host}, {"state", s}}).Set(state == s);
}

void CoordinatorMetrics::HostLost(const std::string& host) {
  host_lost_->Add({{"host", host}}).Increment();
}

void CoordinatorMetrics::GpuFault(const std::string& host, const std::string& type, int xid) {
  gpu_faults_->Add({{"host", host}, {"type", type}}).Increment();
  if (type == "xid") gpu_xids_->Add({{"host", host}, {"code", std::to_string(xid)}}).Increment();
}

void CoordinatorMetrics::SetGpu(const std::string& host, const GpuReading& g) {
  const prometheus::Labels labels{{"host", host}, {"gpu", std::to_string(g.gpu)}};
  gpu_temperature_->Add(labels).Set(g.temperature_celsius);
  gpu_ecc_->Add(labels).Set(g.uncorrected_ecc_errors);
  if (g.slowdown_celsius > 0) gpu_slowdown_->Add(labels).Set(g.slowdown_celsius);
}

prometheus::Counter& CoordinatorMetrics::AuthFailures(const std::string& reason) {
  return auth_failures_->Add({{"reason", reason}});
}

void CoordinatorMetrics::SetConnections(size_t handshaking, size_t authenticated) {
  connections_->Add({{"state", "handshaking"}}).Set(static_cast<double>(handshaking));
  connections_->Add({{"state", "authenticated"}}).Set(static_cast<double>(authenticated));
}

prometheus::Counter& CoordinatorMetrics::Restarts(const std::string& reason) {
  return restarts_->Add({{"reason", reason}});
}

prometheus::Counter& CoordinatorMetrics::Failures(const std::string& kind) {
  return failures_->Add({{"kind", kind}});
}

prometheus::Counter& CoordinatorMetrics::Interventions(const std::string& action) {
  return interventions_->Add({{"action", action}});
}

void CoordinatorMetrics::ObserveDetection(const std::string& kind, double seconds) {
  detection_->Add({{"kind", kind}}, kDetectionBuckets).Observe(seconds);
}

void CoordinatorMetrics::ObserveRecovery(const std::string& kind, double seconds) {
  recovery_->Add({{"kind", kind}}, kRecoveryBuckets).Observe(seconds);
}

void CoordinatorMetrics::SetState(const std::string& state) {
  for (const char* s : kJobStates) state_->Add({{"state", s}}).Set(state == s ? 1 : 0);
}

std::string CoordinatorMetrics::Render() const {
  prometheus::TextSerializer serializer;
  return serializer.Serialize(registry_->Collect());
}

}  // namespace vigil::coordinator
