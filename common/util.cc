#include "common/util.h"

#include <sys/stat.h>

#include <ctime>
#include <fstream>

#include <spdlog/sinks/stdout_color_sinks.h>

#include "common/fs.h"

namespace vigil {

std::string GenerateToken() {
  unsigned char bytes[32];
  std::ifstream urandom("/dev/urandom", std::ios::binary);
  urandom.read(reinterpret_cast<char*>(bytes), sizeof(bytes));
  static const char* kHex = "0123456789abcdef";
  std::string out;
  for (unsigned char b : bytes) {
    out.push_back(kHex[b >> 4]);
    out.push_back(kHex[b & 15]);
  }
  return out;
}

Result<std::string> WriteTokenFile(const std::string& path) {
  std::string token = GenerateToken();
  VIGIL_RETURN_IF_ERROR(WriteFileAtomic(path, token + "\n", 0600));
  return token;
}

Result<std::string> ReadTokenFile(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return Status::NotFound("token file " + path + " not found");
  if (st.st_mode & 077) {
    return Status::FailedPrecondition("token file " + path +
                                      " is readable by others (mode must be 0600)");
  }
  auto text = ReadFile(path);
  if (!text.ok()) return text.status();
  std::string token = text.value();
  while (!token.empty() && (token.back() == '\n' || token.back() == '\r')) token.pop_back();
  if (token.size() < 32)
    return Status::InvalidArgument("token file " + path + " holds no valid token");
  return token;
}

std::shared_ptr<spdlog::logger> MakeLogger(const std::string& component) {
  if (auto existing = spdlog::get(component)) return existing;
  auto logger = spdlog::stderr_color_mt(component);
  logger->set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%l%$ [%n] %v");
  return logger;
}

std::string FormatTimeMicros(int64_t us) {
  std::time_t secs = static_cast<std::time_t>(us / 1000000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[64];
  std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%S", &tm);
  char out[80];
  std::snprintf(out, sizeof(out), "%s.%03dZ", buf, static_cast<int>((us / 1000) % 1000));
  return out;
}

}  // namespace vigil
