// The token file (common/util.h ReadTokenFile) holding any bytes: a token
// read is never shorter than 32 bytes and never ends in a line break.
#include <fcntl.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <string>

#include "common/util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string path = [] {
    char dir[] = "/tmp/vigil-fuzz-token-XXXXXX";
    if (!::mkdtemp(dir)) std::abort();
    return std::string(dir) + "/token";
  }();
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) std::abort();
  if (size > 0 && ::write(fd, data, size) != static_cast<ssize_t>(size)) std::abort();
  ::close(fd);
  auto token = vigil::ReadTokenFile(path);
  if (token.ok()) {
    const std::string& t = token.value();
    if (t.size() < 32 || t.back() == '\n' || t.back() == '\r') std::abort();
  } else if (token.status().message().find(path) == std::string::npos) {
    std::abort();  // an error names the file
  }
  return 0;
}
