#include "common/util.h"

#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <fstream>
#include <map>

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

Result<uint64_t> RaiseOpenFileLimit() {
  rlimit files{};
  if (::getrlimit(RLIMIT_NOFILE, &files) != 0)
    return Status::IoError(std::string("getrlimit: ") + std::strerror(errno));
  if (files.rlim_cur < files.rlim_max) {
    files.rlim_cur = files.rlim_max;
    if (::setrlimit(RLIMIT_NOFILE, &files) != 0)
      return Status::IoError("cannot raise the open-file limit to " +
                             std::to_string(files.rlim_max) + ": " + std::strerror(errno));
  }
  return static_cast<uint64_t>(files.rlim_cur);
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

Result<int64_t> ParseDuration(const std::string& text) {
  static const std::map<std::string, int64_t> units = {
      {"ms", 1000},        {"s", 1000000},       {"m", 60000000},
      {"h", 3600000000LL}, {"d", 86400000000LL}, {"w", 7 * 86400000000LL}};
  size_t digits = 0;
  while (digits < text.size() && std::isdigit(static_cast<unsigned char>(text[digits]))) ++digits;
  const std::string unit = text.substr(digits);
  if (digits == 0 || digits > 9 || !units.count(unit))
    return Status::InvalidArgument("bad duration '" + text + "'");
  return std::stoll(text.substr(0, digits)) * units.at(unit);
}

Result<int64_t> ParseTimePoint(const std::string& text, int64_t now_us) {
  if (text == "now") return now_us;
  if (auto ago = ParseDuration(text); ago.ok()) return now_us - ago.value();
  const Status bad = Status::InvalidArgument(
      "bad time '" + text +
      "': expected now, a duration ago (30m, 2h, 1d) or UTC as 2026-11-24T04:00:00, "
      "'2026-11-24 04:00' or 2026-11-24");
  int y = 0, mo = 0, d = 0, h = 0, mi = 0, sec = 0, ms = 0, used = 0;
  std::string rest;
  if (std::sscanf(text.c_str(), "%4d-%2d-%2d%n", &y, &mo, &d, &used) != 3 || used != 10) return bad;
  rest = text.substr(10);
  if (!rest.empty()) {
    if (rest[0] != 'T' && rest[0] != ' ') return bad;
    int n = 0;
    if (std::sscanf(rest.c_str() + 1, "%2d:%2d%n", &h, &mi, &n) != 2 || n != 5) return bad;
    rest = rest.substr(6);
    if (!rest.empty() && rest[0] == ':') {
      if (std::sscanf(rest.c_str() + 1, "%2d%n", &sec, &n) != 1 || n != 2) return bad;
      rest = rest.substr(3);
      if (!rest.empty() && rest[0] == '.') {
        if (std::sscanf(rest.c_str() + 1, "%3d%n", &ms, &n) != 1 || n != 3) return bad;
        rest = rest.substr(4);
      }
    }
    if (rest == "Z") rest.clear();
    if (!rest.empty()) return bad;
  }
  if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || sec > 60) return bad;
  std::tm tm{};
  tm.tm_year = y - 1900;
  tm.tm_mon = mo - 1;
  tm.tm_mday = d;
  tm.tm_hour = h;
  tm.tm_min = mi;
  tm.tm_sec = sec;
  const std::time_t t = timegm(&tm);
  // timegm normalises 2026-02-31 into March: refuse dates that do not exist.
  std::tm back{};
  gmtime_r(&t, &back);
  if (back.tm_mday != d || back.tm_mon != mo - 1) return bad;
  return static_cast<int64_t>(t) * 1000000 + static_cast<int64_t>(ms) * 1000;
}

std::string HostName() {
  char name[256] = {};
  if (::gethostname(name, sizeof(name) - 1) != 0) return "";
  return name;
}

std::string Trim(const std::string& s) {
  const char* kSpace = " \t\r\n";
  const size_t begin = s.find_first_not_of(kSpace);
  if (begin == std::string::npos) return "";
  return s.substr(begin, s.find_last_not_of(kSpace) - begin + 1);
}

}  // namespace vigil
