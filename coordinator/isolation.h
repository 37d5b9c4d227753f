// vigild cut off from its agents, told apart from hosts failing.
//
// When every agent of a job (two or more) falls silent at once, the likely
// cause is vigild's own: its link is cut, or its loop stood still (stopped,
// starved). The ranks train on meanwhile (their collectives do not pass
// through vigild) and each agent keeps what it reports until a vigild acks
// it. Declaring every host lost would tear down a healthy world; instead
// vigild waits:
//   kCutOff   no agent heard since all fell silent: nobody is declared lost,
//             closed agent connections are waited for, time-driven
//             detections pause. Bounded by `give_up` (the agents' own
//             limits.coordinator_grace_ms: past it they kill their ranks).
//   kHealing  an agent was heard again (or the loop runs again after
//             standing still): the others have `heal_window` from then to
//             come back, reconnecting in place (same agent process, same
//             index); those that do not are lost as usual.
// Then kNone: a closed connection or a silent agent is a lost host again.
//
// Pure: time (steady microseconds) is passed in. The coordinator acts.
#pragma once

#include <cstddef>
#include <cstdint>

namespace vigil::coordinator {

class Isolation {
 public:
  enum class Phase { kNone, kCutOff, kHealing };
  Isolation(int64_t heal_window_us, int64_t give_up_us)
      : heal_window_us_(heal_window_us), give_up_us_(give_up_us) {}

  // `silent` agents passed the heartbeat timeout; `quiet` of the `watched`
  // ones (those included) have been silent for nearly as long (the timeout
  // less a couple of heartbeat intervals: their last heartbeats were sent
  // at different moments). True when that is vigild cut off (every one of
  // two or more went quiet together): none is to be declared lost.
  bool Silenced(size_t silent, size_t quiet, size_t watched, int64_t now_us);
  // vigild's loop stood still: its agents get a heal window from now.
  void StoodStill(int64_t now_us);
  // An agent was heard from. True when that starts the heal window (the
  // coordinator restarts every agent's heartbeat clock).
  bool Heard(int64_t now_us);
  // True once, when the window is over (healed, or given up): the agents
  // not back by then are lost.
  bool Ended(int64_t now_us);
  // Every agent is back: the wait is over now.
  void Finish() { phase_ = Phase::kNone; }

  Phase phase() const { return phase_; }
  // A closed agent connection is waited for (kCutOff, kHealing).
  bool waiting() const { return phase_ != Phase::kNone; }
  // Since when vigild heard no agent (the start of the cut-off or stall).
  int64_t since_us() const { return since_us_; }

 private:
  int64_t heal_window_us_, give_up_us_;
  Phase phase_ = Phase::kNone;
  int64_t since_us_ = 0, deadline_us_ = 0;
};

}  // namespace vigil::coordinator
