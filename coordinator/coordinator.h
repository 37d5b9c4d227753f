// vigild: one per job. Accepts agents and trainer store clients on one TCP
// port (framed protobuf, Hello with protocol version and the job's token
// first), serves /metrics and /api/v1/* over HTTP, watches the agents'
// heartbeats (heartbeat_monitor.h), and hands everything the agents report
// to the JobController. One io_context, one thread; handlers never block.
#pragma once

#include <utility>

#include <boost/asio.hpp>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/asio_connection.h"
#include "common/crash_point.h"
#include "common/job_spec.h"
#include "common/vocabulary.h"
#include "coordinator/clock.h"
#include "coordinator/heartbeat_monitor.h"
#include "coordinator/http_server.h"
#include "coordinator/job_controller.h"
#include "coordinator/journal.h"
#include "coordinator/metrics.h"
#include "coordinator/rendezvous_store.h"
#include "coordinator/takeover.h"
#include "logbook/logbook.h"
#include "logbook/logbook_writer.h"

namespace vigil::coordinator {

struct CoordinatorOptions {
  std::string job_file;
  std::string workdir;
  std::string token;
  std::string listen_host = "127.0.0.1";
  int listen_port = 0;
  int http_port = 0;
  std::vector<ChaosFault> chaos;
  CrashPoints crash_points;  // from the environment (common/crash_point.h)
};

// Registered agents, by index in registration order; a lost agent keeps its
// index (the logbook names it) and a host that comes back gets a new one.
class AgentRegistry : public AgentLink {
 public:
  struct Agent {
    std::string host;
    int slots = 0;
    TcpConnection::Ptr conn;
    bool lost = false;
  };
  // Returns the index, or an error if the job needs no more hosts.
  Result<int> Register(const std::string& host, int slots, int needed_slots, int max_agents,
                       TcpConnection::Ptr conn);
  int agent_count() const override { return static_cast<int>(agents_.size()); }
  bool agent_connected(int agent) const override;
  int live_count() const;
  std::string agent_host(int agent) const override;
  // Stamped with this vigild's coordinator epoch (Envelope.epoch).
  void SendToAgent(int agent, const wire::Envelope& env) override;
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
  // Tears the job down and records it as failed (vigild got SIGTERM/SIGINT).
  void StopJob(const std::string& why) { controller_->Stop(why); }
  std::string rpc_address() const;
  std::string http_address() const;

 private:
  void Accept();
  void OnMessage(const TcpConnection::Ptr& conn, wire::Envelope env);
  // What an agent sends once registered.
  void OnAgentMessage(int agent, const wire::Envelope& env);
  void OnHello(const TcpConnection::Ptr& conn, const wire::Hello& hello);
  void OnClose(const TcpConnection::Ptr& conn, const Status& why);
  // `vigil resume` and `vigil chaos`: one request, one response, closed.
  void OnControl(const TcpConnection::Ptr& conn, const wire::ControlRequest& req);
  // Records a lost agent once, and drops its connection.
  void MarkAgentLost(int agent, const std::string& why);
  void Tick();
  // A takeover's wait is over: every host of the run's world registered
  // again, or limits.heartbeat_timeout_ms passed since this vigild started.
  void FinishTakeover();
  Status Listen(boost::asio::ip::address addr, int port, int previous_port);
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
  AsioClock clock_;
  RendezvousStore store_;
  AgentRegistry registry_;
  HeartbeatMonitor heartbeats_;
  CoordinatorMetrics metrics_;
  std::unique_ptr<WriteAheadAgentLink> agent_link_;
  std::unique_ptr<LogbookJournal> journal_;
  std::unique_ptr<JobController> controller_;
  // Declared after what its callbacks reach (the agent link): destroyed
  // first, it commits what is queued while they still exist.
  std::unique_ptr<LogbookWriter> writer_;
  uint64_t next_connection_id_ = 1;
  enum class Role { kUnknown, kAgent, kStoreClient, kControl };
  std::map<uint64_t, std::pair<Role, TcpConnection::Ptr>> connections_;
  bool agents_complete_ = false;
  bool fenced_ = false;
  std::chrono::steady_clock::time_point started_;
  std::chrono::steady_clock::time_point last_heartbeat_sent_{};
  std::chrono::steady_clock::time_point last_tick_{};
  // Per agent: the newest message (Envelope.seq) handled, and the newest
  // whose consequences are committed (what its heartbeats ack).
  std::map<int, uint64_t> handled_seq_, committed_seq_;
  // A takeover: the run read back, what each agent said when it registered
  // again, and what agents sent before the generation was adopted (held,
  // then handled in order).
  std::optional<RunTakeover> takeover_;
  std::map<int, wire::Hello> takeover_hellos_;
  std::vector<std::pair<int, wire::Envelope>> held_;
};

}  // namespace vigil::coordinator
