#include "coordinator/chaos.h"

#include <stdexcept>

namespace vigil::coordinator {

Result<ChaosFault> ParseChaosFault(const std::string& spec) {
  const std::string usage = "chaos fault '" + spec + "': expected kill-rank:RANK@STEP";
  const auto colon = spec.find(':');
  const auto at = spec.find('@');
  if (colon == std::string::npos || at == std::string::npos || at < colon)
    return Status::InvalidArgument(usage);
  ChaosFault f;
  f.kind = spec.substr(0, colon);
  f.spec = spec;
  if (f.kind != "kill-rank")
    return Status::InvalidArgument(usage + " (unknown kind '" + f.kind + "')");
  try {
    size_t used = 0;
    const std::string rank = spec.substr(colon + 1, at - colon - 1);
    f.rank = std::stoi(rank, &used);
    if (used != rank.size() || f.rank < 0) throw std::invalid_argument("rank");
    const std::string step = spec.substr(at + 1);
    f.step = std::stoll(step, &used);
    if (used != step.size() || f.step < 1) throw std::invalid_argument("step");
  } catch (const std::exception&) {
    return Status::InvalidArgument(usage);
  }
  return f;
}

Result<std::vector<ChaosFault>> ParseChaosFaults(const std::vector<std::string>& specs,
                                                 int world_size) {
  std::vector<ChaosFault> faults;
  for (const auto& spec : specs) {
    auto f = ParseChaosFault(spec);
    if (!f.ok()) return f.status();
    if (f->rank >= world_size) {
      return Status::InvalidArgument("chaos fault '" + spec + "': rank " + std::to_string(f->rank) +
                                     " is outside the world of " + std::to_string(world_size) +
                                     " ranks");
    }
    faults.push_back(f.value());
  }
  return faults;
}

}  // namespace vigil::coordinator
