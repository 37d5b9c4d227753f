// Hang detection: a rank of a running generation that reports neither a
// step nor a save for longer than
//   max(detection.hang_factor x the median of recent step times, detection.hang_floor_ms)
// (detection.save_timeout_ms while it is in a blocking save) is suspected
// to hang. The controller then asks the agents what each rank is doing
// (DiagnoseRanks) and feeds their answers back; FinishProbe names the rank
// that hangs:
//   1. one stopped (state T or t) or stuck in the kernel (D);
//   2. else one running (R) while its peers sleep in their collectives;
//   3. else the one rank furthest behind in steps.
// With no single rank standing out, the detection names none.
//
// Reports only: it never acts. Single-threaded; time is passed in.
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <set>

#include "common/job_spec.h"
#include "common/vigil.pb.h"
#include "coordinator/detection.h"

namespace vigil::coordinator {

class HangDetector {
 public:
  explicit HangDetector(const DetectionSpec& spec) : spec_(spec) {}

  // A generation launched: no rank's progress is known yet (recent step
  // times are kept: the next generation steps as fast).
  void NewGeneration();
  // The generation reached its first step: each rank's silence counts from now.
  void StartWatching(const std::set<int>& ranks, int64_t now_us);
  void OnStep(int rank, int64_t step, int64_t now_us);
  // Rank 0's step time, for the adaptive timeout (the last 50 count).
  void OnStepTime(double seconds);
  void OnSaving(int rank, int64_t now_us);

  bool known(int rank) const { return progress_.count(rank) > 0; }
  bool saving(int rank) const;
  double median_step_ms() const;
  double timeout_ms() const;
  // True when a rank of `alive` has been silent past its limit.
  bool Silent(const std::set<int>& alive, int64_t now_us) const;

  // The probe: the agents are asked what the ranks do.
  void BeginProbe(int64_t now_us);
  bool probing() const { return probe_.has_value(); }
  void AddDiagnosis(int agent, const wire::Diagnosis& d);
  bool answered(int agent) const { return probe_ && probe_->agents_answered.count(agent) > 0; }
  void CancelProbe() { probe_.reset(); }
  // Ends the probe with what the agents said: a rank_hang detection (its
  // `rank` the suspect, if one stands out; agent and host are the caller's).
  Detection FinishProbe(const std::set<int>& alive, int64_t generation);

 private:
  struct RankProgress {
    int64_t last_us = 0;
    int64_t step = 0;
    bool saving = false;
  };
  struct Probe {
    int64_t detected_us = 0;
    double timeout_ms = 0, median_ms = 0;
    std::set<int> agents_answered;
    std::map<int, wire::RankDiagnosis> ranks;
  };
  const DetectionSpec& spec_;
  std::map<int, RankProgress> progress_;
  std::deque<double> recent_step_seconds_;
  std::optional<Probe> probe_;
};

// The median of `v` (0 when empty): the upper one of an even count.
double Median(std::deque<double> v);

}  // namespace vigil::coordinator
