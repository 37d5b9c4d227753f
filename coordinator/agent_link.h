// How vigild's logic reaches the agents: who they are, whether each is
// connected, and one way to send each an order. The coordinator's registry
// implements it over TCP (write-ahead: an order leaves only once the
// logbook holds the decision); tests use a double that records the orders.
#pragma once

#include <string>

#include "common/vigil.pb.h"

namespace vigil::coordinator {

class AgentLink {
 public:
  virtual ~AgentLink() = default;
  // Agents by index in registration order; a lost one keeps its index and a
  // host that comes back gets a new one.
  virtual int agent_count() const = 0;
  virtual bool agent_connected(int agent) const = 0;
  virtual std::string agent_host(int agent) const = 0;
  virtual void SendToAgent(int agent, const wire::Envelope& env) = 0;
};

}  // namespace vigil::coordinator
