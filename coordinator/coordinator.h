// vigild: one per job. Accepts agents, trainer store clients and the CLI on
// one TCP port (framed protobuf, opened by the handshake of common/auth.h:
// vigild's Challenge, the client's Hello proving the job's token), serves /metrics and /api/v1/*
// over HTTP, watches the agents' heartbeats (heartbeat_monitor.h), and hands everything the agents
// report to the JobController. One io_context, one thread; handlers never block.
#pragma once

#include <utility>

#include <boost/asio.hpp>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/asio_connection.h"
#include "common/crash_point.h"
#include "common/handshake.h"
#include "common/job_spec.h"
#include "common/vocabulary.h"
#include "coordinator/admission.h"
#include "coordinator/agent_registry.h"
#include "coordinator/clock.h"
#include "coordinator/heartbeat_monitor.h"
#include "coordinator/http_server.h"
#include "coordinator/isolation.h"
#include "coordinator/job_controller.h"
#include "coordinator/journal.h"
#include "coordinator/metrics.h"
#include "coordinator/rendezvous_store.h"
#include "coordinator/slurm_drainer.h"
#include "coordinator/takeover.h"
#include "logbook/logbook.h"
#include "logbook/logbook_writer.h"

namespace vigil::coordinator {

struct CoordinatorOptions {
  std::string job_file;
  std::string workdir;
  std::string token;
  std::string listen_host = "127.0.0.1";
  // What agents and ranks are told to connect to ("": derived, net_address.h).
  std::string advertise_host;
  int listen_port = 0;
  int http_port = 0;
  std::vector<ChaosFault> chaos;
  CrashPoints crash_points;  // from the environment (common/crash_point.h)
  // The Slurm job vigild runs in (`launcher: slurm`; empty: none): the
  // hosts are its nodes, and a cordoned host is drained (slurm_drainer.h).
  std::string slurm_job_id;
};

class Coordinator {
 public:
  // `takeover`: the unfinished run this vigild takes over (takeover.h).
  Coordinator(boost::asio::io_context& io, JobSpec spec, CoordinatorOptions options,
              std::unique_ptr<Logbook> logbook, int64_t run_id,
              std::optional<RunTakeover> takeover = std::nullopt);
  // Lets the checkpoint deletions under way finish and be recorded.
  ~Coordinator();
  // Binds both ports (a vigild taking a run over binds its predecessor's
  // again when it can: agents given only the address find it) and writes
  // <workdir>/vigild.addr.
  Status Start();
  // Exit status once the io_context has stopped: 0 succeeded, 1 otherwise,
  // kVigildExitFenced when a newer vigild took the run over.
  int exit_code() const {
    if (fenced_) return kVigildExitFenced;
    return controller_->state() == JobState::kSucceeded ? 0 : 1;
  }
  // Tears the job down and records it as cancelled (vigild got SIGTERM/SIGINT).
  // Drains not begun yet are not made (coordinator_slurm.cc).
  void StopJob(const std::string& why);
  std::string rpc_address() const;
  std::string http_address() const;

