// vigild's HTTP server (coordinator/http_server.h) on any request, over a
// real loopback connection: an open route and one that needs the token. It
// answers with a status line or closes; it never answers a token route's
// body to a request without the token. The client's decoder
// of chunked bodies (common/http_client.h) reads the same bytes.
#include <utility>  // Boost 1.74 Asio with C++20 needs this first.

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <boost/asio.hpp>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <thread>

#include "common/http_client.h"
#include "coordinator/http_server.h"

namespace {

using vigil::coordinator::HttpAccess;
using vigil::coordinator::HttpResponse;
using vigil::coordinator::HttpServer;

constexpr char kSecret[] = "only-with-the-token";
const std::string kToken(48, 't');

struct Server {
  boost::asio::io_context io;
  std::unique_ptr<HttpServer> http;
  sockaddr_in addr{};
  Server() {
    http = std::make_unique<HttpServer>(
        io, boost::asio::ip::tcp::endpoint(boost::asio::ip::make_address("127.0.0.1"), 0));
    http->RequireToken(kToken);
    http->Route("/metrics", HttpAccess::kOpen, [](const std::string&) {
      return HttpResponse{200, "text/plain", "open"};
    });
    http->Route("/api/v1/status", HttpAccess::kToken, [](const std::string&) {
      return HttpResponse{200, "application/json", kSecret};
    });
    http->Start();
    addr.sin_family = AF_INET;
    addr.sin_port = htons(http->endpoint().port());
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  }
};

// A connection to the server; a few tries (the machine's ephemeral ports
// may be busy with other tests' connections), then a clear abort.
int Connect(const sockaddr_in& addr) {
  for (int attempt = 0; attempt < 100; ++attempt) {
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd >= 0 && ::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) == 0)
      return fd;
    if (fd >= 0) ::close(fd);
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  std::fprintf(stderr, "cannot connect to the HTTP server: %s\n", std::strerror(errno));
  std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static Server* server = new Server();  // lives for the process
  const std::string request(reinterpret_cast<const char*>(data), size);
  (void)vigil::DecodeChunked(request);

  const int fd = Connect(server->addr);
  std::string answer;
  size_t at = 0;
  bool eof = false;
  for (int rounds = 0; rounds < 5000 && !eof; ++rounds) {  // at most ~5 s
    if (at < request.size()) {
      const ssize_t n =
          ::send(fd, request.data() + at, request.size() - at, MSG_DONTWAIT | MSG_NOSIGNAL);
      if (n > 0) at += static_cast<size_t>(n);
      if (n < 0 && errno != EAGAIN) at = request.size();
    } else if (at == request.size()) {
      ::shutdown(fd, SHUT_WR);
      ++at;
    }
    server->io.restart();
    if (server->io.poll() == 0) server->io.run_one_for(std::chrono::milliseconds(1));
    char buf[4096];
    ssize_t n;
    while ((n = ::recv(fd, buf, sizeof(buf), MSG_DONTWAIT)) > 0)
      answer.append(buf, static_cast<size_t>(n));
    if (n == 0 || (n < 0 && errno != EAGAIN)) eof = true;
  }
  // Closed with a reset: thousands of inputs a second would otherwise fill
  // the ephemeral ports with connections in TIME_WAIT.
  const linger reset{1, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_LINGER, &reset, sizeof(reset));
  ::close(fd);
  if (!answer.empty() && answer.rfind("HTTP/1.", 0) != 0) std::abort();
  // The token route's body, to a request that did not carry the token (a
  // 404 may echo the path it was asked for: only a 200 serves the route).
  const bool ok_answer = answer.rfind("HTTP/1.", 0) == 0 && answer.compare(8, 5, " 200 ") == 0;
  if (ok_answer && answer.find(kSecret) != std::string::npos &&
      request.find("Bearer " + kToken) == std::string::npos)
    std::abort();
  return 0;
}
