// The agent's link to its vigild, kept through vigild's death.
//
// The first registration is synchronous (bounded by register_timeout).
// Every message the agent sends (rank reports, exits, faults) is numbered
// (Envelope.seq) and kept until vigild acks it (Heartbeat.acked: handled,
// and what it caused committed to the logbook): a message written to the
// socket of a vigild that then dies is not lost with it. After the first
// registration, a vigild is lost when its connection closes, or when it
// has said nothing for the HelloAck's heartbeat_timeout_ms (vigild
// heartbeats its agents: a SIGSTOPped or wedged vigild keeps its socket
// open and says nothing). The link then
//   - keeps what the agent sends, with what was never acked, in a bounded
//     buffer (the oldest dropped and counted), and sends it, in order,
//     right after registering again (a message the dead vigild handled and
//     committed but had not acked arrives twice: vigild's handlers are
//     idempotent for them);
//   - reconnects with exponential backoff and full jitter (backoff_initial
//     doubling to backoff_max), each attempt off the event loop (a
//     SIGSTOPped vigild accepts and never answers: the attempt times out
//     on its own thread, not on the agent's loop), re-reading vigild's
//     address file first when it has one (a new vigild may listen
//     elsewhere);
//   - gives up after the HelloAck's coordinator_grace_ms: on_gone, and the
//     agent tears its ranks down.
// Each registration's Hello is made afresh by the agent (its live ranks),
// and each HelloAck answered with the host's storage check (HostReady)
// before anything else is sent; a host that fails it is refused: the first
// registration returns the problem, a later one ends in on_gone.
// The link is the agent's epoch fence (epoch_fence.h): an ack or order of
// an epoch older than the newest seen is refused, and a stale vigild's
// ack is not a reconnection.
//
// Single-threaded: call from the io_context's thread.
#pragma once

#include <utility>

#include <boost/asio.hpp>
#include <chrono>
#include <deque>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <thread>

#include <spdlog/spdlog.h>

#include "common/asio_connection.h"
#include "common/status.h"
#include "common/vigil.pb.h"
#include "worker/agent/epoch_fence.h"

namespace vigil::agent {

struct CoordinatorLinkOptions {
  std::string address;       // host:port of vigild
  std::string address_file;  // vigild.addr ({"rpc": "host:port"}), re-read to reconnect; "" none
  std::chrono::milliseconds register_timeout{30000};
  // One reconnection attempt: connect, Hello, HelloAck.
  std::chrono::milliseconds attempt_timeout{1000};
  std::chrono::milliseconds backoff_initial{50}, backoff_max{1000};
  size_t buffer_limit = 10000;  // messages kept until acked (and while vigild is away)
};

class CoordinatorLink {
 public:
  using HelloMaker = std::function<wire::Hello(bool again)>;
  using OrderHandler = std::function<void(wire::Envelope)>;
  // After each registration (again: not the first); before the buffer is sent.
  using RegisteredHandler = std::function<void(const wire::HelloAck&, bool again)>;
  using GoneHandler = std::function<void(const std::string& why)>;
  // Run on each HelloAck before the link counts as registered (off the
  // event loop when reconnecting): the host's storage check. Its answer is
  // sent to vigild first; not ok, the registration fails with its problem.
  // `local_address`: this host's end of the connection.
  using HostCheck =
      std::function<wire::HostReady(const wire::HelloAck&, const std::string& local_address)>;

  CoordinatorLink(boost::asio::io_context& io, CoordinatorLinkOptions options,
                  std::shared_ptr<spdlog::logger> log);
  ~CoordinatorLink();
  CoordinatorLink(const CoordinatorLink&) = delete;
  CoordinatorLink& operator=(const CoordinatorLink&) = delete;

  // The first registration (blocking). `token`, the job's, is what each
  // handshake proves it holds (common/auth.h). Handlers are kept for the
  // link's life.
  Status Register(const std::string& token, HelloMaker hello, HostCheck check,
                  OrderHandler on_order, RegisteredHandler on_registered, GoneHandler on_gone);
  // Numbers it, sends it now if connected, and keeps it until vigild acks
  // it (bounded: the oldest goes).
  void Send(const wire::Envelope& env);
  // Sends only if connected (a heartbeat: stale once vigild is back).
  void SendIfConnected(const wire::Envelope& env);
  // Shutting down: sends what is queued, then closes; no reconnection.
  void Close();

  bool connected() const { return conn_ != nullptr; }
  const std::string& address() const { return address_; }
  // This host's end of the connection to vigild: an address every host
  // that reaches vigild the same way can reach it at.
  const std::string& local_address() const { return local_address_; }
  uint64_t epoch() const { return fence_.newest(); }
  uint64_t refused() const { return fence_.refused(); }
  size_t buffered() const { return buffer_.size(); }
  uint64_t dropped() const { return dropped_; }
  // vigild named storage this host cannot see or write (HostCheck): refused.
  bool storage_refused() const { return refused_; }
  // The ranks whose exits the buffer holds, acked by no vigild (a Hello names them).
  std::vector<wire::LiveRank> BufferedExits() const;

 private:
  void Attach(int fd, const std::string& already_read, const wire::HelloAck& ack, bool again);
  void OnMessage(wire::Envelope env);
  void Lost(const std::string& why);
  void Watch();
  void ScheduleAttempt();
  void Attempt();
  void JoinAttempt();
  std::string CurrentAddress();
  std::chrono::milliseconds Backoff();

  boost::asio::io_context& io_;
  CoordinatorLinkOptions o_;
  std::shared_ptr<spdlog::logger> log_;
  std::string address_;
  std::string local_address_;
  std::string token_;
  HelloMaker make_hello_;
  HostCheck check_;
  OrderHandler on_order_;
  RegisteredHandler on_registered_;
  GoneHandler on_gone_;
  TcpConnection::Ptr conn_;
  EpochFence fence_;
  std::deque<wire::Envelope> buffer_;  // sent or not, not yet acked; by seq
  uint64_t next_seq_ = 1;
  uint64_t dropped_ = 0;
  boost::asio::steady_timer watchdog_, retry_, grace_;
  std::chrono::steady_clock::time_point last_heard_;
  std::chrono::steady_clock::time_point lost_at_;
  std::chrono::milliseconds heartbeat_timeout_{0}, grace_period_{900000};
  int attempts_ = 0;  // since the loss
  std::mt19937_64 rng_;
  std::thread attempt_;
  std::shared_ptr<bool> alive_;  // what the attempt thread posts checks it
  bool attempting_ = false, closing_ = false, gone_ = false, refused_ = false;
};

}  // namespace vigil::agent
