// vigild's side of a connection before and after authentication, through
// the real connection code: an AsioConnection (common/asio_connection.h)
// with the pre-authentication frame limit, on one end of a socket pair,
// playing ServerHandshake (common/handshake.h) as vigild does; the fuzzer
// writes the other end. The first byte picks the client: 0, anything from
// the first byte on; 1, a Hello that proves the token (built here from the
// Challenge read back), then anything. The connection must end closed or
// authenticated; it must never authenticate without the proof.
#include <utility>  // Boost 1.74 Asio with C++20 needs this first.

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <boost/asio.hpp>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "common/asio_connection.h"
#include "common/auth.h"
#include "common/framing.h"
#include "common/handshake.h"

namespace {

using Local = boost::asio::local::stream_protocol;
const std::string kToken(48, 'z');

// Reads what the server wrote so far (non-blocking), into `reader`.
void Drain(int fd, vigil::FrameReader& reader) {
  char buf[4096];
  ssize_t n;
  while ((n = ::recv(fd, buf, sizeof(buf), MSG_DONTWAIT)) > 0)
    reader.Feed(buf, static_cast<size_t>(n));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const bool proving_client = data[0] & 1;
  const std::string input(reinterpret_cast<const char*>(data) + 1, size - 1);
  static boost::asio::io_context io;
  Local::socket server_end(io), client_end(io);
  boost::asio::local::connect_pair(server_end, client_end);
  const int fd = client_end.native_handle();

  vigil::ServerHandshake handshake(kToken);
  bool closed = false, authenticated = false;
  auto conn = std::make_shared<vigil::UnixConnection>(std::move(server_end), 1,
                                                      vigil::kPreAuthMaxFrameBytes, 1 << 20);
  conn->Start(
      [&](const vigil::UnixConnection::Ptr& c, vigil::wire::Envelope env) {
        if (authenticated) return;  // what vigild's roles read next is theirs
        if (!env.has_hello()) return c->Close(vigil::Status::InvalidArgument("not a Hello"));
        if (auto verdict = handshake.Check(env.hello()); !verdict.ok()) {
          c->Send(vigil::ServerHandshake::Refuse(verdict.message));
          return c->CloseAfterWrites(vigil::Status::FailedPrecondition(verdict.message));
        }
        authenticated = true;
        c->set_max_frame_bytes(vigil::kDefaultMaxFrameBytes);
        c->Send(handshake.Accept());
      },
      [&](const vigil::UnixConnection::Ptr&, const vigil::Status&) { closed = true; });
  conn->Send(handshake.Challenge());
  io.restart();
  io.poll();

  vigil::FrameReader from_server;
  std::string out;
  if (proving_client) {
    Drain(fd, from_server);
    auto challenge = from_server.Next();
    if (!challenge.ok() || !challenge.value() || !challenge.value()->has_challenge()) std::abort();
    vigil::wire::Envelope hello;
    auto* h = hello.mutable_hello();
    h->set_protocol_version(vigil::kProtocolVersion);
    h->set_role(vigil::wire::Hello::AGENT);
    h->set_host("fuzz-host");
    h->set_client_nonce(vigil::auth::RandomNonce());
    h->set_proof(vigil::auth::ClientProof(kToken, challenge.value()->challenge().server_nonce(),
                                          h->client_nonce(), h->role(), h->host()));
    out = vigil::EncodeFrame(hello);
  }
  out += input;
  // Writes the client's bytes as the server reads them, then its end of
  // stream; runs the loop until the connection is closed or idle.
  size_t at = 0;
  for (int rounds = 0; rounds < 100000 && !closed; ++rounds) {
    if (at < out.size()) {
      const ssize_t n = ::send(fd, out.data() + at, out.size() - at, MSG_DONTWAIT | MSG_NOSIGNAL);
      if (n > 0) at += static_cast<size_t>(n);
      if (n < 0 && errno != EAGAIN) at = out.size();
    } else if (at == out.size()) {
      ::shutdown(fd, SHUT_WR);
      ++at;
    }
    Drain(fd, from_server);
    if (io.poll() == 0 && at > out.size()) {
      io.run_one_for(std::chrono::milliseconds(1));
      if (io.poll() == 0) break;
    }
  }
  if (authenticated && !proving_client) std::abort();  // authenticated without the proof
  if (proving_client && !authenticated) std::abort();  // the proof refused
  conn->Close(vigil::Status::Unavailable("fuzz input done"));
  io.restart();
  io.poll();
  return 0;
}
