// The chaos soak: the tiny job under a seeded random schedule of faults,
// through `vigil run` with real processes and signals, two spare hosts,
// under the default playbook (its restart-loop guard and flaky-host count
// widened, or twenty faults in two minutes on two hosts would rightly page
// a person). Two schedules:
//   EveryKind     random:20 — killed, hung, NaN, loss spike, GPU Xid, a
//                 host's agent killed, a damaged checkpoint then a kill, a
//                 full disk for one save, vigild killed (taken over),
//                 vigild stopped for less than any timeout (nothing
//                 happens); every kind must occur;
//   RestartsOnly  random:10 of kill-rank, hang-rank, kill-agent, xid and
//                 kill-vigild, which the default playbook answers only by
//                 restarting (on a spare where a host is gone; a vigild
//                 killed is taken over, nothing restarted): the
//                 parameters must be bit-exact those of the undisturbed
//                 run.
// Each asserts:
//   * the job finishes;
//   * every fault is matched to its own detection (its kind, and its rank,
//     host or checkpoint where the detection names one), and every
//     detection to a fault (a killed vigild to the coordinator_restart of
//     the vigild that took over; a short wedge to nothing); every
//     detection of a failure has at least one intervention;
//   * no rank outlives its generation: a sampler watching the process table
//     never sees ranks of two generations at once, nor more than the world;
//     no process is left when it ends;
//   * no generation that trained resumed from a checkpoint found corrupt.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <sstream>
#include <thread>

#include "common/fs.h"
#include "logbook/logbook.h"
#include "tests/integration/process_util.h"
#include "tests/unit/test_util.h"

