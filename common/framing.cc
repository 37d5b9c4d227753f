#include "common/framing.h"

#include <google/protobuf/stubs/logging.h>

#include <algorithm>
#include <cstdio>
#include <mutex>

namespace vigil {

namespace {

// Protobuf logs an ERROR line of its own for each string field that is not
// UTF-8 in a payload it refuses: one line per frame that anyone on the
// network sends, before any rate limit. The refusal is reported (and the
// connection dropped) by whoever reads the frame; the line is dropped.
// Everything else protobuf says is written as it would write it.
void ProtobufLog(google::protobuf::LogLevel level, const char* file, int line,
                 const std::string& message) {
  if (message.find("invalid UTF-8") != std::string::npos) return;
  static const char* const kLevels[] = {"INFO", "WARNING", "ERROR", "FATAL"};
  std::fprintf(stderr, "[libprotobuf %s %s:%d] %s\n",
               kLevels[std::min<int>(static_cast<int>(level), 3)], file, line, message.c_str());
}

}  // namespace

FrameReader::FrameReader(size_t max_frame_bytes) : max_frame_bytes_(max_frame_bytes) {
  static std::once_flag once;
  std::call_once(once, [] { google::protobuf::SetLogHandler(&ProtobufLog); });
}

void AppendFrame(const wire::Envelope& env, std::string* out) {
  const size_t n = env.ByteSizeLong();
  const char header[4] = {static_cast<char>((n >> 24) & 0xff), static_cast<char>((n >> 16) & 0xff),
                          static_cast<char>((n >> 8) & 0xff), static_cast<char>(n & 0xff)};
  out->append(header, 4);
  const size_t at = out->size();
  out->resize(at + n);
  env.SerializeToArray(out->data() + at, static_cast<int>(n));
}

std::string EncodeFrame(const wire::Envelope& env) {
  std::string out;
  AppendFrame(env, &out);
  return out;
}

Result<std::optional<wire::Envelope>> FrameReader::Next() {
  if (poisoned_) return Status::FailedPrecondition("frame reader already failed");
  const size_t avail = buffer_.size() - consumed_;
  if (avail < kFrameHeaderBytes) return std::optional<wire::Envelope>();
  const auto* p = reinterpret_cast<const unsigned char*>(buffer_.data() + consumed_);
  const uint32_t len =
      (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | p[3];
  if (len > max_frame_bytes_) {
    poisoned_ = true;
    return Status::InvalidArgument("frame of " + std::to_string(len) +
                                   " bytes exceeds the limit of " +
                                   std::to_string(max_frame_bytes_));
  }
  if (avail < kFrameHeaderBytes + len) return std::optional<wire::Envelope>();
  wire::Envelope env;
  if (!env.ParseFromArray(buffer_.data() + consumed_ + kFrameHeaderBytes, static_cast<int>(len))) {
    poisoned_ = true;
    return Status::InvalidArgument("frame payload of " + std::to_string(len) +
                                   " bytes is not a valid envelope");
  }
  consumed_ += kFrameHeaderBytes + len;
  // Compact once the consumed prefix dominates, keeping appends amortized O(1).
  if (consumed_ > 4096 && consumed_ * 2 > buffer_.size()) {
    buffer_.erase(0, consumed_);
    consumed_ = 0;
  }
  return std::optional<wire::Envelope>(std::move(env));
}

std::string FrameReader::TakeBuffered() {
  std::string rest = buffer_.substr(consumed_);
  buffer_.clear();
  consumed_ = 0;
  return rest;
}

Status FrameReader::CheckEof() const {
  const size_t left = buffer_.size() - consumed_;
  if (left == 0) return Status::Ok();
  return Status::Unavailable("connection closed inside a frame (" + std::to_string(left) +
                             " bytes of a truncated frame)");
}

}  // namespace vigil
