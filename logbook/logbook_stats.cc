// What a run cost and why, from the file: `vigil logbook stats` (goodput by
// logbook/goodput_rule.h, restarts, MTBF, failures by kind and host, actions)
// and each recovery's detection and recovery time.
#include "logbook/logbook.h"

#include <algorithm>
#include <map>

#include "logbook/goodput_rule.h"
#include "logbook/sqlite_statement.h"

namespace vigil {
namespace {

using logbook_detail::OptInt;
using logbook_detail::OptReal;
using logbook_detail::Stmt;
using logbook_detail::Text;

}  // namespace

Result<std::vector<RecoveryRow>> Logbook::Recoveries(int64_t run_id) {
  std::vector<RecoveryRow> out;
  // The failure time is when the fault was injected if it was, else when the rank exited.
  Stmt s(db_, R"sql(
    SELECT e.id, e.kind, e.rank, g.number,
           json_extract(e.detail, '$.detection_latency_ms'),
           (g.first_step_at_us - COALESCE(json_extract(e.detail, '$.fault_injected_at_us'),
                                          json_extract(e.detail, '$.exited_at_us'), e.time_us)) / 1000.0
      FROM generations g
      JOIN interventions i ON i.id = g.cause_intervention_id
      JOIN events e ON e.id = i.event_id
     WHERE g.run_id = ?
     ORDER BY g.number)sql");
  s.Bind(1, run_id);
  VIGIL_RETURN_IF_ERROR(s.ForEach([&](sqlite3_stmt* r) {
    RecoveryRow row;
    row.event_id = sqlite3_column_int64(r, 0);
    row.kind = Text(r, 1);
    if (auto rank = OptInt(r, 2)) row.rank = static_cast<int>(*rank);
    row.generation = sqlite3_column_int64(r, 3);
    row.detection_ms = OptReal(r, 4);
    row.recovery_ms = OptReal(r, 5);
    out.push_back(row);
  }));
  return out;
}

Result<RunStats> Logbook::Stats(int64_t run_id, int64_t now_us) {
  auto found = Run(run_id);
  if (!found.ok()) return found.status();
  const RunRow* run = &found.value();
  auto gens = Generations(run_id);
  if (!gens.ok()) return gens.status();
  auto ckpts = Checkpoints(run_id);
  if (!ckpts.ok()) return ckpts.status();
  RunStats st;
  st.run_id = run_id;
  const int64_t end = run->ended_at_us.value_or(now_us);
  st.wall_seconds = static_cast<double>(end - run->started_at_us) / 1e6;
  st.generations = static_cast<int>(gens->size());
  // Productive time: logbook/goodput_rule.h.
  std::map<std::string, const CheckpointRow*> by_path;
  for (const auto& c : ckpts.value()) by_path.emplace(c.path, &c);
  double trained = 0;  // every generation's training, kept or not (for MTBF)
  const auto& g = gens.value();
  for (size_t i = 0; i < g.size(); ++i) {
    const int64_t to = g[i].ended_at_us.value_or(end);
    if (g[i].first_step_at_us)
      trained += static_cast<double>(std::max<int64_t>(0, to - *g[i].first_step_at_us)) / 1e6;
    const bool superseded = i + 1 < g.size();
    std::optional<int64_t> kept;
    if (superseded) {
      const auto it = by_path.find(g[i + 1].resumed_from_path);
      if (it != by_path.end() && it->second->generation_id == g[i].id)
        kept = it->second->committed_at_us;
    }
    st.productive_seconds += ProductiveSeconds(g[i].first_step_at_us, to, superseded, kept);
  }
  st.lost_seconds = std::max(0.0, st.wall_seconds - st.productive_seconds);
  st.goodput = GoodputRatio(st.productive_seconds, st.wall_seconds);
  // Restarts: generations caused by an intervention that answered an event.
  Stmt restarts(db_, R"sql(
    SELECT count(*) FROM generations g JOIN interventions i ON i.id = g.cause_intervention_id
     WHERE g.run_id = ? AND i.event_id IS NOT NULL)sql");
  restarts.Bind(1, run_id);
  VIGIL_RETURN_IF_ERROR(
      restarts.ForEach([&](sqlite3_stmt* r) { st.restarts = sqlite3_column_int(r, 0); }));
  if (st.restarts > 0) st.mtbf_seconds = trained / st.restarts;
  auto count_by = [&](const char* sql, std::vector<std::pair<std::string, int64_t>>* out) {
    Stmt q(db_, sql);
    q.Bind(1, run_id);
    return q.ForEach(
        [&](sqlite3_stmt* r) { out->emplace_back(Text(r, 0), sqlite3_column_int64(r, 1)); });
  };
  VIGIL_RETURN_IF_ERROR(
      count_by("SELECT kind, count(*) FROM events WHERE run_id=? GROUP BY kind ORDER BY 2 DESC, 1",
               &st.failures_by_kind));
  VIGIL_RETURN_IF_ERROR(
      count_by("SELECT host, count(*) FROM events WHERE run_id=? AND host != '' GROUP BY host "
               "ORDER BY 2 DESC, 1",
               &st.failures_by_host));
  VIGIL_RETURN_IF_ERROR(
      count_by("SELECT action, count(*) FROM interventions WHERE run_id=? GROUP BY action ORDER BY "
               "2 DESC, 1",
               &st.actions));
  return st;
}

}  // namespace vigil
