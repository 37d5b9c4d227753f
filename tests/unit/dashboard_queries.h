// The PromQL that ships in dashboards/: every target of every Grafana panel,
// every annotation, and every recording and alert rule. metrics_test checks
// they read only what vigild exports; prometheus_test runs them against a
// real Prometheus.
#pragma once

#include <string>
#include <vector>

#include <yaml-cpp/yaml.h>
#include <nlohmann/json.hpp>

#include "tests/integration/process_util.h"

namespace vigil::testing {

inline const char* const kDashboards[] = {"run-overview", "failures", "hosts", "checkpoints"};

inline std::string DashboardPath(const std::string& name) {
  return std::string(VIGIL_SOURCE_DIR) + "/dashboards/grafana/" + name + ".json";
}

inline std::string RulesPath() {
  return std::string(VIGIL_SOURCE_DIR) + "/dashboards/prometheus/vigil-rules.yml";
}

struct DashboardQuery {
  std::string where;  // "hosts: Host losses [A]", "failures: annotation Interventions"
  std::string expr;
};

inline std::vector<DashboardQuery> DashboardQueries() {
  std::vector<DashboardQuery> out;
  for (const char* name : kDashboards) {
    const auto d = nlohmann::json::parse(Slurp(DashboardPath(name)));
    const std::string dashboard = std::string(name) + ": ";
    for (const auto& p : d.at("panels")) {
      if (p.at("type") == "row") continue;
      for (const auto& t : p.at("targets")) {
        out.push_back({dashboard + p.at("title").get<std::string>() + " [" +
                           t.at("refId").get<std::string>() + "]",
                       t.at("expr").get<std::string>()});
      }
    }
    for (const auto& a : d.at("annotations").at("list")) {
      if (a.contains("expr"))
        out.push_back({dashboard + "annotation " + a.at("name").get<std::string>(),
                       a.at("expr").get<std::string>()});
    }
  }
  return out;
}

struct RuleQuery {
  std::string name;  // the alert's, or the recorded series'
  std::string expr;
  bool recording = false;
};

inline std::vector<RuleQuery> RuleQueries() {
  std::vector<RuleQuery> out;
  for (const auto& group : YAML::LoadFile(RulesPath())["groups"]) {
    for (const auto& r : group["rules"]) {
      const bool recording = static_cast<bool>(r["record"]);
      out.push_back({(recording ? r["record"] : r["alert"]).as<std::string>(),
                     r["expr"].as<std::string>(), recording});
    }
  }
  return out;
}

}  // namespace vigil::testing
