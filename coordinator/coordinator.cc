#include "coordinator/coordinator.h"

#include <filesystem>

#include <nlohmann/json.hpp>

#include "common/fs.h"
#include "common/util.h"
#include "logbook/logbook_query.h"

namespace vigil::coordinator {

using tcp = boost::asio::ip::tcp;
using nlohmann::json;

namespace {

// Compares tokens in time independent of where they differ.
bool TokensEqual(const std::string& a, const std::string& b) {
  if (a.size() != b.size()) return false;
  unsigned char diff = 0;
  for (size_t i = 0; i < a.size(); ++i) diff |= static_cast<unsigned char>(a[i] ^ b[i]);
  return diff == 0;
}

}  // namespace

Result<int> AgentRegistry::Register(const std::string& host, int slots, int needed_slots,
                                    int max_agents, TcpConnection::Ptr conn) {
  int live = 0;
  for (const auto& a : agents_) {
    if (a.lost) continue;  // a lost host may come back (rebooted): as a new agent
    if (a.host == host)
      return Status::FailedPrecondition("host " + host + " is already registered");
    ++live;
  }
  if (live >= max_agents) {
    return Status::FailedPrecondition("the job needs " + std::to_string(max_agents) +
                                      " hosts, spares included; all are registered");
  }
  if (slots < needed_slots) {
    return Status::FailedPrecondition("host " + host + " offers " + std::to_string(slots) +
                                      " slots, the job needs " + std::to_string(needed_slots));
  }
  agents_.push_back({host, slots, std::move(conn), false});
  return static_cast<int>(agents_.size()) - 1;
}

int AgentRegistry::live_count() const {
  int n = 0;
  for (const auto& a : agents_) n += a.lost ? 0 : 1;
  return n;
}

bool AgentRegistry::agent_connected(int agent) const {
  return agent >= 0 && agent < static_cast<int>(agents_.size()) && !agents_[agent].lost;
}

std::string AgentRegistry::agent_host(int agent) const {
  return agent >= 0 && agent < static_cast<int>(agents_.size()) ? agents_[agent].host : "";
}

void AgentRegistry::SendToAgent(int agent, const wire::Envelope& env) {
  if (agent < 0 || agent >= static_cast<int>(agents_.size())) return;
  if (!agents_[agent].conn || agents_[agent].lost) return;
  wire::Envelope stamped = env;
  stamped.set_epoch(epoch_);
  agents_[agent].conn->Send(stamped);
}

int AgentRegistry::FindHost(const std::string& host) const {
  for (size_t i = 0; i < agents_.size(); ++i) {
    if (!agents_[i].lost && agents_[i].host == host) return static_cast<int>(i);
  }
  return -1;
}

int AgentRegistry::AddAbsent(const std::string& host) {
  agents_.push_back({host, 0, nullptr, false});
  return static_cast<int>(agents_.size()) - 1;
}

AgentRegistry::Agent* AgentRegistry::Find(uint64_t connection_id, int* index) {
  for (size_t i = 0; i < agents_.size(); ++i) {
    if (agents_[i].conn && agents_[i].conn->id() == connection_id) {
      *index = static_cast<int>(i);
      return &agents_[i];
    }
  }
  return nullptr;
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

Coordinator::Coordinator(boost::asio::io_context& io, JobSpec spec, CoordinatorOptions options,
                         std::unique_ptr<Logbook> logbook, int64_t run_id,
                         std::optional<RunTakeover> takeover)
    : io_(io),
      spec_(std::move(spec)),
      options_(std::move(options)),
      logbook_(std::move(logbook)),
      run_id_(run_id),
      log_(MakeLogger("vigild")),
      acceptor_(io),
      tick_(io),
      shutdown_timer_(io),
      clock_(io),
      heartbeats_(spec_.limits.heartbeat_timeout_ms),
      started_(std::chrono::steady_clock::now()),
      takeover_(std::move(takeover)) {}

std::string Coordinator::rpc_address() const {
  auto ep = acceptor_.local_endpoint();
  return ep.address().to_string() + ":" + std::to_string(ep.port());
}

std::string Coordinator::http_address() const {
  auto ep = http_->endpoint();
  return ep.address().to_string() + ":" + std::to_string(ep.port());
}

Coordinator::~Coordinator() {
  // Orders: the writer runs what waited for its commits (deletions are
  // handed to the controller's file thread); the controller finishes those
  // and records them through the writer, which is destroyed after, committing.
  if (writer_) writer_->Flush();
  if (controller_) controller_->FinishFileWork();
}

Status Coordinator::Start() {
  // This start's coordinator epoch, recorded before anything is ordered.
  auto epoch = logbook_->BeginEpoch(run_id_, NowMicros(), ::getpid(), HostName());
  if (!epoch.ok()) return epoch.status();
  registry_.set_epoch(static_cast<uint64_t>(epoch.value()));
  metrics_.coordinator_epoch.Set(static_cast<double>(epoch.value()));
  boost::system::error_code ec;
  const auto addr = boost::asio::ip::make_address(options_.listen_host, ec);
  if (ec) return Status::InvalidArgument("bad listen address " + options_.listen_host);
  // A vigild taking a run over listens where the one before it did, when
  // it can: agents that know only that address find it there.
  int previous_rpc = 0, previous_http = 0;
  if (takeover_) {
    if (auto text = ReadFile(options_.workdir + "/vigild.addr"); text.ok()) {
      auto j = json::parse(text.value(), nullptr, false);
      auto port_of = [&](const char* key) {
        if (!j.is_object() || !j.contains(key) || !j[key].is_string()) return 0;
        const std::string a = j[key];
        const auto colon = a.rfind(':');
        return colon == std::string::npos ? 0 : std::atoi(a.c_str() + colon + 1);
      };
      previous_rpc = port_of("rpc");
      previous_http = port_of("http");
    }
  }
  VIGIL_RETURN_IF_ERROR(Listen(addr, options_.listen_port, previous_rpc));
  auto serve = [&](int port) {
    try {
      http_ =
          std::make_unique<HttpServer>(io_, tcp::endpoint(addr, static_cast<unsigned short>(port)));
      return Status::Ok();
    } catch (const std::exception& e) {
      return Status::IoError(std::string("cannot serve HTTP: ") + e.what());
    }
  };
  if (options_.http_port != 0 || previous_http == 0 || !serve(previous_http).ok())
    VIGIL_RETURN_IF_ERROR(serve(options_.http_port));
  http_->Route("/metrics", [this](const std::string&) {
    return HttpResponse{200, "text/plain; version=0.0.4; charset=utf-8", metrics_.Render()};
  });
  http_->Route("/api/v1/status", [this](const std::string&) { return StatusJson(); });
  // The logbook's queries over HTTP, as `vigil logbook ls` has them.
  // They read only the logbook (its own read connection), off the loop.
  http_->RouteOffLoop("/api/v1/events",
                      [this](const std::string& query) { return EventsJson(query); });
  http_->RouteOffLoop("/api/v1/runs", [this](const std::string&) { return RunsJson(); });
  http_->Route("/api/v1/hosts", [this](const std::string&) {
    return HttpResponse{200, "application/json", controller_->Hosts().dump() + "\n"};
  });
  http_->Start();

  // One folder per run: a new run in the same work directory never
  // overwrites checkpoints an earlier run's logbook rows point to.
  const std::string checkpoint_dir =
      (spec_.checkpoint.dir.empty() ? options_.workdir + "/checkpoints" : spec_.checkpoint.dir) +
      "/run-" + std::to_string(run_id_);
  VIGIL_RETURN_IF_ERROR(MakeDirs(checkpoint_dir));
  VIGIL_RETURN_IF_ERROR(MakeDirs(options_.workdir + "/logs"));
  JobPaths paths{options_.workdir, options_.job_file, checkpoint_dir, options_.workdir + "/logs",
                 rpc_address()};
  auto playbook = LoadPlaybook(spec_.playbook);
  if (!playbook.ok()) return playbook.status();
  auto writer = LogbookWriter::Open(
      options_.workdir + "/logbook.sqlite",
      [log = log_](const Status& st) { log->error("logbook write failed: {}", st.ToString()); });
  if (!writer.ok()) return writer.status();
  writer_ = std::move(writer.value());
  // A newer vigild that takes the run over (this one stopped, or cut off)
  // fences this one out of the logbook, and so out of the job.
  writer_->Fence(epoch.value(), [this](int64_t newer) {
    boost::asio::post(io_, [this, newer] { OnFenced(newer); });
  });
  agent_link_ = std::make_unique<WriteAheadAgentLink>(io_, &registry_, writer_.get());
  journal_ = std::make_unique<LogbookJournal>(writer_.get());
  ControllerSeams seams;
  seams.clock = &clock_;
  seams.journal = journal_.get();
  seams.agents = agent_link_.get();
  seams.store = &store_;
  seams.metrics = &metrics_;
  seams.storage = checkpoint::Storage::Default();
  seams.self_fault = FaultThisProcess;
  seams.crash_points = options_.crash_points;
  controller_ = std::make_unique<JobController>(io_, spec_, paths, run_id_, seams, options_.chaos,
                                                playbook.value());
  controller_->on_terminal = [this] { Shutdown(); };
  if (takeover_) {
    controller_->Restore(*takeover_);
    // Nothing was ever launched: the run starts as a fresh one would.
    if (controller_->takeover_hosts().empty()) takeover_.reset();
  }

  json addr_file{
      {"rpc", rpc_address()}, {"http", http_address()}, {"pid", ::getpid()}, {"run_id", run_id_}};
  VIGIL_RETURN_IF_ERROR(
      WriteFileAtomic(options_.workdir + "/vigild.addr", addr_file.dump() + "\n"));
  log_->info("job {} run {} (coordinator epoch {}): rpc {} http {}{}", spec_.name, run_id_,
             registry_.epoch(), rpc_address(), http_address(),
             takeover_ ? "; taking the run over: waiting for its hosts to register again" : "");
  Accept();
  Tick();
  return Status::Ok();
}

Status Coordinator::Listen(boost::asio::ip::address addr, int port, int previous_port) {
  auto bind = [&](int p) {
    boost::system::error_code ec;
    if (acceptor_.is_open()) acceptor_.close(ec);
    tcp::endpoint ep(addr, static_cast<unsigned short>(p));
    acceptor_.open(ep.protocol(), ec);
    if (!ec) acceptor_.set_option(tcp::acceptor::reuse_address(true), ec);
    if (!ec) acceptor_.bind(ep, ec);
    if (!ec) acceptor_.listen(boost::asio::socket_base::max_listen_connections, ec);
    return ec;
  };
  if (port == 0 && previous_port > 0) {
    const auto ec = bind(previous_port);
    if (!ec) return Status::Ok();
    log_->warn("cannot listen on port {} again ({}); agents find the new port in vigild.addr",
               previous_port, ec.message());
  }
  if (const auto ec = bind(port))
    return Status::IoError("cannot listen on " + options_.listen_host + ": " + ec.message());
  return Status::Ok();
}

void Coordinator::Accept() {
  acceptor_.async_accept([this](boost::system::error_code ec, tcp::socket socket) {
    if (ec == boost::asio::error::operation_aborted || !acceptor_.is_open()) return;
    if (!ec) {
      boost::system::error_code ignored;
      socket.set_option(tcp::no_delay(true), ignored);
      auto conn = std::make_shared<TcpConnection>(std::move(socket), next_connection_id_++);
      connections_[conn->id()] = {Role::kUnknown, conn};
      conn->Start(
          [this](const TcpConnection::Ptr& c, wire::Envelope env) { OnMessage(c, std::move(env)); },
          [this](const TcpConnection::Ptr& c, const Status& why) { OnClose(c, why); });
    }
    Accept();
  });
}

void Coordinator::OnHello(const TcpConnection::Ptr& conn, const wire::Hello& hello) {
  wire::Envelope reply;
  auto* ack = reply.mutable_hello_ack();
  auto reject = [&](const std::string& why) {
    log_->warn("rejecting connection {}: {}", conn->id(), why);
    ack->set_ok(false);
    ack->set_error(why);
    conn->Send(reply);
    conn->CloseAfterWrites(Status::FailedPrecondition(why));
  };
  if (hello.protocol_version() != kProtocolVersion) {
    return reject("protocol version " + std::to_string(hello.protocol_version()) +
                  " != " + std::to_string(kProtocolVersion));
  }
  if (!TokensEqual(hello.auth_token(), options_.token)) return reject("bad auth token");
  auto& entry = connections_[conn->id()];
  if (hello.role() == wire::Hello::STORE_CLIENT) {
    entry.first = Role::kStoreClient;
    ack->set_ok(true);
    conn->Send(reply);
    return;
  }
  if (hello.role() == wire::Hello::CONTROL) {
    entry.first = Role::kControl;
    ack->set_ok(true);
    conn->Send(reply);
    return;
  }
  if (hello.role() != wire::Hello::AGENT) return reject("unknown role");
  auto index =
      registry_.Register(hello.host(), static_cast<int>(hello.slots()), spec_.world.ranks_per_host,
                         spec_.world.hosts + spec_.world.spares, conn);
  if (!index.ok()) return reject(index.status().message());
  entry.first = Role::kAgent;
  heartbeats_.Beat(index.value(), clock_.SteadyMicros());
  ack->set_ok(true);
  ack->set_agent_index(static_cast<uint32_t>(index.value()));
  ack->set_heartbeat_interval_ms(static_cast<uint32_t>(spec_.limits.heartbeat_interval_ms));
  ack->set_kill_grace_ms(static_cast<uint32_t>(spec_.limits.kill_grace_ms));
  ack->set_exit_wait_ms(static_cast<uint32_t>(spec_.limits.agent_exit_wait_ms));
  ack->set_stack_dump_timeout_ms(static_cast<uint32_t>(spec_.detection.stack_dump_timeout_ms));
  ack->set_epoch(registry_.epoch());
  ack->set_heartbeat_timeout_ms(static_cast<uint32_t>(spec_.limits.heartbeat_timeout_ms));
  ack->set_coordinator_grace_ms(static_cast<uint32_t>(spec_.limits.coordinator_grace_ms));
  reply.set_epoch(registry_.epoch());
  conn->Send(reply);
  metrics_.agents_connected.Set(registry_.live_count());
  metrics_.HostRegistered(hello.host());
  log_->info("agent {} (pid {}) registered as agent {} ({} slots)", hello.host(), hello.pid(),
             index.value(), hello.slots());
  if (hello.reconnecting() || hello.live_ranks_size() > 0) {
    log_->info("agent {} registered again: {} live rank(s), {} exit(s) kept, {} message(s) dropped",
               hello.host(), hello.live_ranks_size(), hello.exited_ranks_size(),
               hello.dropped_messages());
  }
  if (controller_->taking_over()) {
    takeover_hellos_[index.value()] = hello;
    for (const auto& host : controller_->takeover_hosts()) {
      if (registry_.FindHost(host) < 0) return;
    }
    FinishTakeover();
  } else if (agents_complete_) {
    if (hello.live_ranks_size() > 0) {
      // It runs ranks this vigild never launched (a vigild before it did):
      // not part of any world here, they are torn down.
      std::set<uint64_t> generations;
      for (const auto& r : hello.live_ranks()) generations.insert(r.generation());
      for (uint64_t g : generations) {
        wire::Envelope kill;
        kill.mutable_kill_generation()->set_generation(g);
        kill.mutable_kill_generation()->set_grace_ms(
            static_cast<uint32_t>(spec_.limits.kill_grace_ms));
        agent_link_->SendToAgent(index.value(), kill);
      }
    }
    controller_->OnAgentJoined(index.value());
  } else if (registry_.live_count() == spec_.world.hosts) {
    // The first `hosts` agents take the host slots; later ones wait as spares.
    agents_complete_ = true;
    controller_->OnAllAgentsRegistered();
  }
}

void Coordinator::OnMessage(const TcpConnection::Ptr& conn, wire::Envelope env) {
  auto it = connections_.find(conn->id());
  if (it == connections_.end()) return;
  const Role role = it->second.first;
  if (role == Role::kUnknown) {
    if (!env.has_hello())
      return conn->Close(Status::InvalidArgument("first message must be Hello"));
    return OnHello(conn, env.hello());
  }
  if (role == Role::kControl) {
    if (!env.has_control_request())
      return conn->Close(Status::InvalidArgument("control clients send control requests"));
    return OnControl(conn, env.control_request());
  }
  if (role == Role::kStoreClient) {
    if (!env.has_store_request())
      return conn->Close(Status::InvalidArgument("store clients send store requests"));
    std::weak_ptr<TcpConnection> weak = conn;
    store_.Handle(env.store_request(), conn->id(), std::chrono::steady_clock::now(),
                  [weak](const wire::StoreResponse& resp) {
                    if (auto c = weak.lock()) {
                      wire::Envelope out;
                      *out.mutable_store_response() = resp;
                      c->Send(out);
                    }
                  });
    return;
  }
  int agent = -1;
  auto* a = registry_.Find(conn->id(), &agent);
  if (!a) return;
  heartbeats_.Beat(agent, clock_.SteadyMicros());
  if (controller_->taking_over() && !env.has_heartbeat()) {
    // Before the generation is adopted: held, handled in order once it is.
    held_.emplace_back(agent, std::move(env));
    return;
  }
  OnAgentMessage(agent, env);
}

void Coordinator::OnAgentMessage(int agent, const wire::Envelope& env) {
  auto& a = registry_.agents()[static_cast<size_t>(agent)];
  if (env.seq() > 0) handled_seq_[agent] = std::max(handled_seq_[agent], env.seq());
  switch (env.body_case()) {
    case wire::Envelope::kHeartbeat:
      for (const auto& g : env.heartbeat().gpus()) {
        metrics_.SetGpu(a.host,
                        {static_cast<int>(g.gpu()), g.temperature_celsius(), g.slowdown_celsius(),
                         static_cast<double>(g.uncorrected_ecc_errors())});
      }
      break;
    case wire::Envelope::kRankReport:
      controller_->OnRankReport(agent, env.rank_report());
      break;
    case wire::Envelope::kRankExited:
      controller_->OnRankExited(agent, env.rank_exited());
      break;
    case wire::Envelope::kGenerationStopped:
      controller_->OnGenerationStopped(agent, env.generation_stopped().generation());
      break;
    case wire::Envelope::kDiagnosis:
      controller_->OnDiagnosis(agent, env.diagnosis());
      break;
    case wire::Envelope::kGpuFault:
      metrics_.GpuFault(a.host, env.gpu_fault().type(), static_cast<int>(env.gpu_fault().xid()));
      controller_->OnGpuFault(agent, env.gpu_fault());
      break;
    default:
      if (a.conn) a.conn->Close(Status::InvalidArgument("unexpected message from agent"));
  }
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

void Coordinator::OnControl(const TcpConnection::Ptr& conn, const wire::ControlRequest& req) {
  Status st;
  std::string done;
  const std::string actor = req.actor().empty() ? "unknown" : req.actor();
  switch (req.command()) {
    case wire::ControlRequest::RESUME:
      st = controller_->Resume(actor, req.note());
      done = "resumed";
      break;
    case wire::ControlRequest::CHAOS:
      st = controller_->InjectChaos(req.chaos(), actor);
      done = "fault " + req.chaos() + " queued";
      break;
    default:
      st = Status::InvalidArgument("unknown control command");
  }
  wire::Envelope out;
  out.mutable_control_response()->set_ok(st.ok());
  out.mutable_control_response()->set_message(st.ok() ? done : st.message());
  conn->Send(out);
  conn->CloseAfterWrites(Status::Ok());
}

void Coordinator::OnClose(const TcpConnection::Ptr& conn, const Status& why) {
  auto it = connections_.find(conn->id());
  if (it == connections_.end()) return;
  const Role role = it->second.first;
  connections_.erase(it);
  if (role == Role::kStoreClient) store_.DropClient(conn->id());
  if (role != Role::kAgent) {
    if (!why.ok() && why.code() != StatusCode::kUnavailable)
      log_->warn("dropped connection: {}", why.ToString());
    return;
  }
  int agent = -1;
  if (registry_.Find(conn->id(), &agent))
    MarkAgentLost(agent, "connection closed: " + why.message());
}

void Coordinator::MarkAgentLost(int agent, const std::string& why) {
  auto& a = registry_.agents()[agent];
  if (a.lost) return;  // one detection per agent, whichever notices first
  a.lost = true;
  heartbeats_.Forget(agent);
  metrics_.agents_connected.Set(registry_.live_count());
  metrics_.HostLost(a.host);
  controller_->OnAgentLost(agent, why);
  if (a.conn) a.conn->Close(Status::Unavailable(why));  // no-op if it is already closed
}

void Coordinator::Tick() {
  const auto now = std::chrono::steady_clock::now();
  // A loop that stood still (vigild stopped, or starved) heard nobody: the
  // silence is its own, not the agents'. Their heartbeats count from now.
  const auto stood = now - last_tick_;
  if (last_tick_.time_since_epoch().count() > 0 &&
      stood > std::chrono::milliseconds(spec_.limits.heartbeat_timeout_ms / 2)) {
    log_->warn("vigild's event loop stood still for {} ms: agents' heartbeats count from now",
               std::chrono::duration_cast<std::chrono::milliseconds>(stood).count());
    for (int a = 0; a < registry_.agent_count(); ++a) {
      if (registry_.agent_connected(a)) heartbeats_.Beat(a, clock_.SteadyMicros());
    }
  }
  last_tick_ = now;
  store_.Expire(now);
  controller_->OnTick();
  // vigild's own heartbeat: an agent that hears nothing for its timeout
  // counts this vigild as lost (stopped or wedged) and looks for the next.
  // It acks what each agent sent that it has handled and committed: the
  // snapshot of the last heartbeat, committed since (write-ahead).
  if (now - last_heartbeat_sent_ >= std::chrono::milliseconds(spec_.limits.heartbeat_interval_ms)) {
    last_heartbeat_sent_ = now;
    for (int a = 0; a < registry_.agent_count(); ++a) {
      wire::Envelope beat;
      beat.mutable_heartbeat()->set_acked(committed_seq_[a]);
      registry_.SendToAgent(a, beat);
    }
    writer_->AfterCommit([this, handled = handled_seq_] {
      boost::asio::post(io_, [this, handled] {
        for (const auto& [agent, seq] : handled)
          committed_seq_[agent] = std::max(committed_seq_[agent], seq);
      });
    });
  }
  for (int agent : heartbeats_.Silent(clock_.SteadyMicros())) {
    MarkAgentLost(agent,
                  "no heartbeat for " + std::to_string(spec_.limits.heartbeat_timeout_ms) + " ms");
  }
  if (controller_->taking_over() &&
      now - started_ > std::chrono::milliseconds(spec_.limits.heartbeat_timeout_ms)) {
    FinishTakeover();
  }
  if (!agents_complete_ && controller_->state() == JobState::kPending &&
      now - started_ > std::chrono::milliseconds(spec_.limits.agent_wait_ms)) {
    controller_->Stop("only " + std::to_string(registry_.live_count()) + " of " +
                      std::to_string(spec_.world.hosts) + " agents registered within " +
                      std::to_string(spec_.limits.agent_wait_ms) + " ms");
  }
  tick_.expires_after(std::chrono::milliseconds(50));
  tick_.async_wait([this](boost::system::error_code ec) {
    if (!ec) Tick();
  });
}

void Coordinator::OnFenced(int64_t newer) {
  if (fenced_) return;
  fenced_ = true;
  log_->error(
      "coordinator epoch {} has taken run {} over: this vigild (epoch {}) writes and "
      "orders nothing more, and exits",
      newer, run_id_, registry_.epoch());
  CloseAll(Status::Unavailable("fenced"));
}

void Coordinator::CloseAll(const Status& why) {
  boost::system::error_code ec;
  acceptor_.close(ec);
  tick_.cancel();
  http_->Stop();
  // Closing calls OnClose, which erases from connections_: close a copy.
  std::vector<TcpConnection::Ptr> open;
  for (auto& [id, entry] : connections_) open.push_back(entry.second);
  for (auto& c : open) c->Close(why);
  io_.stop();
}

void Coordinator::Shutdown() {
  // Give the goodbyes a moment to flush, then stop accepting and leave the loop.
  shutdown_timer_.expires_after(std::chrono::milliseconds(spec_.limits.shutdown_flush_ms));
  shutdown_timer_.async_wait([this](boost::system::error_code) { CloseAll(Status::Ok()); });
}

HttpResponse Coordinator::EventsJson(const std::string& query) {
  auto filter = ParseEntryQuery(query, NowMicros(), kApiDefaultLast);
  if (!filter.ok()) {
    return {400, "application/json", json{{"error", filter.status().message()}}.dump() + "\n"};
  }
  auto entries = logbook_->Entries(filter.value());
  if (!entries.ok()) {
    return {500, "application/json", json{{"error", entries.status().message()}}.dump() + "\n"};
  }
  json out = json::array();
  for (const auto& e : entries.value()) out.push_back(EntryJson(e));
  return {200, "application/json", out.dump() + "\n"};
}

HttpResponse Coordinator::RunsJson() {
  auto runs = logbook_->Runs();
  if (!runs.ok()) {
    return {500, "application/json", json{{"error", runs.status().message()}}.dump() + "\n"};
  }
  json out = json::array();
  for (const auto& r : runs.value()) {
    json j{{"id", r.id},
           {"name", r.name},
           {"status", r.status},
           {"workdir", r.workdir},
           {"started", FormatTimeMicros(r.started_at_us)},
           {"config_hash", r.config_hash}};
    if (r.ended_at_us) j["ended"] = FormatTimeMicros(*r.ended_at_us);
    if (r.final_step) j["final_step"] = *r.final_step;
    if (r.final_loss) j["final_loss"] = *r.final_loss;
    if (!r.params_digest.empty()) j["params_digest"] = r.params_digest;
    out.push_back(j);
  }
  return {200, "application/json", out.dump() + "\n"};
}

HttpResponse Coordinator::StatusJson() const {
  const auto& p = controller_->progress();
  json j{{"job", spec_.name},
         {"run_id", p.run_id},
         {"state", JobStateName(p.state)},
         {"generation", p.generation},
         {"step", p.step},
         {"total_steps", p.total_steps},
         {"loss", p.loss},
         {"tokens_per_second", p.tokens_per_second},
         {"restarts", p.restarts},
         {"live_ranks", p.live_ranks},
         {"world_size", p.world_size},
         {"message", p.message}};
  return {200, "application/json", j.dump() + "\n"};
}

}  // namespace vigil::coordinator
