#include "coordinator/goodput.h"

#include <algorithm>

namespace vigil::coordinator {

void GoodputTracker::GenerationStarted(const std::string& resumed_from) {
  const Generation& prev = current_;
  if (prev.first_step_us) {
    // The previous generation keeps its training up to the checkpoint this
    // one resumes from, if it wrote it; the rest is computed again.
    const auto it = checkpoints_.find(resumed_from);
    if (it != checkpoints_.end() && it->second.first == prev.index) {
      int64_t to = it->second.second;
      if (prev.ended_us) to = std::min(to, *prev.ended_us);
      settled_seconds_ += static_cast<double>(std::max<int64_t>(0, to - *prev.first_step_us)) / 1e6;
    }
  }
  current_ = Generation{prev.index + 1, std::nullopt, std::nullopt};
}

void GoodputTracker::FirstStep(int64_t at_us) {
  if (!current_.first_step_us) current_.first_step_us = at_us;
}

void GoodputTracker::CheckpointCommitted(const std::string& path, int64_t at_us) {
  checkpoints_[path] = {current_.index, at_us};
}

void GoodputTracker::GenerationEnded(int64_t at_us) {
  if (!current_.ended_us) current_.ended_us = at_us;
}

double GoodputTracker::ProductiveSeconds(int64_t now_us) const {
  double s = settled_seconds_;
  if (current_.first_step_us) {
    const int64_t to = current_.ended_us.value_or(now_us);
    s += static_cast<double>(std::max<int64_t>(0, to - *current_.first_step_us)) / 1e6;
  }
  return s;
}

double GoodputTracker::Goodput(int64_t now_us) const {
  const double wall = static_cast<double>(now_us - run_started_us_) / 1e6;
  return wall > 0 ? std::min(1.0, ProductiveSeconds(now_us) / wall) : 0.0;
}

}  // namespace vigil::coordinator
