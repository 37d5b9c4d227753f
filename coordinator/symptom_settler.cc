#include "coordinator/symptom_settler.h"

namespace vigil::coordinator {

SymptomSettler::SymptomSettler(Clock* clock, int settle_ms,
                               std::function<void(Detection)> on_settled)
    : settle_ms_(settle_ms), on_settled_(std::move(on_settled)), timer_(clock->NewTimer()) {}

void SymptomSettler::Hold(Detection d) {
  if (held_) return;
  held_ = std::move(d);
  timer_->Start(std::chrono::milliseconds(settle_ms_), [this] {
    if (!held_) return;
    Detection d = std::move(*held_);
    held_.reset();
    on_settled_(std::move(d));
  });
}

void SymptomSettler::Drop() {
  held_.reset();
  timer_->Cancel();
}

}  // namespace vigil::coordinator
