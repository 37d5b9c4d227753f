// A gloo::rendezvous::Store served by vigild: ranks bootstrap Gloo's TCP
// mesh through it. Gloo's interface reports failure by exception, so every
// error (timeout, lost connection) is thrown as gloo::IoException naming
// the key; nothing here waits past its timeout.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include <gloo/rendezvous/store.h>

#include "common/framed_socket.h"

namespace vigil::trainer {

class CoordinatorStore : public gloo::rendezvous::Store {
 public:
  CoordinatorStore(FramedSocket socket, std::chrono::milliseconds timeout)
      : socket_(std::move(socket)), timeout_(timeout) {}

  void set(const std::string& key, const std::vector<char>& data) override;
  std::vector<char> get(const std::string& key) override;
  void wait(const std::vector<std::string>& keys) override { wait(keys, timeout_); }
  void wait(const std::vector<std::string>& keys,
            const std::chrono::milliseconds& timeout) override;
  int64_t add(const std::string& key, int64_t delta);

 private:
  wire::StoreResponse Call(wire::StoreRequest req, std::chrono::milliseconds timeout);
  FramedSocket socket_;
  std::chrono::milliseconds timeout_;
  uint64_t next_id_ = 1;
};

}  // namespace vigil::trainer
