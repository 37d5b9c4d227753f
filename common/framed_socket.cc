#include "common/framed_socket.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>

#include "common/auth.h"

namespace vigil {
namespace {

using Clock = std::chrono::steady_clock;

int RemainingMs(Clock::time_point deadline) {
  auto left =
      std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
  return left < 0 ? 0 : static_cast<int>(left);
}

}  // namespace

std::string FramedSocket::LocalAddress() const {
  sockaddr_in addr{};
  socklen_t len = sizeof(addr);
  if (fd_ < 0 || ::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len) != 0 ||
      addr.sin_family != AF_INET)
    return "";
  char text[INET_ADDRSTRLEN] = {};
  return ::inet_ntop(AF_INET, &addr.sin_addr, text, sizeof(text)) ? text : "";
}

Status ParseHostPort(const std::string& address, std::string* host, int* port) {
  const auto colon = address.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == address.size()) {
    return Status::InvalidArgument("address '" + address + "' is not host:port");
  }
  *host = address.substr(0, colon);
  try {
    size_t used = 0;
    *port = std::stoi(address.substr(colon + 1), &used);
    if (used != address.size() - colon - 1 || *port <= 0 || *port > 65535)
      throw std::out_of_range("");
  } catch (...) {
    return Status::InvalidArgument("address '" + address + "' has no valid port");
  }
  return Status::Ok();
}

FramedSocket::~FramedSocket() { Close(); }

FramedSocket::FramedSocket(FramedSocket&& other) noexcept
    : fd_(other.fd_), reader_(std::move(other.reader_)) {
  other.fd_ = -1;
}

FramedSocket& FramedSocket::operator=(FramedSocket&& other) noexcept {
  if (this != &other) {
    Close();
    fd_ = other.fd_;
    reader_ = std::move(other.reader_);
    other.fd_ = -1;
  }
  return *this;
}

void FramedSocket::Close() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

Result<FramedSocket> FramedSocket::Connect(const std::string& address,
                                           std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  int fd = -1;
  sockaddr_storage ss{};
  socklen_t len = 0;
  if (address.rfind("unix:", 0) == 0) {
    const std::string path = address.substr(5);
    sockaddr_un un{};
    if (path.size() >= sizeof(un.sun_path))
      return Status::InvalidArgument("unix path too long: " + path);
    un.sun_family = AF_UNIX;
    std::memcpy(un.sun_path, path.c_str(), path.size() + 1);
    std::memcpy(&ss, &un, sizeof(un));
    len = sizeof(un);
  } else {
    std::string host;
    int port = 0;
    VIGIL_RETURN_IF_ERROR(ParseHostPort(address, &host, &port));
    addrinfo hints{};
    hints.ai_family = AF_INET;
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* res = nullptr;
    if (getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &res) != 0 || !res) {
      return Status::Unavailable("cannot resolve " + address);
    }
    std::memcpy(&ss, res->ai_addr, res->ai_addrlen);
    len = res->ai_addrlen;
    freeaddrinfo(res);
  }
  // Retry until the deadline: the peer may still be starting up.
  std::string last_error;
  while (true) {
    fd = ::socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return Status::IoError(std::string("socket: ") + std::strerror(errno));
    if (::connect(fd, reinterpret_cast<sockaddr*>(&ss), len) == 0) break;
    last_error = std::strerror(errno);
    ::close(fd);
    fd = -1;
    if (Clock::now() >= deadline) {
      return Status::Unavailable("cannot connect to " + address + ": " + last_error);
    }
    ::usleep(20 * 1000);
  }
  if (ss.ss_family == AF_INET) {
    int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  }
  return FramedSocket(fd);
}

Status FramedSocket::SendRaw(const std::string& bytes) {
  if (fd_ < 0) return Status::Unavailable("socket closed");
  size_t off = 0;
  while (off < bytes.size()) {
    ssize_t n = ::send(fd_, bytes.data() + off, bytes.size() - off, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      return Status::Unavailable(std::string("send: ") + std::strerror(errno));
    }
    off += static_cast<size_t>(n);
  }
  return Status::Ok();
}

Status FramedSocket::Send(const wire::Envelope& env) { return SendRaw(EncodeFrame(env)); }

Result<wire::Envelope> FramedSocket::Receive(std::chrono::milliseconds timeout) {
  if (fd_ < 0) return Status::Unavailable("socket closed");
  const auto deadline = Clock::now() + timeout;
  while (true) {
    auto next = reader_.Next();
    if (!next.ok()) return next.status();
    if (next.value().has_value()) return std::move(*next.value());
    pollfd pfd{fd_, POLLIN, 0};
    int rc = ::poll(&pfd, 1, RemainingMs(deadline));
    if (rc < 0 && errno == EINTR) continue;
    if (rc < 0) return Status::IoError(std::string("poll: ") + std::strerror(errno));
    if (rc == 0)
      return Status::Timeout("no message within " + std::to_string(timeout.count()) + " ms");
    char buf[65536];
    ssize_t n = ::recv(fd_, buf, sizeof(buf), 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Status::Unavailable(std::string("recv: ") + std::strerror(errno));
    if (n == 0) {
      Status eof = reader_.CheckEof();
      return eof.ok() ? Status::Unavailable("connection closed by peer") : eof;
    }
    reader_.Feed(buf, static_cast<size_t>(n));
  }
}

Result<FramedSocket> FramedSocket::ConnectAndHello(const std::string& address, wire::Hello hello,
                                                   const std::string& token,
                                                   std::chrono::milliseconds timeout,
                                                   wire::HelloAck* ack) {
  // One deadline for the whole handshake: connect, Challenge, HelloAck.
  const auto deadline = Clock::now() + timeout;
  auto left = [&] { return std::chrono::milliseconds(RemainingMs(deadline)); };
  auto sock = Connect(address, timeout);
  if (!sock.ok()) return sock.status();
  auto challenge = sock->Receive(left());
  if (!challenge.ok()) return challenge.status();
  if (!challenge->has_challenge())
    return Status::InvalidArgument("expected a Challenge from " + address);
  if (challenge->challenge().protocol_version() != kProtocolVersion)
    return Status::FailedPrecondition(address + " speaks protocol " +
                                      std::to_string(challenge->challenge().protocol_version()) +
                                      ", this vigil " + std::to_string(kProtocolVersion));
  const std::string& server_nonce = challenge->challenge().server_nonce();
  if (server_nonce.size() != auth::kNonceBytes)
    return Status::InvalidArgument("a Challenge from " + address + " with a nonce of " +
                                   std::to_string(server_nonce.size()) + " bytes");
  const std::string client_nonce = auth::RandomNonce();
  hello.set_client_nonce(client_nonce);
  hello.set_proof(auth::ClientProof(token, server_nonce, client_nonce, hello.role(), hello.host()));
  wire::Envelope env;
  *env.mutable_hello() = std::move(hello);
  VIGIL_RETURN_IF_ERROR(sock->Send(env));
  auto reply = sock->Receive(left());
  if (!reply.ok()) return reply.status();
  if (!reply->has_hello_ack()) return Status::InvalidArgument("expected HelloAck from " + address);
  if (!reply->hello_ack().ok()) {
    return Status::FailedPrecondition("rejected by " + address + ": " + reply->hello_ack().error());
  }
  if (!auth::ProofsEqual(reply->hello_ack().server_proof(),
                         auth::ServerProof(token, client_nonce, server_nonce)))
    return Status::FailedPrecondition(address +
                                      " did not prove that it holds the job's token: not "
                                      "this job's vigild");
  if (ack) *ack = reply->hello_ack();
  return std::move(sock.value());
}

}  // namespace vigil
