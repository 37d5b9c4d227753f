#include "coordinator/chaos.h"

#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>

#include <spdlog/spdlog.h>

namespace vigil::coordinator {

namespace {

// Rank faults: what the agent does to the rank's process.
struct RankFaultKind {
  const char* name;
  int signal;
};
constexpr RankFaultKind kRankFaults[] = {
    {"kill-rank", SIGKILL},  // dies
    {"hang-rank", SIGSTOP},  // stops making progress, stays alive
    {"nan", SIGUSR1},        // its next gradient is poisoned with NaN
    {"spike", SIGUSR2},      // its next batch's targets are scrambled
    {"slow-rank", SIGURG},   // it idles 3x its compute time every later step
    {"disk-full", SIGXFSZ},  // its next checkpoint save finds the disk full
};

}  // namespace

int ChaosSignal(const std::string& kind) {
  for (const auto& k : kRankFaults) {
    if (kind == k.name) return k.signal;
  }
  return 0;
}

bool IsHostFault(const std::string& kind) { return kind == "kill-agent" || kind == "xid"; }

bool IsCoordinatorFault(const std::string& kind) {
  return kind == "kill-vigild" || kind == "hang-vigild";
}

namespace {

// The STEP of @STEP (throws if it is not a positive integer).
int64_t ParseStep(const std::string& step) {
  size_t used = 0;
  const int64_t n = std::stoll(step, &used);
  if (used != step.size() || n < 1) throw std::invalid_argument("step");
  return n;
}

// kill-vigild[@STEP], hang-vigild[:MS][@STEP].
Result<ChaosFault> ParseCoordinatorFault(const std::string& spec, const std::string& usage) {
  ChaosFault f;
  f.spec = spec;
  const auto at = spec.find('@');
  std::string head = spec.substr(0, at);
  const auto colon = head.find(':');
  f.kind = head.substr(0, colon);
  try {
    size_t used = 0;
    if (colon != std::string::npos) {
      if (f.kind != "hang-vigild") throw std::invalid_argument("kill-vigild takes no argument");
      const std::string ms = head.substr(colon + 1);
      f.hang_ms = std::stoi(ms, &used);
      if (used != ms.size() || f.hang_ms < 1) throw std::invalid_argument("ms");
    } else if (f.kind == "hang-vigild") {
      f.hang_ms = kDefaultVigildHangMs;
    }
    if (at != std::string::npos) f.step = ParseStep(spec.substr(at + 1));
  } catch (const std::exception&) {
    return Status::InvalidArgument(usage);
  }
  return f;
}

}  // namespace

Result<ChaosFault> ParseChaosFault(const std::string& spec) {
  const std::string usage =
      "chaos fault '" + spec +
      "': expected KIND:RANK[@STEP] (KIND: kill-rank, hang-rank, nan, spike, slow-rank, "
      "disk-full, kill-agent), "
      "xid:CODE:RANK[@STEP], "
      "corrupt-checkpoint:HOW[@STEP] (or corrupt-ckpt; HOW: flip, truncate, remove-shard, "
      "garble-manifest), kill-vigild[@STEP] or hang-vigild[:MS][@STEP]";
  const std::string head = spec.substr(0, spec.find_first_of(":@"));
  if (IsCoordinatorFault(head)) return ParseCoordinatorFault(spec, usage);
  const auto colon = spec.find(':');
  const auto at = spec.find('@');
  if (colon == std::string::npos || (at != std::string::npos && at < colon))
    return Status::InvalidArgument(usage);
  ChaosFault f;
  f.kind = spec.substr(0, colon);
  if (f.kind == "corrupt-ckpt") f.kind = "corrupt-checkpoint";
  f.spec = spec;
  if (!ChaosSignal(f.kind) && !IsHostFault(f.kind) && f.kind != "corrupt-checkpoint")
    return Status::InvalidArgument(usage + " (unknown kind '" + f.kind + "')");
  try {
    size_t used = 0;
    std::string target =
        spec.substr(colon + 1, at == std::string::npos ? std::string::npos : at - colon - 1);
    if (f.kind == "xid") {
      const auto second = target.find(':');
      if (second == std::string::npos) throw std::invalid_argument("xid");
      const std::string code = target.substr(0, second);
      f.xid = std::stoi(code, &used);
      if (used != code.size() || f.xid < 1 || f.xid > 255) throw std::invalid_argument("xid");
      target = target.substr(second + 1);
    }
    if (f.kind != "corrupt-checkpoint") {
      f.rank = std::stoi(target, &used);
      if (used != target.size() || f.rank < 0) throw std::invalid_argument("rank");
    } else {
      f.how = target;
      if (f.how != "flip" && f.how != "truncate" && f.how != "remove-shard" &&
          f.how != "garble-manifest") {
        throw std::invalid_argument("how");
      }
    }
    if (at != std::string::npos) f.step = ParseStep(spec.substr(at + 1));
  } catch (const std::exception&) {
    return Status::InvalidArgument(usage);
  }
  return f;
}

void FaultThisProcess(const ChaosFault& f) {
  spdlog::default_logger()->flush();
  if (f.kind == "kill-vigild") {
    ::raise(SIGKILL);
    return;
  }
  if (f.kind != "hang-vigild") return;
  const pid_t self = ::getpid();
  const pid_t child = ::fork();
  if (child == 0) {
    // Only async-signal-safe calls in the child of a threaded process. It
    // dies with vigild (killed while stopped: by vigil run's watchdog).
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != self) ::_exit(0);
    ::kill(self, SIGSTOP);
    timespec t{f.hang_ms / 1000, static_cast<long>(f.hang_ms % 1000) * 1000000L};
    while (::nanosleep(&t, &t) != 0) {
    }
    ::kill(self, SIGCONT);
    ::_exit(0);
  }
  if (child > 0) ::waitpid(child, nullptr, 0);
}

