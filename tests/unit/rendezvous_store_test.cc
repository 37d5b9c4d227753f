#include "coordinator/rendezvous_store.h"

#include <gtest/gtest.h>

#include <optional>
#include <vector>

namespace vigil::coordinator {
namespace {

using Clock = RendezvousStore::Clock;
using std::chrono::milliseconds;

wire::StoreRequest Req(wire::StoreRequest::Op op, std::vector<std::string> keys,
                       std::string value = "", uint32_t timeout_ms = 1000, int64_t delta = 0) {
  static uint64_t id = 0;
  wire::StoreRequest r;
  r.set_id(++id);
  r.set_op(op);
  for (auto& k : keys) r.add_keys(k);
  r.set_value(value);
  r.set_timeout_ms(timeout_ms);
  r.set_delta(delta);
  return r;
}

struct Capture {
  std::vector<wire::StoreResponse> got;
  RendezvousStore::Reply fn() {
    return [this](const wire::StoreResponse& r) { got.push_back(r); };
  }
};

TEST(RendezvousStore, SetThenGetAnswersAtOnce) {
  RendezvousStore store;
  Capture c;
  const auto now = Clock::now();
  store.Handle(Req(wire::StoreRequest::SET, {"a"}, "1"), 1, now, c.fn());
  store.Handle(Req(wire::StoreRequest::GET, {"a"}), 1, now, c.fn());
  ASSERT_EQ(c.got.size(), 2u);
  EXPECT_TRUE(c.got[1].ok());
  EXPECT_EQ(c.got[1].value(), "1");
}

TEST(RendezvousStore, GetParksUntilTheKeyIsSet) {
  RendezvousStore store;
  Capture getter, setter;
  const auto now = Clock::now();
  store.Handle(Req(wire::StoreRequest::GET, {"rank0/addr"}), 7, now, getter.fn());
  EXPECT_TRUE(getter.got.empty());
  EXPECT_EQ(store.parked(), 1u);
  store.Handle(Req(wire::StoreRequest::SET, {"rank0/addr"}, "127.0.0.1:9"), 8, now, setter.fn());
  ASSERT_EQ(getter.got.size(), 1u);
  EXPECT_TRUE(getter.got[0].ok());
  EXPECT_EQ(getter.got[0].value(), "127.0.0.1:9");
  EXPECT_EQ(store.parked(), 0u);
}

TEST(RendezvousStore, WaitNeedsEveryKey) {
  RendezvousStore store;
  Capture w, s;
  const auto now = Clock::now();
  store.Handle(Req(wire::StoreRequest::WAIT, {"x", "y"}), 1, now, w.fn());
  store.Handle(Req(wire::StoreRequest::SET, {"x"}, "1"), 2, now, s.fn());
  EXPECT_TRUE(w.got.empty());
  store.Handle(Req(wire::StoreRequest::SET, {"y"}, "1"), 2, now, s.fn());
  ASSERT_EQ(w.got.size(), 1u);
  EXPECT_TRUE(w.got[0].ok());
}

TEST(RendezvousStore, ParkedRequestsTimeOutAtTheirDeadline) {
  RendezvousStore store;
  Capture c;
  const auto t0 = Clock::now();
  store.Handle(Req(wire::StoreRequest::GET, {"never"}, "", 500), 1, t0, c.fn());
  store.Handle(Req(wire::StoreRequest::WAIT, {"never", "either"}, "", 2000), 1, t0, c.fn());
  auto next = store.Expire(t0 + milliseconds(499));
  EXPECT_TRUE(c.got.empty());
  ASSERT_TRUE(next.has_value());
  EXPECT_EQ(*next, t0 + milliseconds(500));
  store.Expire(t0 + milliseconds(500));
  ASSERT_EQ(c.got.size(), 1u);
  EXPECT_FALSE(c.got[0].ok());
  EXPECT_TRUE(c.got[0].timed_out());
  EXPECT_NE(c.got[0].error().find("never"), std::string::npos);
  EXPECT_FALSE(store.Expire(t0 + milliseconds(2000)).has_value());
  ASSERT_EQ(c.got.size(), 2u);
  EXPECT_TRUE(c.got[1].timed_out());
}

TEST(RendezvousStore, AddCountsAndWakesWaiters) {
  RendezvousStore store;
  Capture c, w;
  const auto now = Clock::now();
  store.Handle(Req(wire::StoreRequest::WAIT, {"count"}), 3, now, w.fn());
  store.Handle(Req(wire::StoreRequest::ADD, {"count"}, "", 0, 2), 1, now, c.fn());
  store.Handle(Req(wire::StoreRequest::ADD, {"count"}, "", 0, 5), 1, now, c.fn());
  ASSERT_EQ(c.got.size(), 2u);
  EXPECT_EQ(c.got[0].counter(), 2);
  EXPECT_EQ(c.got[1].counter(), 7);
  EXPECT_EQ(w.got.size(), 1u);
  store.Handle(Req(wire::StoreRequest::SET, {"text"}, "abc"), 1, now, c.fn());
  store.Handle(Req(wire::StoreRequest::ADD, {"text"}, "", 0, 1), 1, now, c.fn());
  EXPECT_FALSE(c.got.back().ok());
}

TEST(RendezvousStore, DroppedClientsLoseTheirParkedRequests) {
  RendezvousStore store;
  Capture c;
  const auto now = Clock::now();
  store.Handle(Req(wire::StoreRequest::GET, {"k"}), 42, now, c.fn());
  store.DropClient(42);
  EXPECT_EQ(store.parked(), 0u);
  Capture s;
  store.Handle(Req(wire::StoreRequest::SET, {"k"}, "v"), 1, now, s.fn());
  EXPECT_TRUE(c.got.empty());
}

TEST(RendezvousStore, ErasePrefixForgetsOneGeneration) {
  RendezvousStore store;
  Capture c;
  const auto now = Clock::now();
  for (const char* k : {"gen-0/a", "gen-0/b", "gen-1/a", "gen-10/a"}) {
    store.Handle(Req(wire::StoreRequest::SET, {k}, "v"), 1, now, c.fn());
  }
  store.ErasePrefix("gen-0/");
  EXPECT_EQ(store.keys(), 2u);
  store.Handle(Req(wire::StoreRequest::GET, {"gen-1/a"}), 1, now, c.fn());
  EXPECT_TRUE(c.got.back().ok());
}

TEST(RendezvousStore, MalformedRequestsAreRefused) {
  RendezvousStore store;
  Capture c;
  const auto now = Clock::now();
  store.Handle(Req(wire::StoreRequest::GET, {}), 1, now, c.fn());
  store.Handle(Req(wire::StoreRequest::SET, {"a", "b"}, "v"), 1, now, c.fn());
  store.Handle(Req(wire::StoreRequest::OP_UNSPECIFIED, {"a"}), 1, now, c.fn());
  ASSERT_EQ(c.got.size(), 3u);
  for (const auto& r : c.got) EXPECT_FALSE(r.ok());
  EXPECT_EQ(store.keys(), 0u);
}

}  // namespace
}  // namespace vigil::coordinator
