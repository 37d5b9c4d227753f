// vigild's Prometheus metrics (docs/metrics.md lists them with the
// dashboards and alert rules that read them). Names follow Prometheus
// conventions: base units (seconds, bytes, ratios), _total counters,
// _seconds histograms, bounded labels. Labels from fixed lists (kind, reason,
// action, state) are initialised to 0 so rate() and increase() work from the
// first scrape; per-host series are created when the host registers.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <unordered_map>

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include "common/vocabulary.h"

namespace vigil::coordinator {

// Failure kinds, actions, job/rank/host states: common/vocabulary.h.
// GPU fault types an agent reports (wire::GpuFault.type).
inline constexpr const char* kGpuFaultTypes[] = {"xid", "ecc", "thermal"};

// One GPU's health as its agent last read it (NVML).
struct GpuReading {
  int gpu = 0;
  double temperature_celsius = 0;
  double slowdown_celsius = 0;  // 0: unknown
  double uncorrected_ecc_errors = 0;
};

class CoordinatorMetrics {
  // Declared first: every reference member below is registered in it.
  std::shared_ptr<prometheus::Registry> registry_;

 public:
  CoordinatorMetrics();

  std::string Render() const;

  // Training progress (rank 0's reports).
  prometheus::Gauge& step;
  prometheus::Gauge& total_steps;
  prometheus::Gauge& last_step_timestamp;
  prometheus::Gauge& loss;
  prometheus::Gauge& learning_rate;
  prometheus::Gauge& grad_norm;
  prometheus::Gauge& tokens_per_second;
  prometheus::Counter& tokens_trained;
  prometheus::Gauge& tokens_seen;
  prometheus::Histogram& step_seconds;
  prometheus::Gauge& model_flops_per_token;
  prometheus::Gauge& peak_flops;  // the world's, when the spec gives it (0: unknown)
  prometheus::Gauge& mfu;
  prometheus::Gauge& moe_aux_loss;
  prometheus::Counter& moe_dropped_choices;
  // The job.
  prometheus::Gauge& start_timestamp;
  prometheus::Gauge& live_ranks;
  prometheus::Gauge& world_size;
  prometheus::Gauge& generation;
  prometheus::Gauge& agents_connected;
  prometheus::Gauge& coordinator_epoch;
  prometheus::Gauge& goodput;
  prometheus::Gauge& productive_seconds;
  // Checkpoints.
  prometheus::Gauge& checkpoint_every_steps;
  prometheus::Gauge& last_checkpoint_step;
  prometheus::Gauge& last_checkpoint_timestamp;
  prometheus::Gauge& checkpoint_size_bytes;
  prometheus::Counter& checkpoints_total;
  prometheus::Counter& checkpoint_written_bytes;
  prometheus::Histogram& checkpoint_save_seconds;
  // Pages: a playbook's `page` or `pause_and_page` (an alert rule fires on
  // the counter's increase), and 1 while the job waits for `vigil resume`.
  prometheus::Counter& pages_total;
  prometheus::Gauge& waiting_for_human;

  prometheus::Counter& Restarts(const std::string& reason);
  prometheus::Counter& Failures(const std::string& kind);
  prometheus::Counter& Interventions(const std::string& action);
  // From the fault (or its injection) to the detection, and from the
  // failure to the next generation's first step; by failure kind.
  void ObserveDetection(const std::string& kind, double seconds);
  void ObserveRecovery(const std::string& kind, double seconds);
  void SetState(const std::string& state);
  void SetRanks(const std::map<std::string, int>& by_state);
  void SetHosts(const std::map<std::string, int>& by_state);
  // Per host: its state, registrations and losses, and its GPUs.
  void HostRegistered(const std::string& host);
  void SetHostState(const std::string& host, const std::string& state);
  void HostLost(const std::string& host);
  void HostRefused(const std::string& host);
  void GpuFault(const std::string& host, const std::string& type, int xid);
  void SetGpu(const std::string& host, const GpuReading& reading);
  // The RPC port (admission.h): failed authentications by reason, and the
  // connections open, handshaking or authenticated.
  prometheus::Counter& AuthFailures(const std::string& reason);
  void SetConnections(size_t handshaking, size_t authenticated);

 private:
  prometheus::Family<prometheus::Counter>* restarts_;
  prometheus::Family<prometheus::Counter>* failures_;
  prometheus::Family<prometheus::Counter>* interventions_;
  prometheus::Family<prometheus::Histogram>* detection_;
  prometheus::Family<prometheus::Histogram>* recovery_;
  prometheus::Family<prometheus::Gauge>* state_;
  prometheus::Family<prometheus::Gauge>* ranks_;
  prometheus::Family<prometheus::Gauge>* hosts_;
  prometheus::Family<prometheus::Gauge>* host_state_;
  // Each host's state as its series say now: a state set again is not
  // looked up again (vigild sets them all at each registration).
  std::unordered_map<std::string, std::string> host_state_now_;
  prometheus::Family<prometheus::Counter>* host_registrations_;
  prometheus::Family<prometheus::Counter>* host_lost_;
  prometheus::Family<prometheus::Counter>* host_refused_;
  prometheus::Family<prometheus::Counter>* gpu_faults_;
  prometheus::Family<prometheus::Counter>* gpu_xids_;
  prometheus::Family<prometheus::Gauge>* gpu_temperature_;
  prometheus::Family<prometheus::Gauge>* gpu_slowdown_;
  prometheus::Family<prometheus::Gauge>* gpu_ecc_;
  prometheus::Family<prometheus::Counter>* auth_failures_;
  prometheus::Family<prometheus::Gauge>* connections_;
};

}  // namespace vigil::coordinator
