// vigild's registration path: a Hello (its proof of the job's token, the
// protocol version, its role; an agent's host: a host vigild knows again, a spare, or one of a
// run taken over), its HostReady (the storage check: it sees the checkpoint
// directory and writes the log directory), a refusal recorded, and the end
// of a takeover once every host of the run came back or was given up on.
#include <nlohmann/json.hpp>

#include "coordinator/coordinator.h"

#include "common/util.h"

namespace vigil::coordinator {

using nlohmann::json;

void Coordinator::OnHello(const TcpConnection::Ptr& conn, const wire::Hello& hello) {
  auto& entry = connections_[conn->id()];
  // `reason`: it failed to authenticate (counted, and recorded at most once
  // a minute per source, admission.h); else it was authenticated.
  auto reject = [&](const std::string& why, const char* reason = nullptr) {
    if (reason) {
      RecordAuthFailureFrom(entry.source, reason, why);
      admission_.Closed(conn->id());  // counted once, here
    } else {
      log_->warn("rejecting connection {}: {}", conn->id(), why);
    }
    entry.refused = true;
    conn->Send(ServerHandshake::Refuse(why));
    conn->CloseAfterWrites(Status::FailedPrecondition(why));
  };
  // The proof covers this connection's nonce: a Hello recorded on another
  // connection (or made without the token) fails here, and so does a
  // second Hello on the connection (pipelined behind a refusal).
  if (auto verdict = entry.handshake.Check(hello); !verdict.ok())
    return reject(verdict.message, verdict.reason);
  if (Status room = admission_.Authenticated(conn->id(), hello.role() == wire::Hello::CONTROL,
                                             clock_.SteadyMicros());
      !room.ok())
    return reject(room.message(), auth_reason::kOverCapacity);
  ResumeAcceptingIfRoom();  // a handshake done: room for the next
  metrics_.SetConnections(admission_.handshakes(), admission_.authenticated());
  // Authenticated: frames as large as the job's own processes send.
  conn->set_max_frame_bytes(kDefaultMaxFrameBytes);
  if (hello.role() == wire::Hello::STORE_CLIENT || hello.role() == wire::Hello::CONTROL) {
    entry.role = hello.role() == wire::Hello::CONTROL ? Role::kControl : Role::kStoreClient;
    conn->Send(entry.handshake.Accept());
    return;
  }
  if (hello.role() != wire::Hello::AGENT) return reject("unknown role");
  // The same agent process again (it lost this vigild, or this vigild it):
  // back in its place, nothing torn down.
  if (hello.reconnecting()) {
    if (const int same = registry_.FindProcess(hello.host(), hello.pid()); same >= 0)
      return Reattach(conn, same, hello);
  }
  auto index =
      registry_.Register(hello.host(), static_cast<int>(hello.slots()), hello.pid(),
                         spec_.world.ranks_per_host, spec_.world.hosts + spec_.world.spares, conn);
  if (!index.ok()) return reject(index.status().message());
  entry.role = Role::kAgent;
  SendOkAck(conn, AgentAck(index.value()));
  // It counts once it has checked its storage (HostReady).
  checking_[index.value()] = {hello, std::chrono::steady_clock::now()};
}

void Coordinator::SendOkAck(const TcpConnection::Ptr& conn, wire::Envelope reply) {
  reply.mutable_hello_ack()->set_server_proof(connections_[conn->id()].handshake.server_proof());
  conn->Send(reply);
}

wire::Envelope Coordinator::AgentAck(int agent) const {
  wire::Envelope reply;
  auto* ack = reply.mutable_hello_ack();
  ack->set_ok(true);
  ack->set_agent_index(static_cast<uint32_t>(agent));
  ack->set_heartbeat_interval_ms(static_cast<uint32_t>(spec_.limits.heartbeat_interval_ms));
  ack->set_kill_grace_ms(static_cast<uint32_t>(spec_.limits.kill_grace_ms));
  ack->set_exit_wait_ms(static_cast<uint32_t>(spec_.limits.agent_exit_wait_ms));
  ack->set_stack_dump_timeout_ms(static_cast<uint32_t>(spec_.detection.stack_dump_timeout_ms));
  ack->set_epoch(registry_.epoch());
  ack->set_heartbeat_timeout_ms(static_cast<uint32_t>(spec_.limits.heartbeat_timeout_ms));
  ack->set_coordinator_grace_ms(static_cast<uint32_t>(spec_.limits.coordinator_grace_ms));
  ack->set_handshake_timeout_ms(static_cast<uint32_t>(spec_.security.handshake_timeout_ms));
  ack->set_checkpoint_dir(checkpoint_dir_);
  ack->set_log_dir(options_.workdir + "/logs");
  ack->set_storage_id(storage_id_);
  reply.set_epoch(registry_.epoch());
  return reply;
}

void Coordinator::OnHostReady(int agent, const wire::HostReady& ready) {
  auto it = checking_.find(agent);
  if (it == checking_.end()) return;
  const wire::Hello hello = std::move(it->second.hello);
  checking_.erase(it);
  if (!ready.ok()) return RefuseAgent(agent, ready.problem());
  registry_.agents()[static_cast<size_t>(agent)].ready = true;
  heartbeats_.Beat(agent, clock_.SteadyMicros());
  metrics_.agents_connected.Set(registry_.live_count());
  metrics_.HostRegistered(hello.host());
  log_->info("agent {} (pid {}) registered as agent {} ({} slots; its ranks bind {})", hello.host(),
             hello.pid(), agent, hello.slots(), ready.bind_address());
  if (hello.reconnecting() || hello.live_ranks_size() > 0) {
    log_->info("agent {} registered again: {} live rank(s), {} exit(s) kept, {} message(s) dropped",
               hello.host(), hello.live_ranks_size(), hello.exited_ranks_size(),
               hello.dropped_messages());
  }
  if (controller_->taking_over()) {
    takeover_hellos_[agent] = hello;
    for (const auto& host : controller_->takeover_hosts()) {
      if (registry_.FindHost(host) < 0) return;
    }
    FinishTakeover();
  } else if (agents_complete_) {
    if (hello.live_ranks_size() > 0) {
      // It runs ranks this vigild never launched (a vigild before it did):
      // not part of any world here, they are torn down.
      TearDownLiveRanks(agent, hello, -1);
    }
    controller_->OnAgentJoined(agent);
  } else if (registry_.live_count() == spec_.world.hosts) {
    // The first `hosts` agents take the host slots; later ones wait as spares.
    agents_complete_ = true;
    controller_->OnAllAgentsRegistered();
  }
}

void Coordinator::TearDownLiveRanks(int agent, const wire::Hello& hello, int64_t keep) {
  std::set<uint64_t> generations;
  for (const auto& r : hello.live_ranks()) {
    if (static_cast<int64_t>(r.generation()) != keep) generations.insert(r.generation());
  }
  for (uint64_t g : generations) {
    log_->warn("{} still runs ranks of generation {}: torn down", hello.host(), g);
    wire::Envelope kill;
    kill.mutable_kill_generation()->set_generation(g);
    kill.mutable_kill_generation()->set_grace_ms(static_cast<uint32_t>(spec_.limits.kill_grace_ms));
    agent_link_->SendToAgent(agent, kill);
  }
}

void Coordinator::RefuseAgent(int agent, const std::string& problem) {
  auto& a = registry_.agents()[static_cast<size_t>(agent)];
  checking_.erase(agent);
  a.lost = true;  // never part of the job: no host_lost, no index reused
  log_->error("host {} refused: {}", a.host, problem);
  controller_->RecordEvent(kind::kHostRefused, json{{"problem", problem}}, a.host);
  metrics_.HostRefused(a.host);
  if (a.conn) a.conn->CloseAfterWrites(Status::FailedPrecondition(problem));
}

void Coordinator::FinishTakeover() {
  std::vector<int> slots, absent;
  for (const auto& host : controller_->takeover_hosts()) {
    int index = registry_.FindHost(host);
    if (index < 0) {
      index = registry_.AddAbsent(host);
      absent.push_back(index);
    }
    slots.push_back(index);
  }
  const auto hellos = std::move(takeover_hellos_);
  takeover_hellos_.clear();
  agents_complete_ = true;
  controller_->Adopt(slots, hellos);
  // What the agents sent meanwhile, in order, now that it has a generation to go to.
  auto held = std::move(held_);
  held_.clear();
  for (const auto& [agent, env] : held) {
    if (registry_.agent_connected(agent)) OnAgentMessage(agent, env);
  }
  for (int index : absent) {
    MarkAgentLost(index, "did not register again within limits.heartbeat_timeout_ms (" +
                             std::to_string(spec_.limits.heartbeat_timeout_ms) +
                             " ms) of vigild's restart");
  }
}

}  // namespace vigil::coordinator
