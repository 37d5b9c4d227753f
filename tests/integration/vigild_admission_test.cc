// A real vigild holds its RPC port to the bounds of the job's `security`
// section (coordinator/admission.h): a handshake has a deadline, a frame
// before authentication is Hello-sized, a flood of handshakes evicts the
// oldest and leaves room for the job's own clients, authenticated
// connections are capped, an idle CLI is closed, and every failure is
// counted in a metric and recorded at most once per source per minute.
#include <gtest/gtest.h>

#include <vector>

#include <nlohmann/json.hpp>

#include "common/http_client.h"
#include "logbook/logbook.h"
#include "tests/integration/vigild_fixture.h"

namespace vigil {
namespace {

using nlohmann::json;
using std::chrono::milliseconds;
using std::chrono::steady_clock;

class Admission : public testing::VigildProcessTest {
 protected:
  std::string JobYaml() override {
    return "name: admission\nmodel: {d_model: 16, heads: 2}\nschedule: {steps: 10}\n"
           "world: {hosts: 2, ranks_per_host: 1}\nlimits: {agent_wait_ms: 60000}\n"
           "security: {handshake_timeout_ms: 500, max_handshakes: 50, max_connections: 6,\n"
           "           control_idle_ms: 500}\n";
  }

  // vigil_auth_failures_total{reason=...} as /metrics has it now (-1: unread).
  double AuthFailures(const std::string& reason) {
    return Metric("vigil_auth_failures_total", "reason", reason);
  }
  double Connections(const std::string& state) {
    return Metric("vigil_rpc_connections", "state", state);
  }
  double Metric(const std::string& name, const std::string& label, const std::string& value) {
    auto m = HttpGet(http_, "/metrics", milliseconds(2000));
    if (!m.ok()) return -1;
    const std::string series = name + "{" + label + "=\"" + value + "\"} ";
    const auto at = m->body.find(series);
    return at == std::string::npos ? -1 : std::stod(m->body.substr(at + series.size()));
  }
  // Waits until the metric reads `want` (or more, with at_least).
  bool AuthFailuresReach(const std::string& reason, double want, bool at_least = false) {
    return testing::WaitUntil(
        [&] {
          const double v = AuthFailures(reason);
          return at_least ? v >= want : v == want;
        },
        milliseconds(5000));
  }
  // Stops vigild (it records what it counted) and reads its auth_failure rows.
  std::vector<EventRow> AuthFailureRowsAfterStop() {
    EXPECT_EQ(::kill(pid_, SIGTERM), 0);
    ::waitpid(pid_, nullptr, 0);
    pid_ = -1;
    auto lb = Logbook::Open(dir_ / "work/logbook.sqlite", false);
    EXPECT_TRUE(lb.ok());
    if (!lb.ok()) return {};
    std::vector<EventRow> rows;
    const std::vector<EventRow> events =
        lb.value()->Events(lb.value()->Runs().value().at(0).id).value();
    for (const auto& e : events)
      if (e.kind == kind::kAuthFailure) rows.push_back(e);
    return rows;
  }
  // Milliseconds until vigild closes `s` (which says nothing more).
  int64_t MsUntilClosed(FramedSocket& s) {
    const auto t0 = steady_clock::now();
    auto r = s.Receive(milliseconds(5000));
    EXPECT_EQ(r.status().code(), StatusCode::kUnavailable) << r.status().ToString();
    return std::chrono::duration_cast<milliseconds>(steady_clock::now() - t0).count();
  }
};

TEST_F(Admission, AWrongTokenIsCountedEachTimeAndRecordedOncePerSourcePerMinute) {
  for (int i = 0; i < 5; ++i) {
    auto bad =
        FramedSocket::ConnectAndHello(rpc_, StoreHello(), std::string(64, 'b'), milliseconds(2000));
    ASSERT_FALSE(bad.ok());
    EXPECT_NE(bad.status().message().find("authentication failed"), std::string::npos);
  }
  EXPECT_TRUE(AuthFailuresReach(auth_reason::kBadProof, 5)) << AuthFailures(auth_reason::kBadProof);
  EXPECT_TRUE(StillServing());
  const std::string log = testing::Slurp(dir_ / "vigild.log");
  EXPECT_EQ(log.find("failed to authenticate"), log.rfind("failed to authenticate"))
      << "logged once:\n"
      << log;
  // The first at once; the four after it in the row owed at the minute's
  // end, which vigild records when it stops.
  auto rows = AuthFailureRowsAfterStop();
  ASSERT_EQ(rows.size(), 2u);
  const json first = json::parse(rows[0].detail_json), rest = json::parse(rows[1].detail_json);
  EXPECT_EQ(first["source"], "127.0.0.1");
  EXPECT_EQ(first["count"], 1);
  EXPECT_EQ(rest["count"], 4);
  EXPECT_EQ(rest["reasons"][auth_reason::kBadProof], 4);
}

TEST_F(Admission, TheHttpApiAnswersOnlyTheJobsTokenAndMetricsStayOpen) {
  for (const char* path : {"/api/v1/status", "/api/v1/hosts", "/api/v1/runs", "/api/v1/events"}) {
    auto none = HttpGet(http_, path, milliseconds(2000));
    ASSERT_TRUE(none.ok()) << path;
    EXPECT_EQ(none->status, 401) << path;
    auto wrong = HttpGet(http_, path, milliseconds(2000), std::string(64, 'w'));
    ASSERT_TRUE(wrong.ok()) << path;
    EXPECT_EQ(wrong->status, 401) << path;
    auto right = HttpGet(http_, path, milliseconds(2000), token_);
    ASSERT_TRUE(right.ok()) << path;
    EXPECT_EQ(right->status, 200) << path << ": " << right->body;
  }
  // /metrics needs no token unless security.metrics_token says so.
  auto metrics = HttpGet(http_, "/metrics", milliseconds(2000));
  ASSERT_TRUE(metrics.ok());
  EXPECT_EQ(metrics->status, 200);
  EXPECT_TRUE(AuthFailuresReach(auth_reason::kHttpToken, 8));
  auto rows = AuthFailureRowsAfterStop();
  ASSERT_EQ(rows.size(), 2u);
  const json first = json::parse(rows[0].detail_json), rest = json::parse(rows[1].detail_json);
  EXPECT_EQ(first["reasons"][auth_reason::kHttpToken], 1);
  EXPECT_EQ(rest["reasons"][auth_reason::kHttpToken], 7);
}

TEST_F(Admission, AHandshakeNotDoneInTimeIsClosedAtItsDeadline) {
  auto silent = Challenged();  // says nothing
  auto stalled = Challenged();
  ASSERT_TRUE(stalled.SendRaw(std::string("\x00\x00", 2)).ok());  // half a frame header
  const int64_t silent_ms = MsUntilClosed(silent);
  EXPECT_GE(silent_ms, 300);
  EXPECT_LE(silent_ms, 2000) << "security.handshake_timeout_ms is 500";
  EXPECT_LE(MsUntilClosed(stalled), 2000);
  EXPECT_TRUE(AuthFailuresReach(auth_reason::kTimeout, 2));
  EXPECT_TRUE(StillServing());
}

TEST_F(Admission, BeforeAuthenticationAFrameLargerThanAHelloIsRefused) {
  // 17 KiB announced: under the 16 MiB of an authenticated peer, over a Hello's.
  auto big = Challenged();
  ASSERT_TRUE(big.SendRaw(std::string("\x00\x00\x44\x00", 4)).ok());
  EXPECT_LT(MsUntilClosed(big), 300) << "refused on its header, not at the deadline";
  // A Hello cut short, then the connection closed.
  auto cut = Challenged();
  ASSERT_TRUE(cut.SendRaw(std::string("\x00\x00\x00\x40\x0a\x02", 6)).ok());
  cut = FramedSocket();
  EXPECT_TRUE(AuthFailuresReach(auth_reason::kMalformed, 2))
      << AuthFailures(auth_reason::kMalformed);
  // Once authenticated, a frame that size is fine.
  auto ok = FramedSocket::ConnectAndHello(rpc_, StoreHello(), token_, milliseconds(2000));
  ASSERT_TRUE(ok.ok()) << ok.status().ToString();
  const std::string value(20 << 10, 'v');
  auto set = Call(ok.value(), wire::StoreRequest::SET, "big", value);
  EXPECT_TRUE(set.ok()) << set.error();
  EXPECT_EQ(Call(ok.value(), wire::StoreRequest::GET, "big").value(), value);
}

TEST_F(Admission, AFloodOfIdleHandshakesCannotKeepTheJobsOwnClientsOut) {
  std::vector<FramedSocket> flood;
  for (int i = 0; i < 300; ++i) {
    auto s = FramedSocket::Connect(rpc_, milliseconds(2000));
    ASSERT_TRUE(s.ok()) << i << ": " << s.status().ToString();
    flood.push_back(std::move(s.value()));
  }
  // The job's own get in while the flood is held open.
  const auto t0 = steady_clock::now();
  EXPECT_TRUE(StillServing());
  EXPECT_LT(steady_clock::now() - t0, milliseconds(1000));
  EXPECT_TRUE(AuthFailuresReach(auth_reason::kEvicted, 250, /*at_least=*/true))
      << AuthFailures(auth_reason::kEvicted);
  EXPECT_LE(Connections("handshaking"), 50);
}

TEST_F(Admission, AuthenticatedConnectionsAreCappedAndAnIdleCliIsClosed) {
  std::vector<FramedSocket> clients;
  for (int i = 0; i < 6; ++i) {
    auto s = FramedSocket::ConnectAndHello(rpc_, StoreHello(), token_, milliseconds(2000));
    ASSERT_TRUE(s.ok()) << i << ": " << s.status().ToString();
    clients.push_back(std::move(s.value()));
  }
  EXPECT_EQ(Connections("authenticated"), 6);
  auto seventh = FramedSocket::ConnectAndHello(rpc_, StoreHello(), token_, milliseconds(2000));
  ASSERT_FALSE(seventh.ok());
  EXPECT_NE(seventh.status().message().find("security.max_connections (6)"), std::string::npos)
      << seventh.status().ToString();
  EXPECT_TRUE(AuthFailuresReach(auth_reason::kOverCapacity, 1));
  clients.pop_back();
  // Room again; a CLI that asks nothing within control_idle_ms is closed.
  wire::Hello control = StoreHello();
  control.set_role(wire::Hello::CONTROL);
  auto cli = FramedSocket::ConnectAndHello(rpc_, control, token_, milliseconds(2000));
  ASSERT_TRUE(cli.ok()) << cli.status().ToString();
  const int64_t idle_ms = MsUntilClosed(cli.value());
  EXPECT_GE(idle_ms, 300);
  EXPECT_LE(idle_ms, 2000);
  EXPECT_TRUE(
      testing::WaitUntil([&] { return Connections("authenticated") == 5; }, milliseconds(2000)));
}

}  // namespace
}  // namespace vigil