 private:
  // Under Slurm (coordinator_slurm.cc): a host the playbook cordoned is
  // drained once the cordon is slurm.drain_delay_ms old, and how that went
  // is recorded; vigild stopped by a signal meanwhile makes no drain (the
  // "failure" was most likely the scancel that stops it); a job that ends
  // otherwise lets its pending drains wait out their delay, and waits for
  // them, bounded.
  void DrainInSlurm(int64_t event_id, const std::string& host, const std::string& kind);
  void StartDrain(int64_t event_id, const std::string& host, const std::string& kind);
  void RecordDrain(int64_t event_id, const std::string& node, const std::string& reason,
                   bool drained, const std::string& outcome, const nlohmann::json& more);
  void CancelPendingDrains(const std::string& why);
  // Calls `then` once no drain is pending or in flight, or past the deadline.
  void AfterDrains(std::chrono::steady_clock::time_point deadline, std::function<void()> then);
  void Accept();
  void OnMessage(const TcpConnection::Ptr& conn, wire::Envelope env);
  // What an agent sends once registered.
  void OnAgentMessage(int agent, const wire::Envelope& env);
  // Registration (coordinator_registration.cc): a Hello, the storage check,
  // a refusal, a takeover's end.
  void OnHello(const TcpConnection::Ptr& conn, const wire::Hello& hello);
  // An agent's storage check: it joins the job, or is refused.
  void OnHostReady(int agent, const wire::HostReady& ready);
  // The HelloAck of a registered agent.
  wire::Envelope AgentAck(int agent) const;
  // An ok HelloAck to `conn`, with the server's proof its Hello earned.
  void SendOkAck(const TcpConnection::Ptr& conn, wire::Envelope reply);
  // Vigild cut off from its agents (isolation.h), in coordinator_isolation.cc:
  // the same agent process registering again takes its place back;
  void Reattach(const TcpConnection::Ptr& conn, int agent, const wire::Hello& hello);
  // an agent silent, or its connection closed, while vigild waits: away, not lost;
  void OnAgentAway(int agent, const std::string& why);
  // an agent heard from while vigild waits (the first starts the heal window);
  void OnAgentBack(int agent);
  // a loop that stood still: its agents get a heal window;
  void CheckStall();
  // the wait is over: an event says so, and the agents not back are lost
  // (unless the job is over: then they are only named).
  void EndIsolation(bool job_over = false);
  // Orders `agent` to tear down every generation its Hello names as live,
  // but `keep` (-1: none).
  void TearDownLiveRanks(int agent, const wire::Hello& hello, int64_t keep);
  // Records a host_refused event and drops the agent (it takes no part).
  void RefuseAgent(int agent, const std::string& problem);
  void OnClose(const TcpConnection::Ptr& conn, const Status& why);
  // Bounded connections (admission.h), in coordinator_admission.cc: a
  // connection accepted (the handshakes it evicts are closed), one that
  // failed to authenticate (closed, counted, and recorded as an
  // auth_failure event at most once per source per minute), the deadlines
  // and the rows owed, each tick.
  void Admit(const TcpConnection::Ptr& conn);
  // A handshake ended (done or closed) while accepting paused for room.
  void ResumeAcceptingIfRoom();
  void FailAuthentication(uint64_t id, const std::string& reason, const std::string& why);
  void RecordAuthFailureFrom(const std::string& source, const std::string& reason,
                             const std::string& why);
  void RecordAuthFailure(const AuthFailureLog::Row& row);
  void EnforceDeadlines(bool loop_stood_still);
  static constexpr int64_t kAuthFailureWindowUs = 60'000'000;  // one row per source per minute
  static constexpr int kAcceptRetryMs = 100;
  // A tick this late: the loop stood still, and deadlines wait a tick.
  static constexpr int kStoodStillMs = 1000;
  // `vigil resume` and `vigil chaos`: one request, one response, closed.
  void OnControl(const TcpConnection::Ptr& conn, const wire::ControlRequest& req);
  // Records a lost agent once, and drops its connection.
  void MarkAgentLost(int agent, const std::string& why);
  void Tick();
  // vigild's own heartbeat: an agent that hears nothing for its timeout
  // counts this vigild as lost (stopped or wedged) and looks for the next.
  // It acks what each agent sent that vigild has handled and committed
  // (write-ahead). Spread over the interval, each tick beating its share of
  // the agents in turn: 10,000 agents beaten at once held the loop ~200 ms
  // (bench/coordinator_load).
  void BeatAgents(std::chrono::steady_clock::time_point now);
  // A takeover's wait is over: every host of the run's world registered
  // again, or limits.heartbeat_timeout_ms passed since this vigild started.
  void FinishTakeover();
  Status Listen(boost::asio::ip::address addr, int port, int previous_port);
  // The HTTP port (coordinator_http.cc): on `previous_port` when a run is
  // taken over and no port is given, its routes, and their access.
  Status ServeHttp(const boost::asio::ip::address& addr, int previous_port);
  void Shutdown();
  // A newer coordinator epoch exists: stop at once, doing nothing more.
  void OnFenced(int64_t newer);
  // Stops accepting, closes every connection and leaves the loop.
  void CloseAll(const Status& why);
  HttpResponse StatusJson() const;
  // /api/v1/events?since=..&kind=..: the newest kApiDefaultLast unless `last` says.
  static constexpr size_t kApiDefaultLast = 1000;
  HttpResponse EventsJson(const std::string& query);
  HttpResponse RunsJson();

