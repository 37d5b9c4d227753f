#include "coordinator/isolation.h"

namespace vigil::coordinator {

bool Isolation::Silenced(size_t silent, size_t quiet, size_t watched, int64_t now_us) {
  if (phase_ == Phase::kCutOff) return silent > 0;
  if (phase_ != Phase::kNone || silent == 0 || watched < 2 || quiet < watched) return false;
  phase_ = Phase::kCutOff;
  since_us_ = now_us;
  deadline_us_ = now_us + give_up_us_;
  return true;
}

void Isolation::StoodStill(int64_t now_us) {
  if (phase_ == Phase::kNone) since_us_ = now_us;
  phase_ = Phase::kHealing;
  deadline_us_ = now_us + heal_window_us_;
}

bool Isolation::Heard(int64_t now_us) {
  if (phase_ != Phase::kCutOff) return false;
  phase_ = Phase::kHealing;
  deadline_us_ = now_us + heal_window_us_;
  return true;
}

bool Isolation::Ended(int64_t now_us) {
  if (phase_ == Phase::kNone || now_us < deadline_us_) return false;
  phase_ = Phase::kNone;
  return true;
}

}  // namespace vigil::coordinator