namespace vigil {
namespace {

using nlohmann::json;
using testing::RunCommand;
using testing::TempDir;

// The generation of every live vigil-train rank whose environment mentions `workdir`.
std::multiset<int> LiveRankGenerations(const std::string& workdir) {
  std::multiset<int> out;
  for (int pid : testing::ProcessesMentioning(workdir)) {
    const std::string dir = "/proc/" + std::to_string(pid);
    if (testing::Slurp(dir + "/cmdline").find("vigil-train") == std::string::npos) continue;
    const std::string env = testing::Slurp(dir + "/environ");
    const auto at = env.find("VIGIL_GENERATION=");
    if (at == std::string::npos) continue;
    out.insert(std::atoi(env.c_str() + at + 17));
  }
  return out;
}

// Which detection each injected fault must cause.
std::string ExpectedKind(const std::string& fault_kind) {
  if (fault_kind == "kill-rank") return "process_exit";
  if (fault_kind == "hang-rank") return "rank_hang";
  if (fault_kind == "nan") return "nonfinite";
  if (fault_kind == "spike") return "loss_spike";
  if (fault_kind == "corrupt-checkpoint") return "checkpoint_corrupt";
  if (fault_kind == "kill-agent") return "host_lost";
  if (fault_kind == "xid") return "gpu_fault";
  if (fault_kind == "disk-full") return "checkpoint_write_failed";
  // vigild's own: the vigild that takes the run over records its death; a
  // wedge shorter than every timeout is no failure at all.
  if (fault_kind == "kill-vigild") return "coordinator_restart";
  if (fault_kind == "hang-vigild") return "";
  return "?";
}

// One injected fault, from its `inject_fault` intervention.
struct Fault {
  int64_t intervention = 0, time_us = 0;
  std::string spec, kind, expect, host, checkpoint;
  std::optional<int> rank;
  std::optional<int64_t> detected_by;  // the event matched to it
};

// Whether event `e` is `f`'s detection: its kind, and the rank, host or
// checkpoint it names. A NaN or a loss spike travels through the
// all-reduce: which rank reports it says nothing.
bool IsDetectionOf(const EventRow& e, const Fault& f) {
  if (e.kind != f.expect || e.time_us < f.time_us) return false;
  if (f.kind == "kill-agent") return e.host == f.host;
  if (f.kind == "corrupt-checkpoint") {
    const json d = json::parse(e.detail_json, nullptr, false);
    return d.is_object() && d.value("checkpoint", "") == f.checkpoint;
  }
  if (f.kind == "nan" || f.kind == "spike") return true;
  if (f.kind == "kill-vigild") return true;
  return e.rank && f.rank && *e.rank == *f.rank;
}

struct SoakCase {
  const char* name;
  std::string chaos;
  int steps;
  bool restarts_only;  // the playbook only restarts: bit-exact
};

void PrintTo(const SoakCase& c, std::ostream* os) { *os << c.name << " (" << c.chaos << ")"; }

class ChaosSoak : public ::testing::TestWithParam<SoakCase> {};

TEST_P(ChaosSoak, EveryFaultIsDetectedAndAnswered) {
  const SoakCase& c = GetParam();
  const uint64_t seed = std::getenv("VIGIL_CHAOS_SEED")
                            ? std::strtoull(std::getenv("VIGIL_CHAOS_SEED"), nullptr, 10)
                            : 20261123;
  TempDir dir;
  // The tiny job, long enough for the schedule, with a 1 s hang floor and
  // a restart ceiling above the schedule.
  std::string job = ReadFile(testing::kTiny).value();
  auto set = [&](const std::string& from, const std::string& to) {
    const auto at = job.find(from);
    ASSERT_NE(at, std::string::npos) << from;
    job.replace(at, from.size(), to);
  };
  set("  steps: 300\n", "  steps: " + std::to_string(c.steps) + "\n");
  set("  max_restarts: 10\n", "  max_restarts: 100\n");
  set("  hosts: 2\n", "  hosts: 2\n  spares: 2\n");
  job += "detection: {hang_floor_ms: 1000, spike_window: 10}\nplaybook: soak-playbook.yaml\n";
  std::ofstream(dir / "soak.yaml") << job;
  std::string playbook =
      ReadFile(std::string(VIGIL_SOURCE_DIR) + "/playbooks/default.yaml").value();
  const auto loop = playbook.find("restart_loop:");
  ASSERT_NE(loop, std::string::npos);
  playbook = playbook.substr(0, loop) + "restart_loop: {max: 100, within: 10m}\n";
  const auto flaky = playbook.find("per: host, count: 3,");
  ASSERT_NE(flaky, std::string::npos);
  playbook.replace(flaky, 20, "per: host, count: 99,");
  std::ofstream(dir / "soak-playbook.yaml") << playbook;

  auto clean = RunCommand(testing::kVigil + " run " + (dir / "soak.yaml") + " --workdir " +
                              (dir / "clean") + " -o json",
                          dir.path());
  ASSERT_EQ(clean.exit_code, 0) << clean.err;
  const json clean_summary = json::parse(clean.LastLine());

  // Watch the process table while the soak runs.
  const std::string work = dir / "soak";
  std::atomic<bool> done{false};
  std::atomic<int> most_ranks{0}, mixed_generations{0};
  std::thread sampler([&] {
    while (!done) {
      const auto gens = LiveRankGenerations(work);
      most_ranks = std::max<int>(most_ranks, static_cast<int>(gens.size()));
      if (!gens.empty() && *gens.begin() != *gens.rbegin()) ++mixed_generations;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  });
  auto r = RunCommand(testing::kVigil + " run " + (dir / "soak.yaml") + " --workdir " + work +
                          " -o json --chaos " + c.chaos + " --seed " + std::to_string(seed),
                      dir.path());
  done = true;
  sampler.join();
  ASSERT_EQ(r.exit_code, 0) << "seed " << seed << "\n" << r.err;
  const json summary = json::parse(r.LastLine());
  EXPECT_EQ(summary["status"], "succeeded");
  EXPECT_EQ(summary["steps"], c.steps);
  EXPECT_LE(most_ranks.load(), 4);
  EXPECT_EQ(mixed_generations.load(), 0) << "ranks of two generations were alive at once";
  EXPECT_TRUE(testing::ProcessesMentioning(work).empty());

  auto lb = Logbook::Open(work + "/logbook.sqlite", false);
  ASSERT_TRUE(lb.ok());
  const int64_t run = summary["run_id"];
  const auto events = lb.value()->Events(run).value();
  const auto interventions = lb.value()->Interventions(run).value();
  const auto generations = lb.value()->Generations(run).value();
  const auto checkpoints = lb.value()->Checkpoints(run).value();

  // The faults that fired, in the order they did.
  std::vector<Fault> faults;
  for (const auto& i : interventions) {
    if (i.actor != "chaos") continue;
    const json p = json::parse(i.params_json);
    Fault f;
    f.intervention = i.id;
    f.time_us = i.time_us;
    f.spec = p["fault"];
    f.kind = f.spec.substr(0, f.spec.find_first_of(":@"));
    f.expect = ExpectedKind(f.kind);
    if (p.contains("rank")) f.rank = p["rank"].get<int>();
    f.host = p.value("host", "");
    f.checkpoint = p.value("checkpoint", "");
    if (f.kind == "corrupt-checkpoint") {
      EXPECT_EQ(i.outcome, "checkpoint damaged") << f.spec;
    } else if (f.kind == "kill-agent" || f.kind == "xid") {
      EXPECT_EQ(i.outcome, "sent to the agent") << f.spec;
    } else if (f.kind == "kill-vigild" || f.kind == "hang-vigild") {
      EXPECT_EQ(i.outcome, "vigild faults itself once this is committed") << f.spec;
    } else {
      EXPECT_EQ(i.outcome, "signal sent") << f.spec;
    }
    faults.push_back(f);
  }
  std::sort(faults.begin(), faults.end(),
            [](const Fault& a, const Fault& b) { return a.intervention < b.intervention; });
  // Every fault of the schedule fired (a damaged checkpoint comes with a kill beside it).
  std::set<std::string> kinds_fired;
  int scheduled = 0;
  for (const auto& f : faults) {
    kinds_fired.insert(f.kind);
    scheduled += f.kind != "corrupt-checkpoint";
  }
  const int count = std::stoi(c.chaos.substr(7));
  EXPECT_EQ(scheduled, count) << "every fault of the schedule fired";
  std::set<std::string> kinds_asked;
  const auto colon = c.chaos.find(':', 7);
  if (colon == std::string::npos) {
    kinds_asked = {"kill-rank",  "hang-rank",          "nan",       "spike",       "xid",
                   "kill-agent", "corrupt-checkpoint", "disk-full", "kill-vigild", "hang-vigild"};
  } else {
    std::stringstream list(c.chaos.substr(colon + 1));
    for (std::string k; std::getline(list, k, ',');) kinds_asked.insert(k);
  }
  EXPECT_EQ(kinds_fired, kinds_asked) << "seed " << seed << ": every kind of the schedule";

  // Each detection is its own fault's: the latest fault before it that it
  // can be the detection of and that has none yet.
  std::map<std::string, int> seen;
  for (const auto& e : events) {
    ++seen[e.kind];
    int answers = 0;
    for (const auto& i : interventions) answers += i.event_id == e.id;
    // A vigild taking the run over is no failure: nothing answers it.
    if (e.kind != "coordinator_restart") {
      EXPECT_GE(answers, 1) << "event#" << e.id << " " << e.kind << " was not answered";
    }
    Fault* cause = nullptr;
    for (auto& f : faults) {
      if (!f.detected_by && IsDetectionOf(e, f)) cause = &f;
    }
    if (!cause) {
      ADD_FAILURE() << "seed " << seed << ": event#" << e.id << " " << e.kind << " (rank "
                    << (e.rank ? std::to_string(*e.rank) : "-") << ", host " << e.host
                    << ") is no fault's detection: " << e.detail_json;
      continue;
    }
    cause->detected_by = e.id;
  }
  for (const auto& f : faults) {
    if (f.expect.empty()) {
      EXPECT_FALSE(f.detected_by) << f.spec << " is no failure";
      continue;
    }
    EXPECT_TRUE(f.detected_by) << "seed " << seed << ": " << f.spec << " (intervention#"
                               << f.intervention << ") was never detected as " << f.expect;
  }

  // A step saved again after a fallback replaces the damaged copy at the
  // same path: what a generation loaded is the newest row of its path
  // committed before it started.
  for (const auto& g : generations) {
    if (!g.first_step_at_us || g.resumed_from_path.empty()) continue;
    const CheckpointRow* loaded = nullptr;
    for (const auto& ck : checkpoints) {
      if (ck.path != g.resumed_from_path || ck.committed_at_us > g.started_at_us) continue;
      if (!loaded || ck.committed_at_us > loaded->committed_at_us) loaded = &ck;
    }
    ASSERT_NE(loaded, nullptr) << "generation " << g.number << " resumed from "
                               << g.resumed_from_path << ", which was never committed";
    EXPECT_NE(loaded->state, "corrupt")
        << "generation " << g.number << " trained from corrupt " << g.resumed_from_path;
  }
  const std::set<std::string> restart_actions = {"restart_from_latest",
                                                 "fallback_to_older_checkpoint",
                                                 "continue_training",
                                                 "delete_checkpoint",
                                                 "page",
                                                 "cordon_host",
                                                 "use_spare",
                                                 "inject_fault"};
  bool only_restarts = true;
  for (const auto& i : interventions) only_restarts &= restart_actions.count(i.action) > 0;
  if (c.restarts_only) {
    EXPECT_TRUE(only_restarts) << "the playbook did more than restart";
    EXPECT_EQ(summary["params_digest"], clean_summary["params_digest"])
        << "restarts from checkpoints are bit-exact";
  } else {
    // Skips and rollbacks change the course; it must still have learned.
    EXPECT_LT(summary["final_loss"].get<double>(), 1.6);
  }
  // The chaos report: detection latency (fault sent -> event) and recovery
  // (fault sent, or the exit, -> first step of the next generation) by kind.
  std::map<std::string, std::vector<double>> detect, recover;
  const auto recoveries = lb.value()->Recoveries(run).value();
  for (const auto& rec : recoveries) {
    if (rec.detection_ms) detect[rec.kind].push_back(*rec.detection_ms);
    if (rec.recovery_ms) recover[rec.kind].push_back(*rec.recovery_ms);
  }
  auto pct = [](std::vector<double> v, double q) {
    if (v.empty()) return std::string("-");
    std::sort(v.begin(), v.end());
    char buf[32];
    std::snprintf(buf, sizeof(buf), "%.0f", v[static_cast<size_t>(q * (v.size() - 1) + 0.5)]);
    return std::string(buf);
  };
  std::printf("%-24s %3s %12s %12s %12s %12s\n", "kind", "n", "detect p50", "detect p99",
              "recover p50", "recover p99");
  for (const auto& [kind, n] : seen) {  // a failed save has no recovery: training went on
    std::printf("%-24s %3d %12s %12s %12s %12s   (ms)\n", kind.c_str(), n,
                pct(detect[kind], 0.5).c_str(), pct(detect[kind], 0.99).c_str(),
                pct(recover[kind], 0.5).c_str(), pct(recover[kind], 0.99).c_str());
  }
  std::printf("%s seed %llu: %d faults, %zu events, %zu interventions, %zu generations, %s\n",
              c.name, static_cast<unsigned long long>(seed), scheduled, events.size(),
              interventions.size(), generations.size(),
              only_restarts ? "bit-exact" : "course changed by the playbook");
}

INSTANTIATE_TEST_SUITE_P(
    Schedules, ChaosSoak,
    ::testing::Values(SoakCase{"EveryKind", "random:20", 700, false},
                      SoakCase{"RestartsOnly",
                               "random:10:kill-rank,hang-rank,kill-agent,xid,kill-vigild", 400,
                               true}),
    [](const ::testing::TestParamInfo<SoakCase>& info) { return std::string(info.param.name); });

}  // namespace
}  // namespace vigil
