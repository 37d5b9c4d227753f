#include "coordinator/coordinator.h"

#include <filesystem>

#include <nlohmann/json.hpp>

#include "common/fs.h"
#include "common/host_storage.h"
#include "common/net_address.h"
#include "common/util.h"
#include "common/vigild_addr.h"

namespace vigil::coordinator {

using tcp = boost::asio::ip::tcp;
using nlohmann::json;

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
      accept_retry_(io),
      clock_(io),
      heartbeats_(spec_.limits.heartbeat_timeout_ms),
      admission_(spec_.security, spec_.world),
      auth_failures_(kAuthFailureWindowUs),
      started_(std::chrono::steady_clock::now()),
      takeover_(std::move(takeover)),
      // The agents reconnect with backoff (up to a second each try): twice
      // the heartbeat timeout lets them all come back.
      isolation_(2 * int64_t{spec_.limits.heartbeat_timeout_ms} * 1000,
                 int64_t{spec_.limits.coordinator_grace_ms} * 1000) {}

std::string Coordinator::rpc_address() const {
  return advertised_ + ":" + std::to_string(acceptor_.local_endpoint().port());
}

std::string Coordinator::http_address() const {
  return advertised_ + ":" + std::to_string(http_->endpoint().port());
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
  auto advertised = AdvertisedAddress(options_.listen_host, options_.advertise_host);
  if (!advertised.ok()) return advertised.status();
  advertised_ = advertised.value();
  // A vigild taking a run over listens where the one before it did, when
  // it can: agents that know only that address find it there.
  int previous_rpc = 0, previous_http = 0;
  if (takeover_) {
    if (auto previous = ReadVigildAddr(options_.workdir); previous.ok()) {
      previous_rpc = PortOf(previous->rpc);
      previous_http = PortOf(previous->http);
    }
  }
  VIGIL_RETURN_IF_ERROR(Listen(addr, options_.listen_port, previous_rpc));
  VIGIL_RETURN_IF_ERROR(ServeHttp(addr, previous_http));

  // One folder per run: a new run in the same work directory never
  // overwrites checkpoints an earlier run's logbook rows point to.
  const std::string checkpoint_dir =
      (spec_.checkpoint.dir.empty() ? options_.workdir + "/checkpoints" : spec_.checkpoint.dir) +
      "/run-" + std::to_string(run_id_);
  VIGIL_RETURN_IF_ERROR(MakeDirs(checkpoint_dir));
  VIGIL_RETURN_IF_ERROR(MakeDirs(options_.workdir + "/logs"));
  // What every agent must see before it counts as registered (host_storage.h).
  auto storage_id = MarkStorage(checkpoint_dir);
  if (!storage_id.ok()) return storage_id.status();
  storage_id_ = storage_id.value();
  checkpoint_dir_ = checkpoint_dir;
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
  if (!options_.slurm_job_id.empty() && spec_.slurm.drain) {
    drainer_ = std::make_unique<SlurmDrainer>(
        io_, std::chrono::milliseconds(spec_.slurm.drain_timeout_ms));
    controller_->on_cordon = [this](int64_t event, const std::string& host,
                                    const std::string& kind) { DrainInSlurm(event, host, kind); };
  }
  if (takeover_) {
    controller_->Restore(*takeover_);
    // Nothing was ever launched: the run starts as a fresh one would.
    if (controller_->takeover_hosts().empty()) takeover_.reset();
  }

  VIGIL_RETURN_IF_ERROR(WriteVigildAddr(
      options_.workdir, {rpc_address(), http_address(), static_cast<int>(::getpid()), run_id_}));
  log_->info("job {} run {} (coordinator epoch {}): rpc {} http {} (listening on {}){}", spec_.name,
             run_id_, registry_.epoch(), rpc_address(), http_address(), options_.listen_host,
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
    if (ec == boost::asio::error::no_descriptors || ec.value() == ENFILE ||
        ec == boost::asio::error::no_buffer_space || ec == boost::asio::error::no_memory) {
      // Out of descriptors: the connection waits in the backlog, and the
      // loop goes on serving the job rather than spinning on accept.
      log_->warn("cannot accept a connection ({}): trying again in {} ms", ec.message(),
                 kAcceptRetryMs);
      accept_retry_.expires_after(std::chrono::milliseconds(kAcceptRetryMs));
      accept_retry_.async_wait([this](boost::system::error_code e) {
        if (!e) Accept();
      });
      return;
    }
    if (!ec) {
      boost::system::error_code ignored;
      socket.set_option(tcp::no_delay(true), ignored);
      const auto peer = socket.remote_endpoint(ignored);
      // Until its Hello proves the token, a connection may send no more
      // than a Hello's worth.
      auto conn = std::make_shared<TcpConnection>(
          std::move(socket), next_connection_id_++, kPreAuthMaxFrameBytes,
          static_cast<size_t>(spec_.security.max_queued_output_bytes));
      Connection& entry = connections_[conn->id()];
      entry.conn = conn;
      entry.handshake = ServerHandshake(options_.token);
      entry.source = ignored ? "unknown" : peer.address().to_string();
      conn->Start(
          [this](const TcpConnection::Ptr& c, wire::Envelope env) { OnMessage(c, std::move(env)); },
          [this](const TcpConnection::Ptr& c, const Status& why) { OnClose(c, why); });
      // The server speaks first: the nonce the client's proof must cover.
      conn->Send(entry.handshake.Challenge());
      Admit(conn);
    }
    // At the cap, every handshake too young to evict: the next connections
    // wait in the backlog until the oldest may be (admission.h).
    const int64_t now_us = clock_.SteadyMicros();
    if (auto until = admission_.AcceptPausedUntil(now_us)) {
      accept_paused_ = true;
      accept_retry_.expires_after(std::chrono::microseconds(*until - now_us));
      accept_retry_.async_wait([this](boost::system::error_code e) {
        if (e) return;
        accept_paused_ = false;
        Accept();
      });
      return;
    }
    Accept();
  });
}

