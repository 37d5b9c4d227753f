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
#include "common/handshake.h"
#include "common/vocabulary.h"

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

// A Hello as the client makes it, proving `token` over `challenge`.
wire::Hello ProvingHello(const std::string& token, const wire::Envelope& challenge,
                         const std::string& client_nonce) {
  wire::Hello h = AgentHello();
  h.set_client_nonce(client_nonce);
  h.set_proof(auth::ClientProof(token, challenge.challenge().server_nonce(), client_nonce, h.role(),
                                h.host()));
  return h;
}

TEST(ServerHandshake, AcceptsTheTokensProofOnceAndProvesItselfInTurn) {
  const std::string token(48, 't');
  ServerHandshake server(token);
  const wire::Envelope challenge = server.Challenge();
  EXPECT_EQ(challenge.challenge().protocol_version(), kProtocolVersion);
  const std::string nonce = auth::RandomNonce();
  const wire::Hello hello = ProvingHello(token, challenge, nonce);
  EXPECT_TRUE(server.Check(hello).ok());
  const wire::Envelope ack = server.Accept();
  EXPECT_TRUE(ack.hello_ack().ok());
  EXPECT_TRUE(
      auth::ProofsEqual(ack.hello_ack().server_proof(),
                        auth::ServerProof(token, nonce, challenge.challenge().server_nonce())));
  // The nonce served one Hello: the same Hello again (a replay) fails.
  const auto again = server.Check(hello);
  EXPECT_FALSE(again.ok());
  EXPECT_STREQ(again.reason, auth_reason::kBadProof);
}

TEST(ServerHandshake, RefusesAnotherProtocolAWrongTokenAndAnyHelloWithoutAToken) {
  const std::string token(48, 't');
  {
    ServerHandshake server(token);
    wire::Hello hello = ProvingHello(token, server.Challenge(), auth::RandomNonce());
    hello.set_protocol_version(kProtocolVersion - 1);
    EXPECT_STREQ(server.Check(hello).reason, auth_reason::kProtocol);
    // The refused Hello used the nonce up: a right one behind it fails too.
    hello.set_protocol_version(kProtocolVersion);
    EXPECT_STREQ(server.Check(hello).reason, auth_reason::kBadProof);
  }
  {
    ServerHandshake server(token);
    const auto v =
        server.Check(ProvingHello("another-token", server.Challenge(), auth::RandomNonce()));
    EXPECT_STREQ(v.reason, auth_reason::kBadProof);
    EXPECT_NE(v.message.find("does not prove"), std::string::npos);
    EXPECT_EQ(server.server_proof(), "");
  }
  {
    ServerHandshake server(token);
    // A proof for a nonce of the wrong size.
    EXPECT_FALSE(server.Check(ProvingHello(token, server.Challenge(), "short")).ok());
  }
  {
    ServerHandshake no_token;  // never trusts anyone, not even a proof under ""
    EXPECT_FALSE(no_token.Check(ProvingHello("", no_token.Challenge(), auth::RandomNonce())).ok());
  }
  {
    ServerHandshake server(token);  // a Hello before any Challenge
    wire::Envelope none;
    none.mutable_challenge()->set_server_nonce("");
    EXPECT_FALSE(server.Check(ProvingHello(token, none, auth::RandomNonce())).ok());
  }
}

}  // namespace
}  // namespace vigil
