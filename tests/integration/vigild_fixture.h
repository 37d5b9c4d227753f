// A real vigild process for a test to speak to over TCP: started on a job
// of the test's (whose agents never come, so it launches nothing), with
// helpers for the handshake and the rendezvous store on the wire.
#pragma once

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>

#include <fstream>
#include <string>

#include "common/auth.h"
#include "common/framed_socket.h"
#include "common/fs.h"
#include "common/util.h"
#include "tests/integration/process_util.h"
#include "tests/unit/test_util.h"

namespace vigil::testing {

using std::chrono::milliseconds;

class VigildProcessTest : public ::testing::Test {
 protected:
  // The job vigild runs (it waits for agents that never come).
  virtual std::string JobYaml() = 0;

  void SetUp() override {
    std::ofstream(dir_ / "job.yaml") << JobYaml();
    token_ = WriteTokenFile(dir_ / "token").value();
    pid_ = StartVigild(dir_ / "job.yaml", dir_ / "work", dir_ / "token", dir_ / "vigild.log");
    ASSERT_GT(pid_, 0);
    auto addr = WaitForVigildAddress(dir_ / "work", std::chrono::seconds(10));
    if (addr) {
      rpc_ = addr->rpc;
      http_ = addr->http;
    }
    ASSERT_FALSE(rpc_.empty()) << Slurp(dir_ / "vigild.log");
  }
  void TearDown() override {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
  }

  wire::Hello StoreHello() {
    wire::Hello h;
    h.set_protocol_version(kProtocolVersion);
    h.set_role(wire::Hello::STORE_CLIENT);
    h.set_host("test");
    return h;
  }

  wire::StoreResponse Call(FramedSocket& s, wire::StoreRequest::Op op, const std::string& key,
                           const std::string& value = "", uint32_t timeout_ms = 1000) {
    wire::Envelope env;
    auto* r = env.mutable_store_request();
    r->set_id(++id_);
    r->set_op(op);
    r->add_keys(key);
    r->set_value(value);
    r->set_timeout_ms(timeout_ms);
    EXPECT_TRUE(s.Send(env).ok());
    auto reply = s.Receive(milliseconds(timeout_ms + 3000));
    EXPECT_TRUE(reply.ok()) << reply.status().ToString();
    return reply.ok() ? reply->store_response() : wire::StoreResponse();
  }

  // A connection that has read vigild's Challenge and said nothing yet.
  FramedSocket Challenged(std::string* server_nonce = nullptr) {
    auto s = FramedSocket::Connect(rpc_, milliseconds(2000));
    EXPECT_TRUE(s.ok()) << s.status().ToString();
    if (!s.ok()) return FramedSocket();
    auto c = s->Receive(milliseconds(2000));
    EXPECT_TRUE(c.ok() && c->has_challenge()) << "vigild speaks first, with a Challenge";
    if (c.ok()) {
      EXPECT_EQ(c->challenge().server_nonce().size(), auth::kNonceBytes);
      if (server_nonce) *server_nonce = c->challenge().server_nonce();
    }
    return std::move(s.value());
  }

  // True if vigild still answers a store round trip on a fresh connection.
  bool StillServing() {
    auto s = FramedSocket::ConnectAndHello(rpc_, StoreHello(), token_, milliseconds(2000));
    if (!s.ok()) return false;
    auto set = Call(s.value(), wire::StoreRequest::SET, "alive", "yes");
    auto get = Call(s.value(), wire::StoreRequest::GET, "alive");
    return set.ok() && get.ok() && get.value() == "yes";
  }

  TempDir dir_;
  std::string token_, rpc_, http_;
  pid_t pid_ = -1;
  uint64_t id_ = 0;
};

}  // namespace vigil::testing
