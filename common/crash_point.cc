#include "common/crash_point.h"

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <array>
#include <cstdlib>

namespace vigil {

namespace {
constexpr std::array kPoints = {crash_point::kTeardownConfirmed, crash_point::kRankStarted,
                                crash_point::kSaving, crash_point::kCheckpointReported};
}  // namespace

Result<CrashPoints> CrashPoints::FromEnvironment() {
  const char* at = std::getenv("VIGIL_CRASH_AT");
  const char* once = std::getenv("VIGIL_CRASH_ONCE");
  if (!at || !*at) return CrashPoints{};
  return Parse(at, once ? once : "");
}

Result<CrashPoints> CrashPoints::Parse(std::string_view at, std::string once_file) {
  CrashPoints c;
  const auto sep = at.find('@');
  c.point_ = std::string(at.substr(0, sep));
  bool known = false;
  for (auto p : kPoints) known = known || p == c.point_;
  if (!known) {
    std::string names;
    for (auto p : kPoints) names += (names.empty() ? "" : ", ") + std::string(p);
    return Status::InvalidArgument("VIGIL_CRASH_AT: unknown crash point '" + c.point_ +
                                   "' (known: " + names + ")");
  }
  if (sep != std::string_view::npos) {
    const std::string gen(at.substr(sep + 1));
    char* end = nullptr;
    const long long g = std::strtoll(gen.c_str(), &end, 10);
    if (gen.empty() || *end != '\0' || g < 0)
      return Status::InvalidArgument("VIGIL_CRASH_AT: '" + gen +
                                     "' after '@' is not a generation number");
    c.generation_ = g;
  }
  c.once_file_ = std::move(once_file);
  return c;
}

bool CrashPoints::Matches(std::string_view point, int64_t generation) const {
  return armed() && point == point_ && (!generation_ || *generation_ == generation);
}

void CrashPoints::Reach(std::string_view point, int64_t generation) const {
  if (!Matches(point, generation)) return;
  if (!once_file_.empty()) {
    const int fd = ::open(once_file_.c_str(), O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0600);
    if (fd < 0) return;  // another process died here already
    ::fsync(fd);
    ::close(fd);
  }
  ::kill(::getpid(), SIGKILL);
  ::pause();  // never reached: SIGKILL cannot be caught
}

}  // namespace vigil
