// Length-prefixed frames: a 4-byte big-endian payload length, then the
// payload (a serialized wire::Envelope). A frame longer than the reader's
// limit is rejected before any of it is buffered, so a hostile or broken peer
// cannot make us allocate; the caller drops the connection on any error.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "common/status.h"
#include "common/vigil.pb.h"

namespace vigil {

// 4: challenge-response (the token is never sent).
inline constexpr uint32_t kProtocolVersion = 4;
inline constexpr size_t kFrameHeaderBytes = 4;
inline constexpr size_t kDefaultMaxFrameBytes = 16u << 20;  // 16 MiB
// Until a connection has proved the job's token: room for a Hello.
inline constexpr size_t kPreAuthMaxFrameBytes = 16u << 10;  // 16 KiB

// Appends one frame holding `env` to `out`.
void AppendFrame(const wire::Envelope& env, std::string* out);
std::string EncodeFrame(const wire::Envelope& env);

// Incremental decoder: feed it bytes as they arrive, pull whole envelopes out.
// Not thread-safe; one per connection.
class FrameReader {
 public:
  explicit FrameReader(size_t max_frame_bytes = kDefaultMaxFrameBytes);

  void Feed(const char* data, size_t n) { buffer_.append(data, n); }
  // A new limit for the frames not yet begun (vigild raises it once a
  // connection has authenticated).
  void set_max_frame_bytes(size_t n) { max_frame_bytes_ = n; }

  // Returns the next complete envelope, std::nullopt if more bytes are needed,
  // or an error (oversized frame, unparseable payload). After an error the
  // reader is poisoned: the connection must be dropped.
  Result<std::optional<wire::Envelope>> Next();

  // At end of stream: OK if no partial frame is pending, else an error naming
  // how many bytes of a truncated frame were left over.
  Status CheckEof() const;

  size_t buffered() const { return buffer_.size() - consumed_; }
  // Removes and returns the bytes not yet returned as envelopes (for handing
  // a connection from a synchronous handshake to an asynchronous reader).
  std::string TakeBuffered();

 private:
  size_t max_frame_bytes_;
  std::string buffer_;
  size_t consumed_ = 0;
  bool poisoned_ = false;
};

}  // namespace vigil
