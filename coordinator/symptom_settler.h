// Settling collective errors. When a rank or a host dies, its peers'
// collectives fail too, and their exits (code 3) can reach vigild before
// the death itself: a lost host is noticed when its connection drops, a
// peer's reaping takes a moment. So the first collective error is held for
// limits.failure_settle_ms; a root cause that arrives meanwhile is handled
// instead and the held symptom dropped. If none arrives, the symptom is
// handed on as the detection.
//
// Single-threaded; its timer comes from the clock it is given.
#pragma once

#include <functional>
#include <memory>
#include <optional>

#include "coordinator/clock.h"
#include "coordinator/detection.h"

namespace vigil::coordinator {

class SymptomSettler {
 public:
  SymptomSettler(Clock* clock, int settle_ms, std::function<void(Detection)> on_settled);
  // Holds `d` unless a symptom is held already (then `d` adds nothing).
  void Hold(Detection d);
  bool holding() const { return held_.has_value(); }
  const Detection* held() const { return held_ ? &*held_ : nullptr; }
  // A cause is being handled (or the generation ends): the symptom is dropped.
  void Drop();
  Timer* timer() { return timer_.get(); }

 private:
  int settle_ms_;
  std::function<void(Detection)> on_settled_;
  std::unique_ptr<Timer> timer_;
  std::optional<Detection> held_;
};

}  // namespace vigil::coordinator
