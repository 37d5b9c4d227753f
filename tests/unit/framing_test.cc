#include "common/framing.h"
#include "common/http_client.h"

#include <gtest/gtest.h>

namespace vigil {
namespace {

wire::Envelope Report(uint64_t step) {
  wire::Envelope env;
  env.mutable_rank_report()->set_step(step);
  env.mutable_rank_report()->set_message(std::string(step % 97, 'x'));
  return env;
}

TEST(Framing, RoundTripsManyFramesFedByteByByte) {
  std::string stream;
  for (uint64_t i = 0; i < 50; ++i) AppendFrame(Report(i), &stream);
  FrameReader reader;
  uint64_t next = 0;
  for (char c : stream) {
    reader.Feed(&c, 1);
    while (true) {
      auto env = reader.Next();
      ASSERT_TRUE(env.ok()) << env.status().ToString();
      if (!env.value()) break;
      EXPECT_EQ((*env.value()).rank_report().step(), next);
      EXPECT_EQ((*env.value()).rank_report().message().size(), next % 97);
      ++next;
    }
  }
  EXPECT_EQ(next, 50u);
  EXPECT_TRUE(reader.CheckEof().ok());
}

TEST(Framing, TruncatedFrameIsReportedAtEof) {
  std::string frame = EncodeFrame(Report(42));
  FrameReader reader;
  reader.Feed(frame.data(), frame.size() - 3);
  auto env = reader.Next();
  ASSERT_TRUE(env.ok());
  EXPECT_FALSE(env.value().has_value());
  Status eof = reader.CheckEof();
  EXPECT_FALSE(eof.ok());
  EXPECT_NE(eof.message().find("truncated"), std::string::npos) << eof.message();
}

TEST(Framing, OversizedFrameIsRejectedBeforeBuffering) {
  FrameReader reader(/*max_frame_bytes=*/1024);
  const char header[4] = {0x00, 0x10, 0x00, 0x00};  // 1 MiB announced
  reader.Feed(header, 4);
  auto env = reader.Next();
  ASSERT_FALSE(env.ok());
  EXPECT_EQ(env.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(env.status().message().find("exceeds"), std::string::npos);
  // The reader stays poisoned: the connection must be dropped.
  std::string good = EncodeFrame(Report(1));
  reader.Feed(good.data(), good.size());
  EXPECT_FALSE(reader.Next().ok());
}

TEST(Framing, GarbagePayloadIsRejected) {
  std::string bad = {0x00, 0x00, 0x00, 0x04, '\xff', '\xff', '\xff', '\xff'};
  FrameReader reader;
  reader.Feed(bad.data(), bad.size());
  auto env = reader.Next();
  EXPECT_FALSE(env.ok());
}

// Found by fuzz_frames: protobuf wrote a line of its own to stderr for each
// string field that is not UTF-8, one per frame anyone sends. The frame is
// refused, and nothing is written.
TEST(Framing, AStringThatIsNotUtf8IsRefusedWithoutALogLine) {
  wire::Envelope hello;
  hello.mutable_hello()->set_host("host-0");
  std::string frame = EncodeFrame(hello);
  const auto at = frame.find("host-0");
  ASSERT_NE(at, std::string::npos);
  frame[at] = '\xff';
  FrameReader reader;
  reader.Feed(frame.data(), frame.size());
  testing::internal::CaptureStderr();
  auto env = reader.Next();
  const std::string said = testing::internal::GetCapturedStderr();
  EXPECT_FALSE(env.ok());
  EXPECT_EQ(said, "");
}

TEST(Framing, EmptyEnvelopeIsAValidFrame) {
  std::string frame = EncodeFrame(wire::Envelope());
  EXPECT_EQ(frame.size(), kFrameHeaderBytes);
  FrameReader reader;
  reader.Feed(frame.data(), frame.size());
  auto env = reader.Next();
  ASSERT_TRUE(env.ok());
  ASSERT_TRUE(env.value().has_value());
  EXPECT_EQ((*env.value()).body_case(), wire::Envelope::BODY_NOT_SET);
}

// Prometheus answers large queries in chunks.
TEST(HttpChunked, DecodesChunksWithExtensionsAndRejectsTruncation) {
  EXPECT_EQ(DecodeChunked("5\r\nhello\r\n7;x=y\r\n, world\r\n0\r\n\r\n").value(), "hello, world");
  EXPECT_EQ(DecodeChunked("0\r\n\r\n").value(), "");
  EXPECT_EQ(DecodeChunked("a\r\n0123456789\r\n0\r\n").value(), "0123456789");
  EXPECT_FALSE(DecodeChunked("5\r\nhel").ok());
  EXPECT_FALSE(DecodeChunked("5\r\nhelloXX0\r\n\r\n").ok());
  EXPECT_FALSE(DecodeChunked("zz\r\nhello\r\n0\r\n\r\n").ok());
  EXPECT_FALSE(DecodeChunked("ffffffffffffffff\r\nhello\r\n0\r\n\r\n").ok());
  EXPECT_FALSE(DecodeChunked("5\r\nhello\r\n").ok()) << "no last chunk";
}

}  // namespace
}  // namespace vigil
