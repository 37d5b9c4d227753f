// A real vigild process, spoken to over TCP: the handshake, the rendezvous
// store on the wire, hostile input, /metrics, and shutdown by signal.
#include <gtest/gtest.h>

#include <thread>

#include <nlohmann/json.hpp>

#include "common/auth.h"
#include "common/framed_socket.h"
#include "common/fs.h"
#include "common/host_storage.h"
#include "common/http_client.h"
#include "common/process.h"
#include "common/util.h"
#include "logbook/logbook.h"
#include "tests/integration/process_util.h"
#include "tests/integration/vigild_fixture.h"
#include "tests/unit/test_util.h"

namespace vigil {
namespace {

using nlohmann::json;
using std::chrono::milliseconds;
using testing::TempDir;

class VigildTest : public testing::VigildProcessTest {
 protected:
  std::string JobYaml() override {
    return "name: proto\nmodel: {d_model: 16, heads: 2}\nschedule: {steps: 10}\n"
           "world: {hosts: 2, ranks_per_host: 1}\nlimits: {agent_wait_ms: 60000}\n";
  }
};

TEST_F(VigildTest, RejectsBadTokenAndProtocolVersion) {
  auto bad =
      FramedSocket::ConnectAndHello(rpc_, StoreHello(), std::string(64, 'a'), milliseconds(2000));
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("authentication failed"), std::string::npos)
      << bad.status().ToString();
  auto hello = StoreHello();
  hello.set_protocol_version(99);
  auto old = FramedSocket::ConnectAndHello(rpc_, hello, token_, milliseconds(2000));
  ASSERT_FALSE(old.ok());
  EXPECT_NE(old.status().message().find("protocol version"), std::string::npos);
  EXPECT_TRUE(StillServing());
}

// An agent counts only once it has checked the job's storage (HostReady).
// One that cannot see it is refused: a host_refused event naming the
// problem, a metric, its connection closed, and the job waits on for hosts.
TEST_F(VigildTest, AnAgentThatCannotSeeTheStorageIsRefusedAndRecorded) {
  wire::Hello h;
  h.set_protocol_version(kProtocolVersion);
  h.set_role(wire::Hello::AGENT);
  h.set_host("host-nfs-down");
  h.set_slots(1);
  h.set_pid(4242);
  wire::HelloAck ack;
  auto agent = FramedSocket::ConnectAndHello(rpc_, h, token_, milliseconds(2000), &ack);
  ASSERT_TRUE(agent.ok()) << agent.status().ToString();
  // The ack names the run's storage, marked by vigild.
  EXPECT_NE(ack.checkpoint_dir().find(dir_ / "work/checkpoints/run-"), std::string::npos)
      << ack.checkpoint_dir();
  EXPECT_EQ(ack.log_dir(), dir_ / "work/logs");
  EXPECT_TRUE(CheckHostStorage("h", ack.checkpoint_dir(), ack.storage_id(), ack.log_dir()).ok());
  wire::Envelope ready;
  ready.mutable_host_ready()->set_ok(false);
  ready.mutable_host_ready()->set_problem("host host-nfs-down: cannot see /shared");
  ASSERT_TRUE(agent->Send(ready).ok());
  auto closed = agent->Receive(milliseconds(3000));
  EXPECT_FALSE(closed.ok()) << "vigild closes a refused agent's connection";

  // An agent that skips its check is dropped at its first other message.
  h.set_host("host-skips");
  auto skipper = FramedSocket::ConnectAndHello(rpc_, h, token_, milliseconds(2000));
  ASSERT_TRUE(skipper.ok());
  wire::Envelope beat;
  beat.mutable_heartbeat();
  ASSERT_TRUE(skipper->Send(beat).ok());
  EXPECT_FALSE(skipper->Receive(milliseconds(3000)).ok());

  std::vector<EventRow> refused;
  for (int i = 0; i < 100 && refused.empty(); ++i) {
    auto lb = Logbook::Open(dir_ / "work/logbook.sqlite", false);
    if (lb.ok()) {
      const auto events = lb.value()->Events(lb.value()->Runs().value().back().id);
      for (const auto& e : events.ok() ? events.value() : std::vector<EventRow>()) {
        if (e.kind == "host_refused") refused.push_back(e);
      }
    }
    if (refused.empty()) std::this_thread::sleep_for(milliseconds(50));
  }
  ASSERT_EQ(refused.size(), 1u);
  EXPECT_EQ(refused[0].host, "host-nfs-down");
  EXPECT_NE(refused[0].detail_json.find("cannot see /shared"), std::string::npos);
  auto metrics = HttpGet(http_, "/metrics", milliseconds(2000));
  ASSERT_TRUE(metrics.ok());
  EXPECT_NE(metrics->body.find("vigil_host_refused_total{host=\"host-nfs-down\"} 1"),
            std::string::npos);
  // Neither counts: the status still waits for the job's hosts.
  auto status = HttpGet(http_, "/api/v1/status", milliseconds(2000), token_);
  ASSERT_TRUE(status.ok());
  EXPECT_EQ(json::parse(status->body).value("state", ""), "pending");
  EXPECT_TRUE(StillServing());
}

TEST_F(VigildTest, StoreOverTheWireWaitsAndTimesOut) {
  auto a = FramedSocket::ConnectAndHello(rpc_, StoreHello(), token_, milliseconds(2000)).value();
  auto b = FramedSocket::ConnectAndHello(rpc_, StoreHello(), token_, milliseconds(2000)).value();
  // A GET parked on one connection is answered by a SET on another.
  wire::Envelope get;
  get.mutable_store_request()->set_id(500);
  get.mutable_store_request()->set_op(wire::StoreRequest::GET);
  get.mutable_store_request()->add_keys("gen-0/rank-1");
  get.mutable_store_request()->set_timeout_ms(5000);
  ASSERT_TRUE(a.Send(get).ok());
  EXPECT_EQ(a.Receive(milliseconds(200)).status().code(), StatusCode::kTimeout);  // still parked
  EXPECT_TRUE(Call(b, wire::StoreRequest::SET, "gen-0/rank-1", "addr").ok());
  auto answered = a.Receive(milliseconds(2000));
  ASSERT_TRUE(answered.ok());
  EXPECT_EQ(answered->store_response().id(), 500u);
  EXPECT_EQ(answered->store_response().value(), "addr");
  // A key nobody sets times out with a named error, at about its deadline.
  const auto t0 = std::chrono::steady_clock::now();
  auto missing = Call(a, wire::StoreRequest::GET, "gen-0/never", "", 300);
  const auto waited = std::chrono::steady_clock::now() - t0;
  EXPECT_FALSE(missing.ok());
  EXPECT_TRUE(missing.timed_out());
  EXPECT_NE(missing.error().find("gen-0/never"), std::string::npos);
  EXPECT_GE(waited, milliseconds(300));
  EXPECT_LT(waited, milliseconds(1500));
}

// A Hello that proves the token on one connection proves nothing on
// another: the server's nonce differs. The handshake recorded and replayed
// whole is refused, and vigild serves on.
TEST_F(VigildTest, AReplayedHandshakeIsRefused) {
  std::string nonce;
  auto first = Challenged(&nonce);
  wire::Envelope hello;
  *hello.mutable_hello() = StoreHello();
  hello.mutable_hello()->set_client_nonce(auth::RandomNonce());
  hello.mutable_hello()->set_proof(auth::ClientProof(token_, nonce, hello.hello().client_nonce(),
                                                     wire::Hello::STORE_CLIENT, "test"));
  ASSERT_TRUE(first.Send(hello).ok());
  auto ack = first.Receive(milliseconds(2000));
  ASSERT_TRUE(ack.ok() && ack->hello_ack().ok()) << "the genuine handshake is accepted";
  EXPECT_TRUE(auth::ProofsEqual(ack->hello_ack().server_proof(),
                                auth::ServerProof(token_, hello.hello().client_nonce(), nonce)));

  auto replay = Challenged();
  ASSERT_TRUE(replay.Send(hello).ok());
  auto refused = replay.Receive(milliseconds(2000));
  ASSERT_TRUE(refused.ok()) << refused.status().ToString();
  EXPECT_FALSE(refused->hello_ack().ok());
  EXPECT_NE(refused->hello_ack().error().find("authentication failed"), std::string::npos)
      << refused->hello_ack().error();
  EXPECT_TRUE(refused->hello_ack().server_proof().empty()) << "no proof for a refused client";
  EXPECT_EQ(replay.Receive(milliseconds(2000)).status().code(), StatusCode::kUnavailable);
  // Nor does a proof made for one role serve another.
  std::string nonce2;
  auto other_role = Challenged(&nonce2);
  wire::Envelope as_control = hello;
  as_control.mutable_hello()->set_role(wire::Hello::CONTROL);
  as_control.mutable_hello()->set_proof(auth::ClientProof(
      token_, nonce2, hello.hello().client_nonce(), wire::Hello::STORE_CLIENT, "test"));
  ASSERT_TRUE(other_role.Send(as_control).ok());
  auto refused2 = other_role.Receive(milliseconds(2000));
  ASSERT_TRUE(refused2.ok());
  EXPECT_FALSE(refused2->hello_ack().ok());
  EXPECT_TRUE(StillServing());
}

TEST_F(VigildTest, MalformedInputDropsOnlyThatConnection) {
  // Garbage instead of a Hello.
  auto raw = Challenged();
  ASSERT_TRUE(raw.SendRaw(std::string("\x00\x00\x00\x05\xff\xff\xff\xff\xff", 9)).ok());
  EXPECT_EQ(raw.Receive(milliseconds(2000)).status().code(), StatusCode::kUnavailable);
  // A frame announcing 1 GiB.
  auto big = Challenged();
  ASSERT_TRUE(big.SendRaw(std::string("\x40\x00\x00\x00", 4)).ok());
  EXPECT_EQ(big.Receive(milliseconds(2000)).status().code(), StatusCode::kUnavailable);
  // A valid frame that is not a Hello.
  auto rude = Challenged();
  wire::Envelope hb;
  hb.mutable_heartbeat();
  ASSERT_TRUE(rude.Send(hb).ok());
  EXPECT_EQ(rude.Receive(milliseconds(2000)).status().code(), StatusCode::kUnavailable);
  // A store client that talks like an agent after its Hello.
  auto confused =
      FramedSocket::ConnectAndHello(rpc_, StoreHello(), token_, milliseconds(2000)).value();
  ASSERT_TRUE(confused.Send(hb).ok());
  EXPECT_EQ(confused.Receive(milliseconds(2000)).status().code(), StatusCode::kUnavailable);
  EXPECT_TRUE(StillServing());
  EXPECT_EQ(::waitpid(pid_, nullptr, WNOHANG), 0) << "vigild died";
}

TEST_F(VigildTest, ServesMetricsAndStatus) {
  auto metrics = HttpGet(http_, "/metrics", milliseconds(2000));
  ASSERT_TRUE(metrics.ok()) << metrics.status().ToString();
  EXPECT_EQ(metrics->status, 200);
  for (const char* name :
       {"vigil_step ", "vigil_loss ", "vigil_tokens_per_second ", "vigil_live_ranks ",
        "vigil_restarts_total{reason=\"process_exit\"} 0",
        "vigil_failures_detected_total{kind=\"process_exit\"} 0",
        "vigil_job_state{state=\"pending\"} 1", "vigil_step_duration_seconds_bucket"}) {
    EXPECT_NE(metrics->body.find(name), std::string::npos) << name;
  }
  auto status = HttpGet(http_, "/api/v1/status", milliseconds(2000), token_);
  ASSERT_TRUE(status.ok());
  json s = json::parse(status->body);
  EXPECT_EQ(s["state"], "pending");
  EXPECT_EQ(s["total_steps"], 10);
  EXPECT_EQ(HttpGet(http_, "/nope", milliseconds(2000))->status, 404);
}

TEST_F(VigildTest, SigtermEndsTheRunInTheLogbook) {
  ASSERT_EQ(::kill(pid_, SIGTERM), 0);
  int status = 0;
  ASSERT_EQ(::waitpid(pid_, &status, 0), pid_);
  pid_ = -1;
  EXPECT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 1);
  auto lb = Logbook::Open(dir_ / "work/logbook.sqlite", false);
  ASSERT_TRUE(lb.ok());
  auto runs = lb.value()->Runs().value();
  ASSERT_EQ(runs.size(), 1u);
  EXPECT_EQ(runs[0].status, "cancelled");
  auto events = lb.value()->Events(runs[0].id).value();
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].kind, "coordinator_stopped");
}

