#include "coordinator/goodput.h"

#include <algorithm>

#include "logbook/goodput_rule.h"

namespace vigil::coordinator {

void GoodputTracker::GenerationStarted(const std::string& resumed_from) {
  const Generation& prev = current_;
  std::optional<int64_t> kept;
  const auto it = checkpoints_.find(resumed_from);
  if (it != checkpoints_.end() && it->second.first == prev.index) kept = it->second.second;
  // Ended before the next started; a generation never ended counts to its checkpoint.
  const int64_t to = prev.ended_us.value_or(kept.value_or(0));
  settled_seconds_ += vigil::ProductiveSeconds(prev.first_step_us, to, /*superseded=*/true, kept);
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
  return settled_seconds_ + vigil::ProductiveSeconds(current_.first_step_us,
                                                     current_.ended_us.value_or(now_us),
                                                     /*superseded=*/false, std::nullopt);
}

double GoodputTracker::Goodput(int64_t now_us) const {
  return GoodputRatio(ProductiveSeconds(now_us),
                      static_cast<double>(now_us - run_started_us_) / 1e6);
}

}  // namespace vigil::coordinator
