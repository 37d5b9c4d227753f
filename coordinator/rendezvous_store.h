// The rendezvous store trainer ranks bootstrap Gloo through (the role
// torch's TCPStore plays): set / get / wait / add over string keys.
// GET and WAIT park until their keys exist or their deadline passes; the
// caller drives deadlines with Expire(now), so this class does no I/O and no
// timing of its own and is tested with a hand-set clock.
//
// Keys are namespaced per generation by the clients ("gen-N/..."); the
// coordinator erases a finished generation's keys with ErasePrefix.
// Not thread-safe: owned by vigild's event loop.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <list>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "common/vigil.pb.h"

namespace vigil::coordinator {

class RendezvousStore {
 public:
  using Clock = std::chrono::steady_clock;
  using Reply = std::function<void(const wire::StoreResponse&)>;

  // Answers `req` through `reply`, now or later (a parked GET/WAIT). `client`
  // identifies the connection so its parked requests can be dropped.
  void Handle(const wire::StoreRequest& req, uint64_t client, Clock::time_point now, Reply reply);
  // Fails parked requests whose deadline has passed with timed_out = true.
  // Returns the earliest deadline still pending.
  std::optional<Clock::time_point> Expire(Clock::time_point now);
  void DropClient(uint64_t client);
  void ErasePrefix(const std::string& prefix);

  size_t keys() const { return data_.size(); }
  size_t parked() const { return waiters_.size(); }

 private:
  struct Waiter {
    uint64_t client;
    wire::StoreRequest req;
    Clock::time_point deadline;
    Reply reply;
  };
  bool Ready(const wire::StoreRequest& req) const;
  wire::StoreResponse Answer(const wire::StoreRequest& req) const;
  void WakeReady();

  std::map<std::string, std::string> data_;
  std::list<Waiter> waiters_;
};

}  // namespace vigil::coordinator
