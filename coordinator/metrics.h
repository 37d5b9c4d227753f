// vigild's Prometheus metrics. Names follow Prometheus conventions: base
// units, _total counters, _seconds histograms, bounded labels (kind, reason
// come from fixed lists and are initialised to 0 so rate() works from the
// first scrape).
#pragma once

#include <memory>
#include <string>

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

namespace vigil::coordinator {

// Failure kinds the detector can report today, and restart reasons.
inline constexpr const char* kFailureKinds[] = {
    "process_exit", "collective_error", "checkpoint_corrupt", "checkpoint_write_failed",
    "host_lost",    "start_timeout",    "config_error",       "rank_hang",
    "gpu_fault",    "gpu_thermal",      "straggler",          "nonfinite",
    "loss_spike",   "grad_norm_spike"};

class CoordinatorMetrics {
  // Declared first: every reference member below is registered in it.
  std::shared_ptr<prometheus::Registry> registry_;

 public:
  CoordinatorMetrics();

  std::string Render() const;

  prometheus::Gauge& step;
  prometheus::Gauge& total_steps;
  prometheus::Gauge& loss;
  prometheus::Gauge& learning_rate;
  prometheus::Gauge& grad_norm;
  prometheus::Gauge& tokens_per_second;
  prometheus::Gauge& tokens_seen;
  prometheus::Gauge& moe_aux_loss;
  prometheus::Counter& moe_dropped_choices;
  prometheus::Gauge& live_ranks;
  prometheus::Gauge& world_size;
  prometheus::Gauge& generation;
  prometheus::Gauge& agents_connected;
  prometheus::Gauge& last_checkpoint_step;
  prometheus::Gauge& last_checkpoint_timestamp;
  prometheus::Counter& checkpoints_total;
  prometheus::Histogram& step_seconds;
  prometheus::Histogram& detection_latency_seconds;
  prometheus::Histogram& recovery_seconds;
  // Pages: a playbook's `page` or `pause_and_page` (an alert rule fires on
  // the counter's increase), and 1 while the job waits for `vigil resume`.
  prometheus::Counter& pages_total;
  prometheus::Gauge& waiting_for_human;
  prometheus::Counter& Restarts(const std::string& reason);
  prometheus::Counter& Failures(const std::string& kind);
  void SetState(const std::string& state);
  void SetHosts(int active, int spare, int cordoned, int lost);

 private:
  prometheus::Family<prometheus::Counter>* restarts_;
  prometheus::Family<prometheus::Counter>* failures_;
  prometheus::Family<prometheus::Gauge>* state_;
  prometheus::Family<prometheus::Gauge>* hosts_;
};

}  // namespace vigil::coordinator