Status DamageCheckpoint(const std::string& dir, const std::string& how) {
  namespace fs = std::filesystem;
  std::error_code ec;
  std::vector<fs::path> shards;
  for (const auto& e : fs::directory_iterator(dir, ec))
    if (e.path().extension() == ".bin") shards.push_back(e.path());
  if (ec || shards.empty()) return Status::NotFound(dir + " has no shards to damage");
  std::sort(shards.begin(), shards.end());
  const fs::path& shard = shards.back();
  const auto size = fs::file_size(shard, ec);
  if (ec) return Status::IoError("stat " + shard.string() + ": " + ec.message());
  if (how == "flip") {
    std::fstream f(shard, std::ios::in | std::ios::out | std::ios::binary);
    char c = 0;
    f.seekg(static_cast<std::streamoff>(size / 2));
    f.read(&c, 1);
    c = static_cast<char>(c ^ 0x5a);
    f.seekp(static_cast<std::streamoff>(size / 2));
    f.write(&c, 1);
    if (!f) return Status::IoError("cannot flip a byte of " + shard.string());
  } else if (how == "truncate") {
    fs::resize_file(shard, size / 2, ec);
  } else if (how == "remove-shard") {
    fs::remove(shard, ec);
  } else if (how == "garble-manifest") {
    std::ofstream(dir + "/manifest.json", std::ios::trunc) << "{\"format_version\": 3, \"step\":";
  } else {
    return Status::InvalidArgument("unknown damage '" + how + "'");
  }
  if (ec) return Status::IoError(how + " " + shard.string() + ": " + ec.message());
  return Status::Ok();
}

const std::vector<std::string>& RandomChaosKinds() {
  static const std::vector<std::string> kinds = {
      "kill-rank",  "hang-rank",          "nan",       "spike",       "xid",
      "kill-agent", "corrupt-checkpoint", "disk-full", "kill-vigild", "hang-vigild"};
  return kinds;
}

