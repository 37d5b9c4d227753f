// The chaos soak: the tiny job under a seeded random schedule of faults of
// every kind (killed, hung, NaN, loss spike, GPU Xid, a host's agent killed,
// damaged checkpoint then a kill, a full disk for one save), through `vigil run` with real
// processes and signals, two spare hosts, under the default playbook (its restart-loop guard and
// flaky-host count widened, or twenty faults in two minutes on two hosts would rightly page a
// person). It asserts:
//   * the job finishes;
//   * every fault has exactly one detection event of its kind, and every
//     event at least one intervention linked to it;
//   * no rank outlives its generation: a sampler watching the process table
//     never sees ranks of two generations at once, nor more than the world;
//   * no generation that trained resumed from a checkpoint found corrupt;
//   * where the playbook only restarted (no skip, rollback, LR or optimizer
//     change), the parameters equal the undisturbed run's.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
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
  return "?";
}

TEST(ChaosSoak, TwentyRandomFaultsOfEveryKind) {
  const int kFaults = 20;
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
  set("  steps: 300\n", "  steps: 700\n");
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
                          " -o json --chaos random:" + std::to_string(kFaults) + " --seed " +
                          std::to_string(seed),
                      dir.path());
  done = true;
  sampler.join();
  ASSERT_EQ(r.exit_code, 0) << "seed " << seed << "\n" << r.err;
  const json summary = json::parse(r.LastLine());
  EXPECT_EQ(summary["status"], "succeeded");
  EXPECT_EQ(summary["steps"], 700);
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

  // The faults that fired, by the kind of detection each must cause.
  std::map<std::string, int> expected, seen;
  std::set<int> fired;
  for (const auto& i : interventions) {
    if (i.actor != "chaos") continue;
    const std::string fault = json::parse(i.params_json)["fault"];
    const std::string kind = fault.substr(0, fault.find(':'));
    if (kind == "corrupt-checkpoint") {
      EXPECT_EQ(i.outcome, "checkpoint damaged") << fault;
    } else if (kind == "kill-agent" || kind == "xid") {
      EXPECT_EQ(i.outcome, "sent to the agent") << fault;
    } else {
      EXPECT_EQ(i.outcome, "signal sent") << fault;
    }
    ++expected[ExpectedKind(kind)];
    fired.insert(static_cast<int>(i.id));
  }
  // A damaged checkpoint is loaded because a rank is killed beside it.
  int faults = 0;
  for (const auto& [kind, n] : expected) faults += kind == "checkpoint_corrupt" ? 0 : n;
  EXPECT_EQ(faults, kFaults) << "every fault of the schedule fired";
  std::set<std::string> restart_only = {"restart_from_latest",
                                        "fallback_to_older_checkpoint",
                                        "continue_training",
                                        "delete_checkpoint",
                                        "page",
                                        "cordon_host",
                                        "use_spare",
                                        "inject_fault"};
  bool only_restarts = true;
  for (const auto& e : events) {
    ++seen[e.kind];
    int answers = 0;
    for (const auto& i : interventions) answers += i.event_id == e.id;
    EXPECT_GE(answers, 1) << "event#" << e.id << " " << e.kind << " was not answered";
  }
  for (const auto& i : interventions) only_restarts &= restart_only.count(i.action) > 0;
  EXPECT_EQ(seen, expected) << "seed " << seed << ": one detection per fault";

  std::set<std::string> corrupt;
  for (const auto& c : checkpoints)
    if (c.state == "corrupt") corrupt.insert(c.path);
  for (const auto& g : generations) {
    if (!g.first_step_at_us || g.resumed_from_path.empty()) continue;
    EXPECT_EQ(corrupt.count(g.resumed_from_path), 0u)
        << "generation " << g.number << " trained from corrupt " << g.resumed_from_path;
  }
  if (only_restarts) {
    EXPECT_EQ(summary["params_digest"], clean_summary["params_digest"]);
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
  std::printf("seed %llu: %d faults, %zu events, %zu interventions, %zu generations, %s\n",
              static_cast<unsigned long long>(seed), faults, events.size(), interventions.size(),
              generations.size(), only_restarts ? "bit-exact" : "course changed by the playbook");
}

}  // namespace
}  // namespace vigil
