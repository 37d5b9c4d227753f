#include "coordinator/numerics_detector.h"

#include "common/vocabulary.h"
#include "coordinator/hang_detector.h"

namespace vigil::coordinator {

using nlohmann::json;

void NumericsDetector::Reset() {
  losses_.clear();
  grad_norms_.clear();
}

std::optional<Detection> NumericsDetector::Observe(const wire::RankReport& r, int64_t now_us) {
  const double loss = r.loss(), norm = r.grad_norm();
  const size_t window = static_cast<size_t>(spec_.spike_window);
  Detection d;
  if (losses_.size() >= window) {
    const double loss_median = Median(losses_), norm_median = Median(grad_norms_);
    if (loss > spec_.loss_spike_factor * loss_median) {
      d.kind = kind::kLossSpike;
      d.detail = json{{"loss", loss},
                      {"running_median", loss_median},
                      {"factor", loss / loss_median},
                      {"threshold", spec_.loss_spike_factor},
                      {"window", spec_.spike_window}};
      d.summary = "loss " + std::to_string(loss) + " at step " + std::to_string(r.step()) + " is " +
                  std::to_string(loss / loss_median) + "x its running median";
    } else if (norm_median > 0 && norm > spec_.grad_norm_spike_factor * norm_median) {
      d.kind = kind::kGradNormSpike;
      d.detail = json{{"grad_norm", norm},
                      {"running_median", norm_median},
                      {"factor", norm / norm_median},
                      {"threshold", spec_.grad_norm_spike_factor},
                      {"window", spec_.spike_window}};
      d.summary = "gradient norm " + std::to_string(norm) + " at step " + std::to_string(r.step()) +
                  " is " + std::to_string(norm / norm_median) + "x its running median";
    }
  }
  losses_.push_back(loss);
  grad_norms_.push_back(norm);
  while (losses_.size() > window) losses_.pop_front();
  while (grad_norms_.size() > window) grad_norms_.pop_front();
  if (d.kind.empty()) return std::nullopt;
  Reset();
  // The update of step r.step() is in every checkpoint from that step on.
  d.step = static_cast<int64_t>(r.step());
  d.detail["step"] = r.step();
  d.time_us = now_us;
  return d;
}

}  // namespace vigil::coordinator
