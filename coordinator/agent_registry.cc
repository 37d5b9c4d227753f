#include "coordinator/agent_registry.h"

namespace vigil::coordinator {

Result<int> AgentRegistry::Register(const std::string& host, int slots, uint32_t pid,
                                    int needed_slots, int max_agents, TcpConnection::Ptr conn) {
  // A lost host may come back (rebooted): as a new agent.
  if (auto same = by_host_.find(host); same != by_host_.end()) {
    for (int i : same->second)
      if (!agents_[static_cast<size_t>(i)].lost)
        return Status::FailedPrecondition("host " + host + " is already registered");
  }
  int live = 0;
  for (const auto& a : agents_) live += a.lost ? 0 : 1;
  if (live >= max_agents) {
    return Status::FailedPrecondition("the job needs " + std::to_string(max_agents) +
                                      " hosts, spares included; all are registered");
  }
  if (slots < needed_slots) {
    return Status::FailedPrecondition("host " + host + " offers " + std::to_string(slots) +
                                      " slots, the job needs " + std::to_string(needed_slots));
  }
  const int index = static_cast<int>(agents_.size());
  if (conn) by_connection_[conn->id()] = index;
  by_host_[host].push_back(index);
  agents_.push_back({host, slots, pid, std::move(conn), false, false, {}});
  return index;
}

int AgentRegistry::live_count() const {
  int n = 0;
  for (const auto& a : agents_) n += a.lost || !a.ready ? 0 : 1;
  return n;
}

bool AgentRegistry::agent_connected(int agent) const {
  return agent >= 0 && agent < static_cast<int>(agents_.size()) && !agents_[agent].lost &&
         agents_[agent].ready;
}

std::string AgentRegistry::agent_host(int agent) const {
  return agent >= 0 && agent < static_cast<int>(agents_.size()) ? agents_[agent].host : "";
}

void AgentRegistry::SendToAgent(int agent, const wire::Envelope& env) {
  if (agent < 0 || agent >= static_cast<int>(agents_.size())) return;
  auto& a = agents_[static_cast<size_t>(agent)];
  if (a.lost || !a.ready) return;
  wire::Envelope stamped = env;
  stamped.set_epoch(epoch_);
  if (a.conn) return a.conn->Send(stamped);
  if (!env.has_heartbeat() && a.queued.size() < kMaxQueuedOrders) a.queued.push_back(stamped);
}

int AgentRegistry::FindHost(const std::string& host) const {
  auto it = by_host_.find(host);
  if (it == by_host_.end()) return -1;
  for (int i : it->second) {
    const Agent& a = agents_[static_cast<size_t>(i)];
    if (!a.lost && a.ready) return i;
  }
  return -1;
}

void AgentRegistry::Attach(int agent, TcpConnection::Ptr conn) {
  auto& a = agents_[static_cast<size_t>(agent)];
  if (conn) by_connection_[conn->id()] = agent;
  a.conn = std::move(conn);
  for (const auto& env : a.queued) a.conn->Send(env);
  a.queued.clear();
}

int AgentRegistry::FindProcess(const std::string& host, uint32_t pid) const {
  const int index = FindHost(host);
  return index >= 0 && pid != 0 && agents_[static_cast<size_t>(index)].pid == pid ? index : -1;
}

int AgentRegistry::AddAbsent(const std::string& host) {
  by_host_[host].push_back(static_cast<int>(agents_.size()));
  agents_.push_back({host, 0, 0, nullptr, false, true, {}});
  return static_cast<int>(agents_.size()) - 1;
}

AgentRegistry::Agent* AgentRegistry::Find(uint64_t connection_id, int* index) {
  auto it = by_connection_.find(connection_id);
  if (it == by_connection_.end()) return nullptr;
  Agent& a = agents_[static_cast<size_t>(it->second)];
  // The agent may have moved to another connection since (Attach).
  if (!a.conn || a.conn->id() != connection_id) {
    by_connection_.erase(it);
    return nullptr;
  }
  *index = it->second;
  return &a;
}

void WriteAheadAgentLink::SendToAgent(int agent, const wire::Envelope& env) {
  if (logbook_->fenced()) return;  // a newer vigild has the run: no order of this one's leaves
  if (waiting_ == 0 && logbook_->Idle()) return agents_->SendToAgent(agent, env);
  ++waiting_;
  logbook_->AfterCommit([this, &io = io_, agent, env] {
    boost::asio::post(io, [this, agent, env] {
      --waiting_;
      agents_->SendToAgent(agent, env);
    });
  });
}

}  // namespace vigil::coordinator
