// A checkpoint's manifest (checkpoint/manifest.h) holding any bytes: it is
// parsed or refused with a message naming it, never trusted half-read.
#include <cstdint>
#include <cstdlib>
#include <string>

#include "checkpoint/manifest.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  auto m = vigil::checkpoint::Manifest::FromJson(text, "fuzz/manifest.json");
  if (!m.ok() && m.status().message().find("fuzz/manifest.json") == std::string::npos) std::abort();
  return 0;
}