  boost::asio::io_context& io_;
  JobSpec spec_;
  CoordinatorOptions options_;
  std::unique_ptr<Logbook> logbook_;  // reads (the HTTP API)
  int64_t run_id_;
  std::shared_ptr<spdlog::logger> log_;
  boost::asio::ip::tcp::acceptor acceptor_;
  std::unique_ptr<HttpServer> http_;
  boost::asio::steady_timer tick_;
  boost::asio::steady_timer shutdown_timer_;
  // Out of file descriptors, or every handshake at the cap too young to
  // evict (admission.h): accept again later.
  boost::asio::steady_timer accept_retry_;
  bool accept_paused_ = false;  // for want of room (not descriptors): resumed when there is
  AsioClock clock_;
  RendezvousStore store_;
  AgentRegistry registry_;
  HeartbeatMonitor heartbeats_;
  CoordinatorMetrics metrics_;
  std::unique_ptr<WriteAheadAgentLink> agent_link_;
  std::unique_ptr<LogbookJournal> journal_;
  std::unique_ptr<JobController> controller_;
  std::unique_ptr<SlurmDrainer> drainer_;  // under Slurm (coordinator_slurm.cc)
  struct PendingDrain {
    int64_t event_id = 0;
    std::string host, kind;
    std::shared_ptr<boost::asio::steady_timer> timer;
  };
  std::vector<PendingDrain> pending_drains_;
  std::string drains_cancelled_;  // why no more drains are made ("": they are)
  // Declared after what its callbacks reach (the agent link): destroyed
  // first, it commits what is queued while they still exist.
  std::unique_ptr<LogbookWriter> writer_;
  uint64_t next_connection_id_ = 1;
  enum class Role { kUnknown, kAgent, kStoreClient, kControl };
  struct Connection {
    Role role = Role::kUnknown;
    TcpConnection::Ptr conn;
    ServerHandshake handshake;  // vigild's half (common/handshake.h)
    bool refused = false;       // told so; what it sends until it is closed is ignored
    std::string source;         // the peer's address (what auth_failure rows are counted by)
  };
  std::map<uint64_t, Connection> connections_;
  Admission admission_;
  AuthFailureLog auth_failures_;
  bool agents_complete_ = false;
  bool fenced_ = false;
  std::chrono::steady_clock::time_point started_;
  std::chrono::steady_clock::time_point last_heartbeat_sent_{};
  double beats_owed_ = 0;  // heartbeats to agents the time since is owed (BeatAgents)
  int beat_cursor_ = 0;    // the agent whose turn is next
  std::chrono::steady_clock::time_point last_tick_{};
  // Per agent: the newest message (Envelope.seq) handled, and the newest
  // whose consequences are committed (what its heartbeats ack).
  std::map<int, uint64_t> handled_seq_, committed_seq_;
  // A takeover: the run read back, what each agent said when it registered
  // again, and what agents sent before the generation was adopted (held,
  // then handled in order).
  std::optional<RunTakeover> takeover_;
  std::map<int, wire::Hello> takeover_hellos_;
  // Agents that said Hello and have not yet said HostReady, by index.
  struct StorageCheck {
    wire::Hello hello;
    std::chrono::steady_clock::time_point since;
  };
  std::map<int, StorageCheck> checking_;
  Isolation isolation_;
  std::set<int> away_;               // agents waited for while isolation_ waits
  std::set<std::string> came_back_;  // hosts that came back meanwhile
  std::string isolation_cause_;
  std::string advertised_;      // the host in rpc_address() and http_address()
  std::string checkpoint_dir_;  // this run's, as the agents must see it
  std::string storage_id_;      // in its kStorageMarkFile
  std::vector<std::pair<int, wire::Envelope>> held_;
};

}  // namespace vigil::coordinator
