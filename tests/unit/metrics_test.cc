// vigild's metrics: the live goodput agrees with the logbook's, the FLOPs
// count behind MFU, and a fully populated registry passes `promtool check
// metrics` (Prometheus's own linter).
#include "coordinator/metrics.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <random>
#include <regex>
#include <set>

#include <nlohmann/json.hpp>

#include "common/job_spec.h"
#include "coordinator/goodput.h"
#include "logbook/logbook.h"
#include "tests/integration/process_util.h"
#include "tests/unit/dashboard_queries.h"
#include "tests/unit/test_util.h"

namespace vigil {
namespace {

using coordinator::CoordinatorMetrics;
using coordinator::GoodputTracker;
using testing::TempDir;

constexpr int64_t kMs = 1000;

// Random runs, fed to the tracker as vigild does and to a logbook as vigild
// records them: generations that fail before or after their first step,
// checkpoints, and restarts from the newest checkpoint, an older one (of
// this or an earlier generation, a rollback) or from scratch.
TEST(Goodput, TheLiveFigureIsTheLogbooksAtEveryMoment) {
  TempDir dir;
  auto lb = Logbook::Open(dir / "logbook.sqlite", true).value();
  std::mt19937_64 rng(20261124);
  auto uniform = [&](int64_t lo, int64_t hi) {
    return std::uniform_int_distribution<int64_t>(lo, hi)(rng);
  };
  int checks = 0;
  for (int scenario = 0; scenario < 60; ++scenario) {
    int64_t t = 1'000'000 * kMs + scenario * 10'000'000 * kMs;
    const int64_t run = lb->CreateRun("r", "", "", "", t).value();
    GoodputTracker tracker(t);
    std::vector<std::string> paths;
    auto check = [&](int64_t now) {
      const RunStats s = lb->Stats(run, now).value();
      EXPECT_NEAR(tracker.ProductiveSeconds(now), s.productive_seconds, 1e-6)
          << "scenario " << scenario;
      EXPECT_NEAR(tracker.Goodput(now), s.goodput, 1e-9) << "scenario " << scenario;
      ++checks;
    };
    std::string resume;
    const int generations = static_cast<int>(uniform(1, 6));
    for (int g = 0; g < generations; ++g) {
      t += uniform(1, 3000) * kMs;  // rendezvous, loading
      GenerationRow row;
      row.run_id = run;
      row.number = g;
      row.started_at_us = t;
      row.resumed_from_path = resume;
      const int64_t gen = lb->StartGeneration(row).value();
      tracker.GenerationStarted(resume);
      check(t);
      if (uniform(0, 4) > 0) {  // most generations reach a first step
        t += uniform(1, 2000) * kMs;
        ASSERT_TRUE(lb->MarkGenerationFirstStep(gen, t).ok());
        tracker.FirstStep(t);
        for (int c = static_cast<int>(uniform(0, 4)); c > 0; --c) {
          t += uniform(1, 20'000) * kMs;
          CheckpointRow ck;
          ck.run_id = run;
          ck.generation_id = gen;
          ck.path = "/ckpt/run-" + std::to_string(run) + "/" + std::to_string(paths.size());
          ck.committed_at_us = t;
          ASSERT_TRUE(lb->AddCheckpoint(ck).ok());
          tracker.CheckpointCommitted(ck.path, t);
          paths.push_back(ck.path);
          check(t + uniform(0, 5000) * kMs);
        }
      }
      t += uniform(1, 20'000) * kMs;
      ASSERT_TRUE(lb->EndGeneration(gen, t, "failed").ok());
      tracker.GenerationEnded(t);
      check(t + uniform(0, 5000) * kMs);
      // The next generation resumes from the newest checkpoint, an older one, or from scratch.
      const int64_t choice = uniform(0, 5);
      if (paths.empty() || choice == 0) {
        resume = "";
      } else if (choice == 1) {
        resume = paths[static_cast<size_t>(uniform(0, static_cast<int64_t>(paths.size()) - 1))];
      } else {
        resume = paths.back();
      }
    }
    t += uniform(1, 1000) * kMs;
    ASSERT_TRUE(lb->FinishRun(run, "succeeded", t, std::nullopt, std::nullopt, "", 0).ok());
    check(t);
  }
  EXPECT_GT(checks, 300);
}

TEST(Goodput, NothingIsProductiveBeforeTheFirstStep) {
  GoodputTracker t(0);
  t.GenerationStarted("");
  EXPECT_EQ(t.Goodput(5'000'000), 0.0);
  t.FirstStep(1'000'000);
  EXPECT_NEAR(t.Goodput(5'000'000), 4.0 / 5.0, 1e-12);
  t.CheckpointCommitted("/c/1", 3'000'000);
  t.GenerationEnded(4'000'000);
  t.GenerationStarted("/c/1");  // what came after the checkpoint is redone
  EXPECT_NEAR(t.ProductiveSeconds(10'000'000), 2.0, 1e-12);
}

TEST(ModelFlops, DenseDecoderIsSixTimesItsMatricesPlusAttention) {
  ModelSpec m;
  m.vocab = 256;
  m.d_model = 64;
  m.layers = 2;
  m.seq_len = 32;
  // Weights of matrix multiplies: per block qkv 3C^2, proj C^2, MLP 8C^2;
  // the tied output projection C x V. Attention: 12 L C T (PaLM's MFU).
  const double C = 64, L = 2, T = 32, V = 256;
  const double n = L * 12 * C * C + C * V;
  EXPECT_DOUBLE_EQ(m.TrainingFlopsPerToken(), 6 * n + 12 * L * C * T);
}

TEST(ModelFlops, MoeCountsTheTwoExpertsATokenIsRoutedToAndItsRouter) {
  ModelSpec dense;
  dense.layers = 4;
  ModelSpec moe = dense;
  moe.moe.experts = 8;
  moe.moe.every = 2;  // blocks 1 and 3 are MoE
  const double C = dense.d_model;
  // Each MoE block adds one more MLP (top-2) and its 8 x C router.
  EXPECT_DOUBLE_EQ(moe.TrainingFlopsPerToken() - dense.TrainingFlopsPerToken(),
                   2 * 6 * (8 * C * C + 8 * C));
}

// Every family with at least one series, as a long run with GPU hosts has them.
void Populate(CoordinatorMetrics& m) {
  m.step.Set(12);
  m.step_seconds.Observe(0.02);
  m.checkpoint_save_seconds.Observe(0.4);
  m.Failures("process_exit").Increment();
  m.Restarts("process_exit").Increment();
  m.Interventions("restart_from_latest").Increment();
  m.ObserveDetection("process_exit", 0.012);
  m.ObserveRecovery("process_exit", 0.3);
  m.SetState("running");
  m.SetRanks({{"training", 3}, {"down", 1}});
  m.SetHosts({{"active", 2}, {"lost", 1}});
  m.HostRegistered("host-0");
  m.HostRegistered("host-1");
  m.SetHostState("host-0", "active");
  m.HostLost("host-1");
  m.GpuFault("host-0", "xid", 79);
  m.GpuFault("host-0", "ecc", 0);
  m.SetGpu("host-0", {0, 61, 87, 2});
}

TEST(Metrics, EverySeriesPassesPromtoolCheckMetrics) {
  CoordinatorMetrics m;
  Populate(m);
  const std::string text = m.Render();
  for (const char* name :
       {"vigil_gpu_xid_errors_total{code=\"79\",host=\"host-0\"} 1",
        "vigil_gpu_temperature_celsius{gpu=\"0\",host=\"host-0\"} 61",
        "vigil_gpu_faults_total{host=\"host-1\",type=\"thermal\"} 0",
        "vigil_ranks{state=\"starting\"} 0", "vigil_host_lost_total{host=\"host-1\"} 1",
        "vigil_detection_latency_seconds_bucket{kind=\"process_exit\",le=\"0.05\"} 1",
        "vigil_recovery_seconds_count{kind=\"rank_hang\"} 0"}) {
    EXPECT_NE(text.find(name), std::string::npos) << name << " missing from\n" << text;
  }
  TempDir dir;
  std::ofstream(dir / "metrics.txt") << text;
  const auto r =
      testing::RunCommand("promtool check metrics < " + (dir / "metrics.txt"), dir.path());
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_EQ(r.out + r.err, "") << "promtool has no complaint";
}

TEST(Dashboards, EveryPanelEveryAnnotationAndEveryRuleReadsOnlyWhatVigildExports) {
  CoordinatorMetrics m;
  Populate(m);
  const std::string text = m.Render();
  std::set<std::string> exported;
  const std::regex sample("^(vigil_[a-z0-9_]+)[{ ]");
  std::istringstream lines(text);
  for (std::string line; std::getline(lines, line);) {
    std::smatch match;
    if (std::regex_search(line, match, sample)) exported.insert(match[1]);
  }
  std::set<std::string> recorded;
  std::vector<testing::DashboardQuery> queries;
  for (const auto& r : testing::RuleQueries()) {
    if (r.recording) recorded.insert(r.name);
    queries.push_back({r.name, r.expr});
  }
  const auto dashboards = testing::DashboardQueries();
  EXPECT_GE(dashboards.size(), 50u);
  queries.insert(queries.end(), dashboards.begin(), dashboards.end());
  const std::regex name("\\b(vigil[_:][a-z0-9_:]+)");
  std::set<std::string> used;
  for (const auto& q : queries) {
    for (std::sregex_iterator it(q.expr.begin(), q.expr.end(), name), end; it != end; ++it) {
      const std::string n = (*it)[1];
      used.insert(n);
      EXPECT_TRUE(exported.count(n) || recorded.count(n))
          << q.where << " reads " << n << ", which vigild does not export: " << q.expr;
    }
  }
  // And the other way: every family vigild exports is on some dashboard or in some rule.
  for (const auto& n : exported) {
    std::string base = n;
    for (const char* suffix : {"_bucket", "_sum", "_count"}) {
      if (base.size() > strlen(suffix) && base.ends_with(suffix) &&
          exported.count(base.substr(0, base.size() - strlen(suffix)) + "_bucket"))
        base = base.substr(0, base.size() - strlen(suffix));
    }
    bool shown = used.count(n) > 0;
    for (const char* suffix : {"_bucket", "_sum", "_count"}) shown |= used.count(base + suffix) > 0;
    EXPECT_TRUE(shown) << n << " is on no dashboard and in no rule";
  }
}

TEST(Dashboards, AreGrafanaDashboardsWithUniqueIdsAndPlacedPanels) {
  std::set<std::string> uids;
  for (const char* name : testing::kDashboards) {
    const std::string path = testing::DashboardPath(name);
    const auto d = nlohmann::json::parse(testing::Slurp(path));
    EXPECT_TRUE(uids.insert(d.at("uid").get<std::string>()).second) << path;
    EXPECT_FALSE(d.at("title").get<std::string>().empty());
    std::set<int> ids;
    for (const auto& p : d.at("panels")) {
      EXPECT_TRUE(ids.insert(p.at("id").get<int>()).second) << path << ": panel id twice";
      const auto& g = p.at("gridPos");
      EXPECT_LE(g.at("x").get<int>() + g.at("w").get<int>(), 24) << path << " " << p.at("title");
      if (p.at("type") == "row") continue;
      EXPECT_EQ(p.at("datasource").at("uid"), "${datasource}") << path << " " << p.at("title");
      EXPECT_FALSE(p.at("targets").empty());
    }
  }
}

}  // namespace
}  // namespace vigil
