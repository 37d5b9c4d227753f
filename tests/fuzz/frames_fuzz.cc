// The frame decoder (common/framing.h) on bytes as a hostile peer sends
// them. The first byte says how the stream is cut into reads (1 to 256
// bytes each); the rest is the stream, decoded under the limit before
// authentication and the one after. Whatever decodes must encode back to
// an envelope equal to it.
#include <algorithm>
#include <cstdint>
#include <cstdlib>

#include "common/framing.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const size_t chunk = size_t{data[0]} + 1;
  const char* stream = reinterpret_cast<const char*>(data) + 1;
  const size_t n = size - 1;
  for (size_t limit : {vigil::kPreAuthMaxFrameBytes, vigil::kDefaultMaxFrameBytes}) {
    vigil::FrameReader reader(limit);
    bool failed = false;
    for (size_t at = 0; at < n && !failed; at += chunk) {
      reader.Feed(stream + at, std::min(chunk, n - at));
      while (true) {
        auto env = reader.Next();
        if (!env.ok()) {
          failed = true;
          break;
        }
        if (!env.value()) break;
        vigil::FrameReader again;
        const std::string frame = vigil::EncodeFrame(*env.value());
        again.Feed(frame.data(), frame.size());
        auto back = again.Next();
        // Bytes, not MessageDifferencer: a NaN is not equal to itself.
        if (!back.ok() || !back.value() ||
            back.value()->SerializeAsString() != env.value()->SerializeAsString())
          std::abort();
      }
    }
    if (!failed) (void)reader.CheckEof();
  }
  return 0;
}
