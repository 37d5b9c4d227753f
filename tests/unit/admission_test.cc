// The bounds on vigild's connections (coordinator/admission.h), as logic:
// deadlines, eviction of the oldest handshake, the cap on authenticated
// connections, and the auth_failure rows' rate limit.
#include "coordinator/admission.h"

#include <gtest/gtest.h>

#include <optional>

namespace vigil::coordinator {
namespace {

constexpr int64_t kMs = 1000;

SecuritySpec Security(int max_handshakes, int max_connections) {
  SecuritySpec s;
  s.handshake_timeout_ms = 2000;
  s.control_idle_ms = 500;
  s.max_handshakes = max_handshakes;
  s.max_connections = max_connections;
  return s;
}

TEST(Admission, AHandshakeNotDoneByItsDeadlineExpiresOldestFirst) {
  Admission a(Security(10, 10), WorldSpec{});
  a.Accepted(1, 0);
  a.Accepted(2, 500 * kMs);
  EXPECT_TRUE(a.Expired(1999 * kMs).empty());
  auto due = a.Expired(2000 * kMs);
  ASSERT_EQ(due.size(), 1u);
  EXPECT_EQ(due[0].first, 1u);
  EXPECT_EQ(due[0].second, auth_reason::kTimeout);
  EXPECT_EQ(a.Expired(2500 * kMs).size(), 2u);
  ASSERT_TRUE(a.Authenticated(2, /*control=*/false, 600 * kMs).ok());
  EXPECT_EQ(a.Expired(10'000 * kMs).size(), 1u) << "an authenticated connection has no deadline";
}

TEST(Admission, OneAcceptedPastTheCapEvictsTheOldestHandshake) {
  Admission a(Security(3, 100), WorldSpec{});
  constexpr int64_t kOldEnough = 500'000;  // a quarter of the 2 s handshake timeout
  for (uint64_t id = 1; id <= 3; ++id) EXPECT_TRUE(a.Accepted(id, 0).empty());
  EXPECT_EQ(a.Accepted(4, kOldEnough), std::vector<uint64_t>{1});
  EXPECT_EQ(a.handshakes(), 3u);
  EXPECT_FALSE(a.handshaking(1));
  // An authenticated connection is no handshake: it is never evicted.
  ASSERT_TRUE(a.Authenticated(2, false, kOldEnough).ok());
  EXPECT_EQ(a.Accepted(5, kOldEnough), std::vector<uint64_t>{});
  EXPECT_EQ(a.Accepted(6, kOldEnough), std::vector<uint64_t>{3});
}

// A flooder that reconnects at once cannot make vigild churn: a handshake
// younger than a quarter of the timeout is not evicted, and while all are,
// accepting waits until the oldest is old enough.
TEST(Admission, AtTheCapAYoungHandshakeIsKeptAndAcceptingPauses) {
  Admission a(Security(2, 100), WorldSpec{});
  EXPECT_TRUE(a.Accepted(1, 100'000).empty());
  EXPECT_FALSE(a.AcceptPausedUntil(100'000)) << "below the cap";
  EXPECT_TRUE(a.Accepted(2, 200'000).empty());
  EXPECT_EQ(a.AcceptPausedUntil(300'000), std::optional<int64_t>(600'000));
  // Accepted anyway (it was, before the pause): one over the cap, nobody evicted.
  EXPECT_TRUE(a.Accepted(3, 300'000).empty());
  EXPECT_EQ(a.handshakes(), 3u);
  EXPECT_FALSE(a.AcceptPausedUntil(600'000)) << "the oldest may be evicted now";
  EXPECT_EQ(a.Accepted(4, 700'000), (std::vector<uint64_t>{1, 2}));
  EXPECT_EQ(a.handshakes(), 2u);
}

TEST(Admission, AuthenticatedConnectionsAreCapped) {
  Admission a(Security(10, 2), WorldSpec{});
  for (uint64_t id = 1; id <= 3; ++id) a.Accepted(id, 0);
  EXPECT_TRUE(a.Authenticated(1, false, 0).ok());
  EXPECT_TRUE(a.Authenticated(2, false, 0).ok());
  Status full = a.Authenticated(3, false, 0);
  EXPECT_EQ(full.code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(full.message().find("security.max_connections (2)"), std::string::npos)
      << full.message();
  a.Closed(1);
  EXPECT_TRUE(a.Authenticated(3, false, 0).ok()) << "room again once one closed";
}

TEST(Admission, TheDefaultCapIsDerivedFromTheWorld) {
  WorldSpec w;
  w.hosts = 4;
  w.spares = 1;
  w.ranks_per_host = 8;
  SecuritySpec s;
  EXPECT_EQ(s.MaxConnections(w), 5 * 9 * 2 + 64);
  s.max_connections = 7;
  EXPECT_EQ(s.MaxConnections(w), 7);
}

TEST(Admission, AControlConnectionMustAskWithinItsIdleTime) {
  Admission a(Security(10, 10), WorldSpec{});
  a.Accepted(1, 0);
  a.Accepted(2, 0);
  ASSERT_TRUE(a.Authenticated(1, /*control=*/true, 100 * kMs).ok());
  ASSERT_TRUE(a.Authenticated(2, /*control=*/true, 100 * kMs).ok());
  a.Served(2);
  auto due = a.Expired(600 * kMs);
  ASSERT_EQ(due.size(), 1u);
  EXPECT_EQ(due[0], (std::pair<uint64_t, std::string>{1, "idle"}));
}

TEST(AuthFailureLog, TheFirstFailureOfASourceIsRecordedAtOnceTheRestAtTheWindowsEnd) {
  AuthFailureLog log(60'000 * kMs);
  auto first = log.Failed("10.0.0.9", auth_reason::kBadProof, 0);
  ASSERT_TRUE(first.has_value());
  EXPECT_EQ(first->source, "10.0.0.9");
  EXPECT_EQ(first->count, 1);
  for (int i = 1; i <= 5; ++i) {
    EXPECT_FALSE(log.Failed("10.0.0.9", i % 2 ? auth_reason::kTimeout : auth_reason::kBadProof,
                            i * 1000 * kMs));
  }
  // Another source has its own window.
  EXPECT_TRUE(log.Failed("10.0.0.7", auth_reason::kMalformed, 3000 * kMs).has_value());
  EXPECT_TRUE(log.Flush(59'999 * kMs).empty());
  auto rows = log.Flush(60'000 * kMs);
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0].source, "10.0.0.9");
  EXPECT_EQ(rows[0].count, 5);
  EXPECT_EQ(rows[0].reasons.at(auth_reason::kTimeout), 3);
  EXPECT_EQ(rows[0].reasons.at(auth_reason::kBadProof), 2);
  EXPECT_EQ(rows[0].first_us, 1000 * kMs);
  EXPECT_EQ(rows[0].last_us, 5000 * kMs);
  // The row just given opened a new window: a failure in it waits for its end.
  EXPECT_FALSE(log.Failed("10.0.0.9", auth_reason::kBadProof, 61'000 * kMs));
  EXPECT_EQ(log.Flush(119'999 * kMs).size(), 0u);
  EXPECT_EQ(log.Flush(120'000 * kMs).size(), 1u);
  // A window without failures forgets the source: its next is recorded at once.
  EXPECT_TRUE(log.Flush(180'000 * kMs).empty());
  EXPECT_TRUE(log.Failed("10.0.0.9", auth_reason::kBadProof, 181'000 * kMs).has_value());
}

TEST(AuthFailureLog, StoppingRecordsWhatWasCountedAndTooManySourcesShareARow) {
  AuthFailureLog log(60'000 * kMs);
  log.Failed("a", auth_reason::kBadProof, 0);
  log.Failed("a", auth_reason::kBadProof, 1);
  auto rows = log.FlushAll();
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0].count, 1);
  // Past kMaxSources distinct sources, the rest are counted together.
  AuthFailureLog many(60'000 * kMs);
  for (size_t i = 0; i < AuthFailureLog::kMaxSources; ++i)
    EXPECT_TRUE(many.Failed("10.1." + std::to_string(i), auth_reason::kTimeout, 0));
  auto other = many.Failed("10.2.0.1", auth_reason::kTimeout, 0);
  ASSERT_TRUE(other.has_value());
  EXPECT_EQ(other->source, AuthFailureLog::kOtherSources);
  EXPECT_FALSE(many.Failed("10.2.0.2", auth_reason::kTimeout, 0));
}

}  // namespace
}  // namespace vigil::coordinator
