#include "worker/agent/rank_socket.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "common/framing.h"

namespace vigil::agent {

using unix_proto = boost::asio::local::stream_protocol;

RankSocket::RankSocket(boost::asio::io_context& io, ReportSink sink,
                       std::shared_ptr<spdlog::logger> log)
    : io_(io), acceptor_(io), accept_retry_(io), sink_(std::move(sink)), log_(std::move(log)) {}

RankSocket::~RankSocket() {
  Close();
  if (!path_.empty()) ::unlink(path_.c_str());
  if (!dir_.empty()) ::rmdir(dir_.c_str());
}

Status RankSocket::Open(const std::string& token) {
  token_ = token;
  const char* runtime = std::getenv("XDG_RUNTIME_DIR");
  struct stat st {};
  const std::string base =
      runtime && *runtime && ::stat(runtime, &st) == 0 && S_ISDIR(st.st_mode) ? runtime : "/tmp";
  std::string tmpl = base + "/vigil-agent-" + std::to_string(::getpid()) + "-XXXXXX";
  std::vector<char> name(tmpl.begin(), tmpl.end());
  name.push_back('\0');
  // mkdtemp makes it 0700: only this user enters it, whatever the umask.
  if (::mkdtemp(name.data()) == nullptr)
    return Status::IoError("cannot make the rank socket's directory " + tmpl + ": " +
                           std::strerror(errno));
  dir_ = name.data();
  path_ = dir_ + "/ranks.sock";
  boost::system::error_code ec;
  acceptor_.open(unix_proto(), ec);
  if (!ec) acceptor_.bind(unix_proto::endpoint(path_), ec);
  if (ec) return Status::IoError("bind " + path_ + ": " + ec.message());
  if (::chmod(path_.c_str(), 0600) != 0)
    return Status::IoError("chmod " + path_ + ": " + std::strerror(errno));
  acceptor_.listen(boost::asio::socket_base::max_listen_connections, ec);
  if (ec) return Status::IoError("listen " + path_ + ": " + ec.message());
  Accept();
  return Status::Ok();
}

void RankSocket::Close() {
  boost::system::error_code ec;
  acceptor_.close(ec);
  accept_retry_.cancel();
  std::vector<UnixConnection::Ptr> open;
  for (auto& [id, rc] : conns_) open.push_back(rc.conn);
  for (auto& c : open) c->Close(Status::Ok());
  conns_.clear();
}

void RankSocket::Accept() {
  acceptor_.async_accept([this](boost::system::error_code ec, unix_proto::socket s) {
    if (ec == boost::asio::error::operation_aborted || !acceptor_.is_open()) return;
    if (ec) {
      // Out of descriptors (or another accept error): tried again shortly,
      // the loop not spun on it.
      log_->warn("cannot accept a rank's connection ({}): trying again in 100 ms", ec.message());
      accept_retry_.expires_after(std::chrono::milliseconds(100));
      accept_retry_.async_wait([this](boost::system::error_code e) {
        if (!e) Accept();
      });
      return;
    }
    const uint64_t id = next_id_++;
    // Until its Hello proves the token, no more than a Hello's worth.
    auto conn = std::make_shared<UnixConnection>(std::move(s), id, kPreAuthMaxFrameBytes);
    RankConnection& rc = conns_[id];
    rc.conn = conn;
    rc.handshake = ServerHandshake(token_);
    rc.deadline = std::make_unique<boost::asio::steady_timer>(io_, handshake_timeout_);
    rc.deadline->async_wait([this, id](boost::system::error_code timer_ec) {
      if (timer_ec) return;  // cancelled, or the socket is gone
      auto it = conns_.find(id);
      if (it == conns_.end() || it->second.authenticated || it->second.refused) return;
      Refuse(it->second, "no Hello proving the job's token within the handshake timeout");
    });
    conn->Start(
        [this](const UnixConnection::Ptr& c, wire::Envelope env) { OnMessage(c, std::move(env)); },
        [this](const UnixConnection::Ptr& c, const Status&) { conns_.erase(c->id()); });
    conn->Send(rc.handshake.Challenge());
    Accept();
  });
}

void RankSocket::OnMessage(const UnixConnection::Ptr& conn, wire::Envelope env) {
  auto it = conns_.find(conn->id());
  if (it == conns_.end()) return;
  RankConnection& rc = it->second;
  if (rc.refused) return;
  if (rc.authenticated) {
    if (!env.has_rank_report())
      return conn->Close(Status::InvalidArgument("ranks send reports only"));
    return sink_(std::move(env));
  }
  if (!env.has_hello()) return Refuse(rc, "the first message is not a Hello");
  if (env.hello().role() != wire::Hello::RANK_REPORTER)
    return Refuse(rc, "a Hello for another role than a rank's");
  if (auto verdict = rc.handshake.Check(env.hello()); !verdict.ok())
    return Refuse(rc, verdict.message);
  rc.authenticated = true;
  rc.deadline->cancel();
  conn->set_max_frame_bytes(kDefaultMaxFrameBytes);
  conn->Send(rc.handshake.Accept());
}

void RankSocket::Refuse(RankConnection& rc, const std::string& why) {
  log_->warn("refusing a connection to the rank socket: {}", why);
  rc.refused = true;
  rc.deadline->cancel();
  rc.conn->Send(ServerHandshake::Refuse(why));
  rc.conn->CloseAfterWrites(Status::FailedPrecondition(why));
}

}  // namespace vigil::agent
