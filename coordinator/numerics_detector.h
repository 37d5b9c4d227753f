// Numerics: rank 0's loss and gradient norm against their running medians
// over the last detection.spike_window steps. A loss above
// loss_spike_factor x its median is a loss_spike; else a gradient norm above
// grad_norm_spike_factor x its median is a grad_norm_spike. One detection
// per spike: the baselines are emptied and fill again before the next.
// (A NaN/Inf is the ranks' own detection: they refuse the update and exit 5.)
//
// Reports only. Single-threaded.
#pragma once

#include <deque>
#include <optional>

#include "common/job_spec.h"
#include "common/vigil.pb.h"
#include "coordinator/detection.h"

namespace vigil::coordinator {

class NumericsDetector {
 public:
  explicit NumericsDetector(const DetectionSpec& spec) : spec_(spec) {}
  // A generation launched: the baselines belong to where training was (a
  // resume goes back in steps), so they start again.
  void Reset();
  // Rank 0's step report; a detection (its `step` the step whose update is
  // suspect) or none.
  std::optional<Detection> Observe(const wire::RankReport& r, int64_t now_us);

 private:
  const DetectionSpec& spec_;
  std::deque<double> losses_, grad_norms_;
};

}  // namespace vigil::coordinator
