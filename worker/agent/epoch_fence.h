// The agent's fence against a stale coordinator. Every vigild start takes a
// new coordinator epoch (the logbook's coordinator_epochs, larger than any
// before) and stamps it on every message it sends its agents
// (Envelope.epoch). The agent remembers the newest epoch it has seen and
// obeys no order of an older one: once a newer vigild has spoken to it, an
// older one (woken from a SIGSTOP, or cut off and come back) cannot
// command its ranks. An order without an epoch (0) is an old epoch too,
// once any is known.
//
// Pure: the agent's event loop owns it.
#pragma once

#include <cstdint>

namespace vigil::agent {

class EpochFence {
 public:
  // True if a message of `epoch` may be obeyed (it is the newest epoch
  // seen, or newer: then it is the newest). False for an older one, which
  // is counted.
  bool Admit(uint64_t epoch) {
    if (epoch < newest_ || (epoch == 0 && newest_ > 0)) {
      ++refused_;
      return false;
    }
    newest_ = epoch;
    return true;
  }
  uint64_t newest() const { return newest_; }
  uint64_t refused() const { return refused_; }

 private:
  uint64_t newest_ = 0;
  uint64_t refused_ = 0;
};

}  // namespace vigil::agent
