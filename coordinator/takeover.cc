#include "coordinator/takeover.h"

#include <algorithm>
#include <limits>
#include <map>

#include <nlohmann/json.hpp>

#include "common/vocabulary.h"

namespace vigil::coordinator {

using nlohmann::json;

namespace {

std::vector<std::string> SplitHosts(const std::string& s) {
  std::vector<std::string> out;
  size_t from = 0;
  while (from <= s.size()) {
    const size_t comma = s.find(',', from);
    const size_t to = comma == std::string::npos ? s.size() : comma;
    if (to > from) out.push_back(s.substr(from, to - from));
    from = to + 1;
  }
  return out;
}

}  // namespace

bool RunTakeover::paused() const { return run.status == job_state::kPaused; }

const GenerationRow* RunTakeover::newest() const {
  return generations.empty() ? nullptr : &generations.back();
}

const GenerationRow* RunTakeover::in_flight() const {
  const GenerationRow* g = newest();
  return g && !g->ended_at_us ? g : nullptr;
}

std::vector<std::string> RunTakeover::SlotHosts() const {
  const GenerationRow* g = newest();
  if (!g || g->hosts.empty()) return {};
  return SplitHosts(g->hosts);
}

std::set<std::string> RunTakeover::Cordoned() const {
  std::set<std::string> out;
  for (const auto& i : interventions) {
    if (i.action != action::kCordonHost) continue;
    auto p = json::parse(i.params_json, nullptr, false);
    if (p.is_object() && p.value("host", "") != "") out.insert(p.value("host", ""));
  }
  return out;
}

int RunTakeover::Restarts() const {
  std::set<int64_t> answered;  // interventions that answered an event
  for (const auto& i : interventions) {
    if (i.event_id) answered.insert(i.id);
  }
  int n = 0;
  for (const auto& g : generations) {
    if (g.cause_intervention_id && answered.count(*g.cause_intervention_id)) ++n;
  }
  return n;
}

std::string RunTakeover::OptimizerOverride() const {
  std::string out;
  for (const auto& i : interventions) {
    if (i.action != action::kSwitchOptimizer) continue;
    auto p = json::parse(i.params_json, nullptr, false);
    if (p.is_object()) out = p.value("to", out);
  }
  return out;
}

std::optional<InterventionRow> RunTakeover::PendingRestart() const {
  const GenerationRow* g = newest();
  if (!g || !g->ended_at_us || paused()) return std::nullopt;
  std::optional<InterventionRow> out;
  for (const auto& i : interventions) {
    const bool restart = i.action == action::kRestartFromLatest || i.action == action::kRollback ||
                         i.action == action::kResume || i.action == action::kGrowWorld;
    if (restart && i.time_us >= g->started_at_us && i.id > g->cause_intervention_id.value_or(0))
      out = i;
  }
  return out;
}

std::optional<int64_t> RunTakeover::PausedEvent() const {
  std::optional<int64_t> out;
  for (const auto& i : interventions) {
    if (i.action == action::kPauseAndPage && i.event_id) out = i.event_id;
  }
  return out;
}

PlaybookHistory RunTakeover::History() const {
  PlaybookHistory h;
  std::map<int64_t, const EventRow*> by_id;
  for (const auto& e : events) {
    by_id[e.id] = &e;
    // The playbook decides on failures; a corrupt checkpoint is the
    // catalogue's, vigild's own comings and goings nobody's.
    const bool failure = std::find(std::begin(kFailureKinds), std::end(kFailureKinds), e.kind) !=
                         std::end(kFailureKinds);
    if (!failure || e.kind == kind::kCheckpointCorrupt) continue;
    Detection d;
    d.kind = e.kind;
    d.host = e.host;
    d.rank = e.rank;
    d.step = e.step;
    d.time_us = e.time_us;
    auto detail = json::parse(e.detail_json, nullptr, false);
    if (detail.is_object()) {
      d.detail = detail;
      if (detail.contains("codes") && detail["codes"].is_array()) {
        for (const auto& c : detail["codes"])
          if (c.is_number_integer()) d.codes.push_back(c.get<int64_t>());
      }
    }
    h.seen.push_back(std::move(d));
  }
  std::set<std::pair<std::string, int64_t>> applications;  // (rule, event): once each
  for (const auto& i : interventions) {
    if (!i.event_id || i.actor.rfind("auto:", 0) != 0) continue;
    auto e = by_id.find(*i.event_id);
    if (e == by_id.end()) continue;
    const std::string rule = i.actor.substr(5);
    if (applications.insert({rule, *i.event_id}).second)
      h.applied.emplace_back(rule, e->second->time_us);
  }
  std::map<int64_t, const InterventionRow*> interventions_by_id;
  for (const auto& i : interventions) interventions_by_id[i.id] = &i;
  for (const auto& g : generations) {
    if (!g.cause_intervention_id) continue;
    auto i = interventions_by_id.find(*g.cause_intervention_id);
    if (i == interventions_by_id.end() || !i->second->event_id) continue;
    auto e = by_id.find(*i->second->event_id);
    if (e != by_id.end()) h.restarts.push_back(e->second->time_us);
  }
  return h;
}

int64_t RunTakeover::LastWrittenUs() const {
  int64_t t = run.started_at_us;
  for (const auto& e : epochs) t = std::max(t, e.started_at_us);
  if (!events.empty()) t = std::max(t, events.back().time_us);
  for (const auto& i : interventions) t = std::max(t, i.time_us);
  for (const auto& g : generations) {
    t = std::max({t, g.started_at_us, g.first_step_at_us.value_or(0), g.ended_at_us.value_or(0)});
  }
  for (const auto& c : checkpoints) t = std::max(t, c.committed_at_us);
  if (last_step) t = std::max(t, last_step->time_us);
  return t;
}

Result<std::optional<int64_t>> FindUnfinishedRun(Logbook& logbook, const std::string& name) {
  auto runs = logbook.Runs();
  if (!runs.ok()) return runs.status();
  std::optional<int64_t> out;
  for (const auto& r : runs.value()) {
    if (r.name != name) continue;
    out = IsRunOver(r.status) ? std::nullopt : std::optional<int64_t>(r.id);
  }
  return out;
}

Result<RunTakeover> LoadTakeover(Logbook& logbook, int64_t run_id) {
  RunTakeover t;
  auto run = logbook.Run(run_id);
  if (!run.ok()) return run.status();
  t.run = run.value();
  auto generations = logbook.Generations(run_id);
  if (!generations.ok()) return generations.status();
  t.generations = std::move(generations.value());
  auto checkpoints = logbook.Checkpoints(run_id);
  if (!checkpoints.ok()) return checkpoints.status();
  t.checkpoints = std::move(checkpoints.value());
  auto events = logbook.Events(run_id);
  if (!events.ok()) return events.status();
  t.events = std::move(events.value());
  auto interventions = logbook.Interventions(run_id);
  if (!interventions.ok()) return interventions.status();
  t.interventions = std::move(interventions.value());
  auto epochs = logbook.Epochs(run_id);
  if (!epochs.ok()) return epochs.status();
  t.epochs = std::move(epochs.value());
  auto steps = logbook.StepsAround(run_id, std::numeric_limits<int64_t>::max(), 1);
  if (!steps.ok()) return steps.status();
  if (!steps->empty()) t.last_step = steps->back();
  return t;
}

}  // namespace vigil::coordinator
