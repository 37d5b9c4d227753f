#include "common/http_client.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cctype>
#include <cstdlib>
#include <cstring>

#include "common/framed_socket.h"
#include "common/util.h"

namespace vigil {

Result<HttpResult> HttpGet(const std::string& host_port, const std::string& path,
                           std::chrono::milliseconds timeout, const std::string& bearer_token) {
  std::string host;
  int port = 0;
  VIGIL_RETURN_IF_ERROR(ParseHostPort(host_port, &host, &port));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  if (::inet_pton(AF_INET, host.c_str(), &addr.sin_addr) != 1) {
    return Status::InvalidArgument("not an IPv4 address: " + host);
  }
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return Status::IoError(std::string("socket: ") + std::strerror(errno));
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};
  timeval tv{static_cast<time_t>(timeout.count() / 1000),
             static_cast<suseconds_t>((timeout.count() % 1000) * 1000)};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    return Status::Unavailable("connect " + host_port + ": " + std::strerror(errno));
  }
  std::string req = "GET " + path + " HTTP/1.1\r\nHost: " + host_port + "\r\n";
  if (!bearer_token.empty()) req += "Authorization: Bearer " + bearer_token + "\r\n";
  req += "Connection: close\r\n\r\n";
  if (::send(fd, req.data(), req.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(req.size())) {
    return Status::Unavailable("send to " + host_port + " failed");
  }
  std::string raw;
  char buf[65536];
  while (true) {
    ssize_t n = ::recv(fd, buf, sizeof(buf), 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Status::Timeout("reading from " + host_port + ": " + std::strerror(errno));
    if (n == 0) break;
    raw.append(buf, static_cast<size_t>(n));
  }
  const auto head_end = raw.find("\r\n\r\n");
  if (raw.compare(0, 5, "HTTP/") != 0 || head_end == std::string::npos) {
    return Status::InvalidArgument("malformed HTTP response from " + host_port);
  }
  HttpResult r;
  r.status = std::atoi(raw.c_str() + raw.find(' ') + 1);
  r.body = raw.substr(head_end + 4);
  std::string head = raw.substr(0, head_end);
  for (char& c : head) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (head.find("\r\ntransfer-encoding: chunked") != std::string::npos) {
    auto body = DecodeChunked(r.body);
    if (!body.ok()) return Status::InvalidArgument(body.status().message() + " from " + host_port);
    r.body = std::move(body.value());
  }
  return r;
}

Result<HttpResult> ApiGet(const std::string& workdir, const std::string& host_port,
                          const std::string& path, std::chrono::milliseconds timeout) {
  auto token = ReadTokenFile(workdir + "/token");
  if (!token.ok()) return Status::FailedPrecondition(token.status().message());
  return HttpGet(host_port, path, timeout, token.value());
}

Result<std::string> DecodeChunked(const std::string& in) {
  std::string out;
  size_t at = 0;
  while (true) {
    const size_t eol = in.find("\r\n", at);
    if (eol == std::string::npos) return Status::InvalidArgument("truncated chunked body");
    // The size in hex, maybe followed by ";extensions".
    const std::string line = in.substr(at, eol - at);
    char* end = nullptr;
    const unsigned long long size = std::strtoull(line.c_str(), &end, 16);
    if (end == line.c_str() || (*end != '\0' && *end != ';' && *end != ' '))
      return Status::InvalidArgument("bad chunk size '" + line + "'");
    at = eol + 2;
    if (size == 0) return out;  // trailers, if any, are not needed
    if (size > in.size() - at || in.compare(at + size, 2, "\r\n") != 0)
      return Status::InvalidArgument("truncated chunked body");
    out.append(in, at, size);
    at += size + 2;
  }
}

}  // namespace vigil