// Every start of a vigild takes a new coordinator epoch, recorded in the
// logbook, and tells it to each agent in the HelloAck and on every message.
TEST_F(VigildTest, EachStartTakesANewEpochThatAgentsHear) {
  auto hello_as_agent = [&](const std::string& rpc) {
    wire::Hello h;
    h.set_protocol_version(kProtocolVersion);
    h.set_role(wire::Hello::AGENT);
    h.set_host("host-a");
    h.set_slots(1);
    wire::HelloAck ack;
    auto s = FramedSocket::ConnectAndHello(rpc, h, token_, milliseconds(2000), &ack);
    EXPECT_TRUE(s.ok()) << s.status().ToString();
    return ack;
  };
  EXPECT_EQ(hello_as_agent(rpc_).epoch(), 1u);
  const pid_t first = pid_;
  ASSERT_EQ(::kill(pid_, SIGTERM), 0);
  ASSERT_EQ(::waitpid(pid_, nullptr, 0), pid_);
  std::filesystem::remove(dir_ / "work/vigild.addr");
  pid_ =
      testing::StartVigild(dir_ / "job.yaml", dir_ / "work", dir_ / "token", dir_ / "vigild2.log");
  ASSERT_GT(pid_, 0);
  auto addr = testing::WaitForVigildAddress(dir_ / "work", std::chrono::seconds(10));
  ASSERT_TRUE(addr) << testing::Slurp(dir_ / "vigild2.log");
  EXPECT_EQ(hello_as_agent(addr->rpc).epoch(), 2u);
  auto metrics = HttpGet(addr->http, "/metrics", milliseconds(2000));
  ASSERT_TRUE(metrics.ok());
  EXPECT_NE(metrics->body.find("vigil_coordinator_epoch 2"), std::string::npos);

  auto lb = Logbook::Open(dir_ / "work/logbook.sqlite", false);
  ASSERT_TRUE(lb.ok());
  std::vector<EpochRow> epochs;
  const auto runs = lb.value()->Runs().value();
  for (const auto& run : runs) {
    const auto of_run = lb.value()->Epochs(run.id).value();
    epochs.insert(epochs.end(), of_run.begin(), of_run.end());
  }
  ASSERT_EQ(epochs.size(), 2u);
  EXPECT_EQ(epochs[0].epoch, 1);
  EXPECT_EQ(epochs[0].pid, first);
  EXPECT_EQ(epochs[1].epoch, 2);
  EXPECT_EQ(epochs[1].pid, pid_);
  EXPECT_FALSE(epochs[1].host.empty());
}

}  // namespace
}  // namespace vigil
