// The client's half of the handshake (common/auth.h, FramedSocket::
// ConnectAndHello, which agents, ranks and the CLI all use) against a server
// played here on a real TCP socket: it proves the token without sending it,
// and it trusts no server that cannot prove the token in turn. vigild's half
// is vigild_protocol_test.cc's.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <optional>
#include <string>
#include <thread>

#include "common/auth.h"
#include "common/framed_socket.h"
#include "common/framing.h"

namespace vigil {
namespace {

using std::chrono::milliseconds;

TEST(Auth, EachProofCoversEveryFieldAndNeverServesTheOtherSide) {
  const std::string token = "the-job-token", a = auth::RandomNonce(), b = auth::RandomNonce();
  EXPECT_EQ(a.size(), auth::kNonceBytes);
  EXPECT_NE(a, b) << "nonces are drawn fresh";
  const std::string proof = auth::ClientProof(token, a, b, 2, "rank-0");
  EXPECT_EQ(proof.size(), auth::kProofBytes);
  EXPECT_TRUE(auth::ProofsEqual(proof, auth::ClientProof(token, a, b, 2, "rank-0")));
  for (const std::string& other :
       {auth::ClientProof("another-token", a, b, 2, "rank-0"),
        auth::ClientProof(token, b, a, 2, "rank-0"), auth::ClientProof(token, a, b, 1, "rank-0"),
        auth::ClientProof(token, a, b, 2, "rank-1"), auth::ServerProof(token, b, a)}) {
    EXPECT_FALSE(auth::ProofsEqual(proof, other));
  }
  // Fields are length-prefixed: moving a byte from one to the next changes the proof.
  EXPECT_NE(auth::ClientProof(token, "ab", "c", 1, "h"),
            auth::ClientProof(token, "a", "bc", 1, "h"));
  EXPECT_FALSE(auth::ProofsEqual(proof, proof.substr(1)));
}

// A one-connection server on 127.0.0.1: sends a Challenge, records every
// byte the client writes, and answers its Hello with an ok HelloAck whose
// server proof is made with `server_token`.
class PlayedServer {
 public:
  explicit PlayedServer(std::string server_token) : token_(std::move(server_token)) {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(addr);
    EXPECT_EQ(::bind(fd_, reinterpret_cast<sockaddr*>(&addr), len), 0);
    EXPECT_EQ(::listen(fd_, 1), 0);
    EXPECT_EQ(::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len), 0);
    address_ = "127.0.0.1:" + std::to_string(ntohs(addr.sin_port));
    thread_ = std::thread([this] { Serve(); });
  }
  ~PlayedServer() {
    if (thread_.joinable()) thread_.join();
    ::close(fd_);
  }
  const std::string& address() const { return address_; }
  // What the client wrote, once it is done (the server's thread has ended).
  std::string Written() {
    if (thread_.joinable()) thread_.join();
    return written_;
  }
  std::optional<wire::Hello> hello;

 private:
  void Serve() {
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, 5000) != 1) return;  // the client never came
    const int c = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (c < 0) return;
    const std::string nonce = auth::RandomNonce();
    wire::Envelope challenge;
    challenge.mutable_challenge()->set_protocol_version(kProtocolVersion);
    challenge.mutable_challenge()->set_server_nonce(nonce);
    const std::string out = EncodeFrame(challenge);
    EXPECT_EQ(::write(c, out.data(), out.size()), static_cast<ssize_t>(out.size()));
    FrameReader reader;
    char buf[4096];
    while (!hello) {
      const ssize_t n = ::read(c, buf, sizeof(buf));
      if (n <= 0) break;
      written_.append(buf, static_cast<size_t>(n));
      reader.Feed(buf, static_cast<size_t>(n));
      auto env = reader.Next();
      if (!env.ok()) break;
      if (env.value() && env.value()->has_hello()) hello = env.value()->hello();
    }
    if (hello) {
      wire::Envelope ack;
      ack.mutable_hello_ack()->set_ok(true);
      ack.mutable_hello_ack()->set_server_proof(
          auth::ServerProof(token_, hello->client_nonce(), nonce));
      const std::string reply = EncodeFrame(ack);
      EXPECT_EQ(::write(c, reply.data(), reply.size()), static_cast<ssize_t>(reply.size()));
      // Whatever else the client sends, until it closes.
      for (ssize_t n; (n = ::read(c, buf, sizeof(buf))) > 0;)
        written_.append(buf, static_cast<size_t>(n));
    }
    ::close(c);
  }

  std::string token_, address_, written_;
  int fd_ = -1;
  std::thread thread_;
};

wire::Hello AgentHello() {
  wire::Hello h;
  h.set_protocol_version(kProtocolVersion);
  h.set_role(wire::Hello::AGENT);
  h.set_host("host-0");
  h.set_slots(2);
  return h;
}

TEST(Handshake, TheClientProvesTheTokenWithoutSendingIt) {
  const std::string token = std::string(48, 'k') + "secret";
  PlayedServer server(token);
  {
    auto sock =
        FramedSocket::ConnectAndHello(server.address(), AgentHello(), token, milliseconds(2000));
    ASSERT_TRUE(sock.ok()) << sock.status().ToString();
  }
  const std::string written = server.Written();
  ASSERT_TRUE(server.hello);
  EXPECT_EQ(server.hello->client_nonce().size(), auth::kNonceBytes);
  EXPECT_EQ(server.hello->proof().size(), auth::kProofBytes);
  EXPECT_EQ(written.find(token), std::string::npos) << "the token went over the wire";
  EXPECT_EQ(written.find("secret"), std::string::npos) << "part of the token went over the wire";
}

TEST(Handshake, AServerThatCannotProveTheTokenIsNotTrusted) {
  PlayedServer impostor("not-the-job-token");
  auto sock = FramedSocket::ConnectAndHello(impostor.address(), AgentHello(), "the-job-token",
                                            milliseconds(2000));
  ASSERT_FALSE(sock.ok());
  EXPECT_EQ(sock.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(sock.status().message().find("did not prove that it holds the job's token"),
            std::string::npos)
      << sock.status().ToString();
}

}  // namespace
}  // namespace vigil