Result<std::vector<ChaosFault>> RandomChaos(int count, uint64_t seed, const ChaosPlan& plan,
                                            std::vector<std::string> kinds) {
  if (kinds.empty()) kinds = RandomChaosKinds();
  for (const auto& k : kinds) {
    const auto& known = RandomChaosKinds();
    if (std::find(known.begin(), known.end(), k) == known.end()) {
      std::string list;
      for (const auto& n : known) list += (list.empty() ? "" : ", ") + n;
      return Status::InvalidArgument("chaos random: '" + k +
                                     "' is not a kind a random schedule draws (" + list + ")");
    }
  }
  // splitmix64: the same schedule from the same seed on every platform.
  uint64_t state = seed;
  auto next = [&state] {
    uint64_t z = (state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  };
  const int64_t first = std::max<int64_t>(60, 2 * plan.every_steps);
  const int64_t room = plan.total_steps - first - plan.every_steps;
  if (count < 1 || room / count < kRandomChaosSpacing) {
    return Status::InvalidArgument(
        "chaos random:" + std::to_string(count) + " needs " + std::to_string(kRandomChaosSpacing) +
        " steps per fault after step " + std::to_string(first) + "; the job has " +
        std::to_string(plan.total_steps) + " steps (schedule.steps)");
  }
  const int64_t spacing = room / count;
  const int restart_xids[] = {13, 31, 43, 94}, host_xids[] = {48, 64, 79};
  const bool wants_agent = std::count(kinds.begin(), kinds.end(), "kill-agent") > 0;
  bool agent_drawn = false;
  int hosts_left = plan.spares;
  // The save a full disk fails in slot i: the last one at least 3 steps
  // before the next slot, signalled 5 steps ahead (-1: none in the slot).
  auto full_disk_step = [&](int i) -> int64_t {
    const int64_t next_slot = first + (i + 1) * spacing;
    const int64_t save = (next_slot - 3) / plan.every_steps * plan.every_steps;
    return save - 5 >= first + i * spacing ? save - 5 : -1;
  };
  // Kinds are dealt from a shuffled deck of every kind, so that any COUNT
  // faults of at least as many kinds cover them all; a slot takes the first
  // kind of the deck it can (a full disk needs a save inside the slot, a
  // killed agent a spare left), else a kill-rank.
  std::vector<std::string> deck;
  std::vector<ChaosFault> out;
  for (int i = 0; i < count; ++i) {
    if (deck.empty()) {
      deck = kinds;
      for (size_t j = deck.size(); j > 1; --j) std::swap(deck[j - 1], deck[next() % j]);
    }
    auto fits = [&](const std::string& k) {
      if (k == "kill-agent") return hosts_left > 0;
      if (k == "disk-full") return full_disk_step(i) >= 0;
      return true;
    };
    std::string kind = "kill-rank";
    for (auto it = deck.begin(); it != deck.end(); ++it) {
      if (!fits(*it)) continue;
      kind = *it;
      deck.erase(it);
      break;
    }
    int64_t step = first + i * spacing + static_cast<int64_t>(next() % (spacing / 2));
    const int rank = static_cast<int>(next() % static_cast<uint64_t>(plan.world_size));
    // For xid: a code that cordons, while a spare is left (one is kept for
    // a killed agent still to come).
    const bool takes_host = next() % 2 == 0 && hosts_left > (wants_agent && !agent_drawn ? 1 : 0);
    std::vector<std::string> specs;
    if (kind == "xid") {
      int code = restart_xids[next() % 4];
      if (takes_host) {
        code = host_xids[next() % 3];
        --hosts_left;
      }
      specs = {"xid:" + std::to_string(code) + ":" + std::to_string(rank) + "@" +
               std::to_string(step)};
    } else if (kind == "kill-agent") {
      --hosts_left;
      agent_drawn = true;
      specs = {kind + ":" + std::to_string(rank) + "@" + std::to_string(step)};
    } else if (kind == "corrupt-checkpoint") {
      // Damage the newest checkpoint halfway between saves (none is being
      // committed), then kill rank 0 on the same report (both fire on rank
      // 0's), so that the next generation is sent to load it.
      step = step / plan.every_steps * plan.every_steps + plan.every_steps / 2;
      specs = {std::string("corrupt-checkpoint:") + (next() % 2 ? "flip" : "truncate") + "@" +
                   std::to_string(step),
               "kill-rank:0@" + std::to_string(step)};
    } else if (kind == "kill-vigild") {
      specs = {kind + "@" + std::to_string(step)};
    } else if (kind == "hang-vigild") {
      // A wedge shorter than every timeout, which must cost nothing (a long
      // one is vigil run's watchdog's: its downtime would delay the faults
      // of the next slots past what they are placed against).
      specs = {kind + ":" + std::to_string(plan.heartbeat_timeout_ms / 10) + "@" +
               std::to_string(step)};
    } else if (kind == "disk-full") {
      // The failed save must come, and be reported, before the next fault.
      step = full_disk_step(i);
      specs = {kind + ":" + std::to_string(rank) + "@" + std::to_string(step)};
    } else {
      specs = {kind + ":" + std::to_string(rank) + "@" + std::to_string(step)};
    }
    for (const auto& spec : specs) {
      auto f = ParseChaosFault(spec);
      if (!f.ok()) return f.status();
      f->random_index = i;
      out.push_back(f.value());
    }
  }
  return out;
}

Result<std::vector<ChaosFault>> ParseChaosFaults(const std::vector<std::string>& specs,
                                                 const ChaosPlan& plan, uint64_t seed) {
  const int world_size = plan.world_size;
  std::vector<ChaosFault> faults;
  for (const auto& spec : specs) {
    if (spec.rfind("random:", 0) == 0) {
      size_t used = 0;
      int count = 0;
      const std::string rest = spec.substr(7);
      try {
        count = std::stoi(rest, &used);
      } catch (const std::exception&) {
        used = 0;
      }
      std::vector<std::string> kinds;
      if (used > 0 && used < rest.size() && rest[used] == ':') {
        std::stringstream list(rest.substr(used + 1));
        for (std::string k; std::getline(list, k, ',');) kinds.push_back(k);
        used = kinds.empty() ? 0 : rest.size();
      }
      if (used == 0 || used != rest.size())
        return Status::InvalidArgument("chaos fault '" + spec +
                                       "': expected random:COUNT or random:COUNT:KIND,KIND...");
      auto random = RandomChaos(count, seed, plan, kinds);
      if (!random.ok()) return random.status();
      faults.insert(faults.end(), random->begin(), random->end());
      continue;
    }
    auto f = ParseChaosFault(spec);
    if (!f.ok()) return f.status();
    if ((ChaosSignal(f->kind) || IsHostFault(f->kind)) && f->rank >= world_size) {
      return Status::InvalidArgument("chaos fault '" + spec + "': rank " + std::to_string(f->rank) +
                                     " is outside the world of " + std::to_string(world_size) +
                                     " ranks");
    }
    faults.push_back(f.value());
  }
  return faults;
}

}  // namespace vigil::coordinator
