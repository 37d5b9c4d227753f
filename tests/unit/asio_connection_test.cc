// AsioConnection over a real socket pair: bytes read before the connection
// took over the socket (a synchronous handshake) are delivered first and in
// order, and a malformed frame closes the connection with a reason.
#include "common/asio_connection.h"

#include <gtest/gtest.h>

#include <vector>

namespace vigil {
namespace {

namespace asio = boost::asio;
using unix_proto = asio::local::stream_protocol;

wire::Envelope Step(uint64_t step) {
  wire::Envelope env;
  env.mutable_rank_report()->set_step(step);
  return env;
}

TEST(AsioConnection, DeliversBytesReadBeforeTheHandoverFirst) {
  asio::io_context io;
  unix_proto::socket ours(io), theirs(io);
  asio::local::connect_pair(ours, theirs);
  // A handshake reader took frame 1 and half of frame 2 off the socket...
  FrameReader handshake;
  const std::string f1 = EncodeFrame(Step(1)), f2 = EncodeFrame(Step(2)), f3 = EncodeFrame(Step(3));
  const std::string early = f1 + f2.substr(0, 3);
  handshake.Feed(early.data(), early.size());
  // ...and the rest is still in flight.
  asio::write(theirs, asio::buffer(f2.substr(3) + f3));

  std::vector<uint64_t> got;
  auto conn = std::make_shared<UnixConnection>(std::move(ours), 1);
  conn->Start(
      [&](const UnixConnection::Ptr&, wire::Envelope env) {
        got.push_back(env.rank_report().step());
        if (got.size() == 3) io.stop();
      },
      [&](const UnixConnection::Ptr&, const Status&) { io.stop(); }, handshake.TakeBuffered());
  io.run_for(std::chrono::seconds(5));
  EXPECT_EQ(got, (std::vector<uint64_t>{1, 2, 3}));
}

TEST(AsioConnection, MalformedFrameClosesWithAReason) {
  asio::io_context io;
  unix_proto::socket ours(io), theirs(io);
  asio::local::connect_pair(ours, theirs);
  asio::write(theirs, asio::buffer(std::string("\x7f\xff\xff\xff", 4)));  // ~2 GiB announced
  Status closed_with;
  bool closed = false;
  auto conn = std::make_shared<UnixConnection>(std::move(ours), 1);
  conn->Start([](const UnixConnection::Ptr&, wire::Envelope) {},
              [&](const UnixConnection::Ptr&, const Status& why) {
                closed = true;
                closed_with = why;
                io.stop();
              });
  io.run_for(std::chrono::seconds(5));
  ASSERT_TRUE(closed);
  EXPECT_NE(closed_with.message().find("exceeds"), std::string::npos) << closed_with.ToString();
}

}  // namespace
}  // namespace vigil
