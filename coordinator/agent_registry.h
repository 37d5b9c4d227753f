// The agents vigild knows, and the write-ahead way orders reach them.
#pragma once

#include <utility>

#include <boost/asio.hpp>
#include <string>
#include <unordered_map>
#include <vector>

#include "common/asio_connection.h"
#include "common/status.h"
#include "coordinator/agent_link.h"
#include "logbook/logbook_writer.h"

namespace vigil::coordinator {

// Registered agents, by index in registration order; a lost agent keeps its
// index (the logbook names it) and a host that comes back gets a new one.
class AgentRegistry : public AgentLink {
 public:
  struct Agent {
    std::string host;
    int slots = 0;
    uint32_t pid = 0;         // the agent process (a reconnection of the same one keeps its place)
    TcpConnection::Ptr conn;  // null while it is away (vigild cut off: isolation.h)
    bool lost = false;
    // Its storage checked (HostReady): only then is it part of the job.
    bool ready = false;
    // Orders for it while it is away (no connection), sent when it is back.
    std::vector<wire::Envelope> queued;
  };
  // Orders kept for an agent that is away, at most.
  static constexpr size_t kMaxQueuedOrders = 10000;
  // Returns the index, or an error if the job needs no more hosts.
  Result<int> Register(const std::string& host, int slots, uint32_t pid, int needed_slots,
                       int max_agents, TcpConnection::Ptr conn);
  // The live, registered agent that is process `pid` of `host`, or -1.
  int FindProcess(const std::string& host, uint32_t pid) const;
  int agent_count() const override { return static_cast<int>(agents_.size()); }
  bool agent_connected(int agent) const override;
  int live_count() const;
  std::string agent_host(int agent) const override;
  // Stamped with this vigild's coordinator epoch (Envelope.epoch). To an
  // agent that is away (vigild cut off), kept until Attach.
  void SendToAgent(int agent, const wire::Envelope& env) override;
  // The agent is back on `conn`: what was kept for it follows at once.
  void Attach(int agent, TcpConnection::Ptr conn);
  Agent* Find(uint64_t connection_id, int* index);
  // A live agent of `host`, or -1.
  int FindHost(const std::string& host) const;
  // A host of a run taken over that never registered again: an index with
  // no connection, reported lost next.
  int AddAbsent(const std::string& host);
  std::vector<Agent>& agents() { return agents_; }
  void set_epoch(uint64_t epoch) { epoch_ = epoch; }
  uint64_t epoch() const { return epoch_; }

 private:
  std::vector<Agent> agents_;
  // Indexes: a connection's agent (checked against the agent's connection
  // now), and each host's agents in registration order (a host that came
  // back has a few; the flags are read where they live, in agents_).
  std::unordered_map<uint64_t, int> by_connection_;
  std::unordered_map<std::string, std::vector<int>> by_host_;
  uint64_t epoch_ = 0;
};

// The agents as the job controller sees them, write-ahead: an order leaves
// for an agent only once every logbook write queued before it is committed,
// so the logbook holds every decision before it is carried out. Orders keep
// their order; with nothing waiting on the logbook they leave at once.
class WriteAheadAgentLink : public AgentLink {
 public:
  WriteAheadAgentLink(boost::asio::io_context& io, AgentLink* agents, LogbookWriter* logbook)
      : io_(io), agents_(agents), logbook_(logbook) {}
  int agent_count() const override { return agents_->agent_count(); }
  bool agent_connected(int agent) const override { return agents_->agent_connected(agent); }
  std::string agent_host(int agent) const override { return agents_->agent_host(agent); }
  void SendToAgent(int agent, const wire::Envelope& env) override;

 private:
  boost::asio::io_context& io_;
  AgentLink* agents_;
  LogbookWriter* logbook_;
  int waiting_ = 0;  // orders waiting for a commit (event loop only)
};

}  // namespace vigil::coordinator
