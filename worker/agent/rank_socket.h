// The unix socket an agent's ranks report through.
//
// It lives in a directory of its own that only this user can enter
// (`vigil-agent-PID-XXXXXX`, mode 0700, under $XDG_RUNTIME_DIR when that is
// set, else /tmp), the socket itself mode 0600. A rank proves the job's
// token on it as agents do to vigild (common/handshake.h, role
// RANK_REPORTER): a connection that does not within the handshake timeout,
// that sends anything but a Hello first, or a frame larger than a Hello
// before it, is closed, and so is one whose Hello does not prove the token.
// After it, a connection may send rank reports, and nothing else.
// Everything runs on the agent's io_context.
#pragma once

#include <utility>  // Boost 1.74 Asio with C++20 needs this first.

#include <boost/asio.hpp>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <string>

#include <spdlog/spdlog.h>

#include "common/asio_connection.h"
#include "common/handshake.h"
#include "common/status.h"

namespace vigil::agent {

class RankSocket {
 public:
  using ReportSink = std::function<void(wire::Envelope report)>;

  RankSocket(boost::asio::io_context& io, ReportSink sink, std::shared_ptr<spdlog::logger> log);
  ~RankSocket();  // removes the socket and its directory

  // Makes the directory, binds and listens; ranks must prove `token`.
  Status Open(const std::string& token);
  // Where ranks connect (VIGIL_AGENT_SOCKET).
  const std::string& path() const { return path_; }
  // The job's security.handshake_timeout_ms (the HelloAck's), for the
  // connections accepted from now on.
  void set_handshake_timeout(std::chrono::milliseconds t) { handshake_timeout_ = t; }
  // Stops accepting and closes every connection.
  void Close();

 private:
  struct RankConnection {
    UnixConnection::Ptr conn;
    ServerHandshake handshake;
    std::unique_ptr<boost::asio::steady_timer> deadline;
    bool authenticated = false;
    bool refused = false;  // told so: what it sends until it is closed is ignored
  };
  void Accept();
  void OnMessage(const UnixConnection::Ptr& conn, wire::Envelope env);
  void Refuse(RankConnection& rc, const std::string& why);

  boost::asio::io_context& io_;
  boost::asio::local::stream_protocol::acceptor acceptor_;
  boost::asio::steady_timer accept_retry_;
  ReportSink sink_;
  std::shared_ptr<spdlog::logger> log_;
  std::string token_, dir_, path_;
  std::chrono::milliseconds handshake_timeout_{2000};
  std::map<uint64_t, RankConnection> conns_;
  uint64_t next_id_ = 1;
};

}  // namespace vigil::agent
