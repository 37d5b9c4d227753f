#include <cstdio>
#include <filesystem>
#include <iostream>

#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "common/util.h"
#include "logbook/logbook.h"
#include "worker/trainer/synthetic_data.h"

namespace vigil::cli {

using nlohmann::json;

namespace {

std::string LogbookPath(const std::string& workdir) {
  return std::filesystem::path(workdir) / "logbook.sqlite";
}

json EntryJson(const LogbookEntry& e) {
  json j{{"type", e.type},       {"id", e.id},
         {"run_id", e.run_id},   {"time", FormatTimeMicros(e.time_us)},
         {"time_us", e.time_us}, {"what", e.what}};
  if (e.generation) j["generation"] = *e.generation;
  if (!e.host.empty()) j["host"] = e.host;
  if (e.rank) j["rank"] = *e.rank;
  if (e.step) j["step"] = *e.step;
  if (e.event_id) j["event_id"] = *e.event_id;
  if (!e.actor.empty()) j["actor"] = e.actor;
  j["detail"] = json::parse(e.detail_json, nullptr, false);
  return j;
}

void PrintEntriesTable(const std::vector<LogbookEntry>& entries) {
  std::printf("%-24s %-4s %-13s %-20s %-8s %-4s %-6s %s\n", "TIME", "RUN", "TYPE", "WHAT", "HOST",
              "RANK", "STEP", "DETAIL");
  for (const auto& e : entries) {
    std::string type =
        e.type == "event" ? "event#" + std::to_string(e.id) : "action#" + std::to_string(e.id);
    std::string detail = e.detail_json;
    if (e.event_id)
      detail = "on event#" + std::to_string(*e.event_id) + " by " + e.actor + " " + detail;
    else if (!e.actor.empty())
      detail = "by " + e.actor + " " + detail;
    std::printf("%-24s %-4lld %-13s %-20s %-8s %-4s %-6s %s\n", FormatTimeMicros(e.time_us).c_str(),
                static_cast<long long>(e.run_id), type.c_str(), e.what.c_str(),
                e.host.empty() ? "-" : e.host.c_str(),
                e.rank ? std::to_string(*e.rank).c_str() : "-",
                e.step ? std::to_string(*e.step).c_str() : "-", detail.c_str());
  }
}

}  // namespace

int LogbookLs(const LogbookLsArgs& args) {
  auto lb = Logbook::Open(LogbookPath(args.workdir), false);
  if (!lb.ok()) {
    std::fprintf(stderr, "vigil logbook: %s\n", lb.status().message().c_str());
    return 2;
  }
  auto entries = lb.value()->Entries(args.run ? std::optional<int64_t>(args.run) : std::nullopt);
  if (!entries.ok()) {
    std::fprintf(stderr, "vigil logbook: %s\n", entries.status().ToString().c_str());
    return 1;
  }
  if (args.output == "json") {
    json out = json::array();
    for (const auto& e : entries.value()) out.push_back(EntryJson(e));
    std::cout << out.dump() << "\n";
  } else {
    PrintEntriesTable(entries.value());
  }
  return 0;
}

std::string PrintRunReport(const std::string& workdir, int64_t run_id, double wall_seconds,
                           bool json_only) {
  json summary{{"run_id", run_id}, {"workdir", workdir}, {"wall_seconds", wall_seconds}};
  auto lb = Logbook::Open(LogbookPath(workdir), false);
  if (!lb.ok()) {
    summary["error"] = lb.status().message();
    return summary.dump();
  }
  auto& book = *lb.value();
  auto runs = book.Runs();
  auto recoveries = book.Recoveries(run_id);
  auto entries = book.Entries(run_id);
  const RunRow* run = nullptr;
  if (runs.ok()) {
    for (const auto& r : runs.value()) {
      if (r.id == run_id) run = &r;
    }
  }
  if (!run) {
    summary["error"] = "run " + std::to_string(run_id) + " is not in the logbook";
    return summary.dump();
  }
  // A relaunch past a corrupt checkpoint is a fallback, not a restart.
  int restarts = 0, fallbacks = 0;
  json rec = json::array();
  if (recoveries.ok()) {
    for (const auto& r : recoveries.value()) {
      ++(r.kind == "checkpoint_corrupt" ? fallbacks : restarts);
      json j{{"event_id", r.event_id}, {"kind", r.kind}, {"generation", r.generation}};
      if (r.rank) j["rank"] = *r.rank;
      if (r.detection_ms) j["detection_ms"] = *r.detection_ms;
      if (r.recovery_ms) j["recovery_ms"] = *r.recovery_ms;
      rec.push_back(j);
    }
  }
  summary["job"] = run->name;
  summary["status"] = run->status;
  summary["steps"] = run->final_step.value_or(0);
  summary["final_loss"] = run->final_loss ? json(*run->final_loss) : json(nullptr);
  summary["entropy_floor"] = trainer::SyntheticCorpus::EntropyRateNats();
  summary["restarts"] = restarts;
  summary["checkpoint_fallbacks"] = fallbacks;
  // Why a run that did not succeed stopped: its last decision.
  std::string why;
  if (run->status != "succeeded") {
    auto interventions = book.Interventions(run_id);
    if (interventions.ok()) {
      for (const auto& i : interventions.value())
        if (i.action == "fail_job" || i.action == "pause_and_page") why = i.outcome;
    }
    summary["why"] = why;
  }
  summary["tokens_per_second"] =
      run->tokens_per_second ? json(*run->tokens_per_second) : json(nullptr);
  summary["params_digest"] = run->params_digest;
  summary["recoveries"] = rec;
  if (json_only) return summary.dump();

  std::printf("\njob %s, run %lld: %s in %.1f s\n", run->name.c_str(),
              static_cast<long long>(run_id), run->status.c_str(), wall_seconds);
  if (run->final_loss) {
    std::printf(
        "  steps %lld, final loss %.4f (entropy floor of the corpus %.4f), %.0f tokens/s, %d "
        "restarts, %d checkpoint fallback%s\n",
        static_cast<long long>(run->final_step.value_or(0)), *run->final_loss,
        trainer::SyntheticCorpus::EntropyRateNats(), run->tokens_per_second.value_or(0), restarts,
        fallbacks, fallbacks == 1 ? "" : "s");
    std::printf("  params_digest %s\n", run->params_digest.c_str());
  }
  if (!why.empty()) std::printf("  why: %s\n", why.c_str());
  auto ms = [](const json& j, const char* key) {
    char buf[32] = "n/a";
    if (j.contains(key)) std::snprintf(buf, sizeof(buf), "%.1f ms", j[key].get<double>());
    return std::string(buf);
  };
  for (const auto& r : rec) {
    std::printf(
        "  recovery of event#%lld (%s, rank %s): detected after %s, training again after %s\n",
        static_cast<long long>(r["event_id"].get<int64_t>()), r["kind"].get<std::string>().c_str(),
        r.contains("rank") ? std::to_string(r["rank"].get<int>()).c_str() : "-",
        ms(r, "detection_ms").c_str(), ms(r, "recovery_ms").c_str());
  }
  std::printf("\nlogbook %s:\n", LogbookPath(workdir).c_str());
  if (entries.ok()) PrintEntriesTable(entries.value());
  return summary.dump();
}

}  // namespace vigil::cli