void Coordinator::ResumeAcceptingIfRoom() {
  if (!accept_paused_ || admission_.AcceptPausedUntil(clock_.SteadyMicros())) return;
  accept_paused_ = false;
  accept_retry_.cancel();  // its wait ends aborted, accepting nothing
  Accept();
}

void Coordinator::OnMessage(const TcpConnection::Ptr& conn, wire::Envelope env) {
  auto it = connections_.find(conn->id());
  if (it == connections_.end()) return;
  CheckStall();                    // what arrives first after the loop stood still
  if (it->second.refused) return;  // closing: nothing it says counts
  const Role role = it->second.role;
  if (role == Role::kUnknown) {
    if (!env.has_hello())
      return FailAuthentication(conn->id(), auth_reason::kMalformed, "first message must be Hello");
    return OnHello(conn, env.hello());
  }
  if (role == Role::kControl) {
    if (!env.has_control_request())
      return conn->Close(Status::InvalidArgument("control clients send control requests"));
    admission_.Served(conn->id());
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
  if (!a || a->lost) return;
  if (!a->ready) {
    if (env.has_host_ready()) return OnHostReady(agent, env.host_ready());
    return conn->Close(Status::InvalidArgument("an agent answers its HelloAck with HostReady"));
  }
  heartbeats_.Beat(agent, clock_.SteadyMicros());
  if (isolation_.waiting()) OnAgentBack(agent);
  if (controller_->taking_over() && !env.has_heartbeat()) {
    // Before the generation is adopted: held, handled in order once it is.
    held_.emplace_back(agent, std::move(env));
    return;
  }
  OnAgentMessage(agent, env);
}

void Coordinator::OnAgentMessage(int agent, const wire::Envelope& env) {
  auto& a = registry_.agents()[static_cast<size_t>(agent)];
  // Sent again after a reconnection to this same vigild: handled already.
  if (env.seq() > 0 && env.seq() <= handled_seq_[agent]) return;
  if (env.seq() > 0) handled_seq_[agent] = env.seq();
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
    case wire::Envelope::kHostReady:  // it reconnected in place and checked again
      if (!env.host_ready().ok()) MarkAgentLost(agent, env.host_ready().problem());
      break;
    case wire::Envelope::kGpuFault:
      metrics_.GpuFault(a.host, env.gpu_fault().type(), static_cast<int>(env.gpu_fault().xid()));
      controller_->OnGpuFault(agent, env.gpu_fault());
      break;
    default:
      if (a.conn) a.conn->Close(Status::InvalidArgument("unexpected message from agent"));
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
  const Role role = it->second.role;
  const std::string source = it->second.source;
  connections_.erase(it);
  // One cut short or refused by the frame reader before it proved the
  // token failed its handshake (a peer that just goes away did not).
  if (admission_.handshaking(conn->id()) &&
      (why.code() == StatusCode::kInvalidArgument || conn->mid_frame())) {
    RecordAuthFailureFrom(source, auth_reason::kMalformed, why.message());
  }
  admission_.Closed(conn->id());
  ResumeAcceptingIfRoom();
  metrics_.SetConnections(admission_.handshakes(), admission_.authenticated());
  if (role == Role::kUnknown) return;  // its failure, if any, is counted (not logged each time)
  if (role == Role::kStoreClient) store_.DropClient(conn->id());
  if (role != Role::kAgent) {
    if (!why.ok() && why.code() != StatusCode::kUnavailable)
      log_->warn("dropped connection: {}", why.ToString());
    return;
  }
  int agent = -1;
  if (!registry_.Find(conn->id(), &agent)) return;
  CheckStall();  // a loop that stood still may see the closes before its next tick
  if (isolation_.waiting() && registry_.agents()[static_cast<size_t>(agent)].ready)
    return OnAgentAway(agent, "connection closed: " + why.message());
  MarkAgentLost(agent, "connection closed: " + why.message());
}

void Coordinator::MarkAgentLost(int agent, const std::string& why) {
  auto& a = registry_.agents()[agent];
  if (a.lost) return;  // one detection per agent, whichever notices first
  if (!a.ready) {      // gone before its storage check: never part of the job
    a.lost = true;
    checking_.erase(agent);
    log_->warn("host {} went away before it checked its storage: {}", a.host, why);
    return;
  }
  a.lost = true;
  heartbeats_.Forget(agent);
  metrics_.agents_connected.Set(registry_.live_count());
  metrics_.HostLost(a.host);
  controller_->OnAgentLost(agent, why);
  if (a.conn) a.conn->Close(Status::Unavailable(why));  // no-op if it is already closed
}

void Coordinator::BeatAgents(std::chrono::steady_clock::time_point now) {
  const int n = registry_.agent_count();
  const double elapsed_ms =
      std::chrono::duration<double, std::milli>(now - last_heartbeat_sent_).count();
  last_heartbeat_sent_ = now;
  if (n == 0) return;
  // The agents' share of one interval that this tick's time is owed.
  beats_owed_ = std::min(static_cast<double>(n),
                         beats_owed_ + n * elapsed_ms / spec_.limits.heartbeat_interval_ms);
  for (int sent = static_cast<int>(beats_owed_); sent > 0; --sent, beats_owed_ -= 1) {
    if (beat_cursor_ >= n) {
      beat_cursor_ = 0;
      // Once a round: what was handled by now is acked once committed.
      writer_->AfterCommit([this, handled = handled_seq_] {
        boost::asio::post(io_, [this, handled] {
          for (const auto& [agent, seq] : handled)
            committed_seq_[agent] = std::max(committed_seq_[agent], seq);
        });
      });
    }
    wire::Envelope beat;
    beat.mutable_heartbeat()->set_acked(committed_seq_[beat_cursor_]);
    registry_.SendToAgent(beat_cursor_++, beat);
  }
}

void Coordinator::Tick() {
  const auto now = std::chrono::steady_clock::now();
  CheckStall();
  // After a loop that stood still, what arrived meanwhile is read first.
  EnforceDeadlines(last_tick_.time_since_epoch().count() != 0 &&
                   now - last_tick_ > std::chrono::milliseconds(kStoodStillMs));
  last_tick_ = now;
  store_.Expire(now);
  // Waiting for its agents, vigild learns nothing: what time alone would
  // detect (a hang) waits until they are back.
  if (!isolation_.waiting()) controller_->OnTick();
  BeatAgents(now);
  // (Not while vigild waits for its agents: it hears nobody.)
  for (const auto& [agent, check] : isolation_.waiting() ? decltype(checking_)() : checking_) {
    if (now - check.since > std::chrono::milliseconds(spec_.limits.heartbeat_timeout_ms)) {
      RefuseAgent(agent, "no storage check (HostReady) within limits.heartbeat_timeout_ms (" +
                             std::to_string(spec_.limits.heartbeat_timeout_ms) + " ms)");
    }
  }
  // Went quiet together: within a couple of heartbeat intervals of the timeout.
  const int64_t steady = clock_.SteadyMicros();
  const size_t watched = heartbeats_.watched();
  const size_t quiet = heartbeats_.QuietFor(
      (int64_t{spec_.limits.heartbeat_timeout_ms} - 2 * spec_.limits.heartbeat_interval_ms) * 1000,
      steady);
  const auto silent = heartbeats_.Silent(steady);
  const bool cut_off_before = isolation_.phase() == Isolation::Phase::kCutOff;
  if (isolation_.Silenced(silent.size(), quiet, watched, steady)) {
    if (!cut_off_before) {
      log_->error(
          "every agent ({}) fell silent at once: vigild is cut off (or stood still); none is "
          "declared lost while it waits for them, up to limits.coordinator_grace_ms ({} ms)",
          watched, spec_.limits.coordinator_grace_ms);
    }
    for (int agent : silent)
      OnAgentAway(agent,
                  "no heartbeat for " + std::to_string(spec_.limits.heartbeat_timeout_ms) + " ms");
  } else {
    for (int agent : silent) {
      MarkAgentLost(
          agent, "no heartbeat for " + std::to_string(spec_.limits.heartbeat_timeout_ms) + " ms");
    }
  }
  // Over once every agent that went away is back, or at its deadline.
  if (isolation_.waiting() &&
      ((away_.empty() && !came_back_.empty()) || isolation_.Ended(clock_.SteadyMicros())))
    EndIsolation();
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
  for (auto& [id, entry] : connections_) open.push_back(entry.conn);
  for (auto& c : open) c->Close(why);
  io_.stop();
}

void Coordinator::Shutdown() {
  // A job that ended while vigild waited for its agents: the wait is
  // recorded (those not back are named, not lost: one that comes back in
  // the flush window still hears its shutdown order), then the goodbyes
  // are plain closes.
  if (isolation_.waiting()) EndIsolation(/*job_over=*/true);
  // Failed authentications counted and not yet recorded are, now.
  for (const auto& row : auth_failures_.FlushAll()) RecordAuthFailure(row);
  // Drains still waiting out slurm.drain_delay_ms keep their delay (a job
  // that failed because a scancel's kills reached vigild before its own
  // SIGTERM must not drain healthy nodes); vigild waits for them and for
  // those under way, one scontrol after another, each bounded.
  const size_t drains = pending_drains_.size() + (drainer_ ? drainer_->in_flight() : 0);
  const auto drains_deadline =
      std::chrono::steady_clock::now() +
      std::chrono::milliseconds((pending_drains_.empty() ? 0 : spec_.slurm.drain_delay_ms) +
                                static_cast<int64_t>(drains) * spec_.slurm.drain_timeout_ms + 1000);
  // Give the goodbyes a moment to flush, and the drains their time, then
  // stop accepting and leave the loop.
  shutdown_timer_.expires_after(std::chrono::milliseconds(spec_.limits.shutdown_flush_ms));
  shutdown_timer_.async_wait([this, drains_deadline](boost::system::error_code) {
    AfterDrains(drains_deadline, [this] { CloseAll(Status::Ok()); });
  });
}

}  // namespace vigil::coordinator
