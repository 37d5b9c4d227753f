#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <map>
#include <set>
#include <thread>

#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "common/util.h"
#include "common/vocabulary.h"
#include "logbook/logbook.h"
#include "logbook/logbook_query.h"

namespace vigil::cli {

using nlohmann::json;

namespace {

// A work directory's logbook, or the file named.
std::string LogbookPath(const std::string& workdir) {
  std::error_code ec;
  if (std::filesystem::is_regular_file(workdir, ec)) return workdir;
  return std::filesystem::path(workdir) / "logbook.sqlite";
}

}  // namespace

std::unique_ptr<Logbook> OpenLogbookOrSay(const std::string& workdir) {
  auto lb = Logbook::Open(LogbookPath(workdir), false);
  if (!lb.ok()) {
    std::fprintf(stderr, "vigil logbook: %s\n", lb.status().message().c_str());
    return nullptr;
  }
  return std::move(lb.value());
}

int64_t NewestRunOrSay(Logbook& lb, int64_t asked) {
  auto runs = lb.Runs();
  if (!runs.ok() || runs->empty()) {
    std::fprintf(stderr, "vigil logbook: %s holds no run\n", lb.path().c_str());
    return 0;
  }
  if (asked == 0) return runs->back().id;
  for (const auto& r : runs.value()) {
    if (r.id == asked) return asked;
  }
  std::fprintf(stderr, "vigil logbook: run %lld is not in %s\n", static_cast<long long>(asked),
               lb.path().c_str());
  return 0;
}

namespace {

std::string EntryLabel(const LogbookEntry& e) {
  const char* prefix = e.type == "event" ? "event#" : e.type == "note" ? "note#" : "action#";
  return prefix + std::to_string(e.id);
}

std::string EntryDetail(const LogbookEntry& e) {
  if (e.type == "note") {
    const json d = json::parse(e.detail_json, nullptr, false);
    return "by " + e.actor + ": " + (d.is_object() ? d.value("text", "") : e.detail_json);
  }
  if (e.event_id)
    return "on event#" + std::to_string(*e.event_id) + " by " + e.actor + " " + e.detail_json;
  if (!e.actor.empty()) return "by " + e.actor + " " + e.detail_json;
  return e.detail_json;
}

void PrintTableHeader() {
  std::printf("%-24s %-4s %-13s %-24s %-8s %-4s %-6s %s\n", "TIME", "RUN", "TYPE", "WHAT", "HOST",
              "RANK", "STEP", "DETAIL");
}

void PrintTableRow(const LogbookEntry& e) {
  std::printf("%-24s %-4lld %-13s %-24s %-8s %-4s %-6s %s\n", FormatTimeMicros(e.time_us).c_str(),
              static_cast<long long>(e.run_id), EntryLabel(e).c_str(), e.what.c_str(),
              e.host.empty() ? "-" : e.host.c_str(), e.rank ? std::to_string(*e.rank).c_str() : "-",
              e.step ? std::to_string(*e.step).c_str() : "-", EntryDetail(e).c_str());
}

void PrintEntriesTable(const std::vector<LogbookEntry>& entries) {
  PrintTableHeader();
  for (const auto& e : entries) PrintTableRow(e);
}

// RFC 4180: quoted when it holds a comma, a quote or a line break.
std::string Csv(const std::string& field) {
  if (field.find_first_of(",\"\r\n") == std::string::npos) return field;
  std::string out = "\"";
  for (char c : field) out += c == '"' ? std::string("\"\"") : std::string(1, c);
  return out + "\"";
}

void PrintCsvRow(const LogbookEntry& e) {
  const std::vector<std::string> fields = {FormatTimeMicros(e.time_us),
                                           std::to_string(e.run_id),
                                           e.type,
                                           std::to_string(e.id),
                                           e.what,
                                           e.generation ? std::to_string(*e.generation) : "",
                                           e.host,
                                           e.rank ? std::to_string(*e.rank) : "",
                                           e.step ? std::to_string(*e.step) : "",
                                           e.event_id ? std::to_string(*e.event_id) : "",
                                           e.actor,
                                           e.detail_json};
  std::string line;
  for (size_t i = 0; i < fields.size(); ++i) line += (i ? "," : "") + Csv(fields[i]);
  std::printf("%s\n", line.c_str());
}

}  // namespace

int LogbookLs(const LogbookArgs& args) {
  EntryFilter f;
  const int64_t now = NowMicros();
  for (const auto& [text, out] :
       {std::pair{&args.since, &f.since_us}, {&args.until, &f.until_us}}) {
    if (text->empty()) continue;
    auto t = ParseTimePoint(*text, now);
    if (!t.ok()) {
      std::fprintf(stderr, "vigil logbook: %s\n", t.status().message().c_str());
      return 2;
    }
    *out = t.value();
  }
  auto lb = OpenLogbookOrSay(args.workdir);
  if (!lb) return 2;
  if (args.run) f.run_id = args.run;
  f.kinds = args.kinds;
  f.host = args.host;
  if (args.rank >= 0) f.rank = args.rank;
  f.actor = args.actor;
  f.last = args.last;
  // Follows as `journalctl -f` does: what is there (the newest --last),
  // then each new entry as it is written, until interrupted. Each query
  // covers the rows up to the newest ids read just before it, and the next
  // one starts after them: nothing is shown twice or skipped.
  bool first = true;
  while (true) {
    auto latest = lb->MaxIds();
    if (!latest.ok()) {
      std::fprintf(stderr, "vigil logbook: %s\n", latest.status().ToString().c_str());
      return 1;
    }
    f.upto = latest.value();
    auto entries = lb->Entries(f);
    if (!entries.ok()) {
      std::fprintf(stderr, "vigil logbook: %s\n", entries.status().ToString().c_str());
      return 1;
    }
    if (args.output == "json" && !args.follow) {
      json out = json::array();
      for (const auto& e : entries.value()) out.push_back(EntryJson(e));
      std::cout << out.dump() << "\n";
    } else {
      if (first && args.output == "table") PrintTableHeader();
      if (first && args.output == "csv")
        std::printf("time,run,type,id,what,generation,host,rank,step,event_id,actor,detail\n");
      for (const auto& e : entries.value()) {
        if (args.output == "json") {
          std::printf("%s\n", EntryJson(e).dump().c_str());  // one object a line while following
        } else if (args.output == "csv") {
          PrintCsvRow(e);
        } else {
          PrintTableRow(e);
        }
      }
    }
    std::fflush(stdout);
    if (!args.follow) return 0;
    f.after = latest.value();
    f.last = 0;
    first = false;
    std::this_thread::sleep_for(std::chrono::milliseconds(250));
  }
}

int LogbookNote(const LogbookArgs& args) {
  if (args.text.empty()) {
    std::fprintf(stderr, "vigil logbook note: the note is empty\n");
    return 2;
  }
  auto lb = OpenLogbookOrSay(args.workdir);
  if (!lb) return 2;
  const int64_t run = NewestRunOrSay(*lb, args.run);
  if (!run) return 2;
  NoteRow n;
  n.run_id = run;
  n.time_us = NowMicros();
  n.author = args.author.empty() ? CurrentUser() : args.author;
  n.text = args.text;
  auto id = lb->AddNote(n);
  if (!id.ok()) {
    std::fprintf(stderr, "vigil logbook: %s\n", id.status().ToString().c_str());
    return 1;
  }
  std::printf("note#%lld on run %lld by %s\n", static_cast<long long>(id.value()),
              static_cast<long long>(run), n.author.c_str());
  return 0;
}

// Steps shown either side of an event.
constexpr size_t kStepsAround = 5;

int LogbookShow(const LogbookArgs& args) {
  auto lb = OpenLogbookOrSay(args.workdir);
  if (!lb) return 2;
  auto found = lb->Event(args.event_id);
  if (!found.ok() || !found->has_value()) {
    std::fprintf(stderr, "vigil logbook: %s\n",
                 found.ok()
                     ? ("no event#" + std::to_string(args.event_id) + " in " + lb->path()).c_str()
                     : found.status().ToString().c_str());
    return found.ok() ? 2 : 1;
  }
  const EventRow& e = **found;
  auto gens = lb->Generations(e.run_id);
  auto interventions = lb->InterventionsOf(e.id);
  auto checkpoints = lb->Checkpoints(e.run_id);
  auto recoveries = lb->Recoveries(e.run_id);
  if (!gens.ok() || !interventions.ok() || !checkpoints.ok() || !recoveries.ok()) {
    std::fprintf(stderr, "vigil logbook: cannot read run %lld\n", static_cast<long long>(e.run_id));
    return 1;
  }
  json out;
  out["event"] = {{"id", e.id},
                  {"run_id", e.run_id},
                  {"time", FormatTimeMicros(e.time_us)},
                  {"kind", e.kind},
                  {"host", e.host},
                  {"rank", e.rank ? json(*e.rank) : json()},
                  {"step", e.step ? json(*e.step) : json()},
                  {"detail", json::parse(e.detail_json, nullptr, false)}};
  json answers = json::array();
  std::set<int64_t> answer_ids;
  for (const auto& i : interventions.value()) {
    if (i.event_id != e.id) continue;
    answer_ids.insert(i.id);
    answers.push_back({{"id", i.id},
                       {"time", FormatTimeMicros(i.time_us)},
                       {"action", i.action},
                       {"actor", i.actor},
                       {"params", json::parse(i.params_json, nullptr, false)},
                       {"outcome", i.outcome}});
  }
  out["interventions"] = answers;
  auto gen_json = [](const GenerationRow& g) {
    json j{{"number", g.number},
           {"world_size", g.world_size},
           {"hosts", g.hosts},
           {"started", FormatTimeMicros(g.started_at_us)}};
    if (g.resumed_from_step) j["resumed_from_step"] = *g.resumed_from_step;
    if (!g.resumed_from_path.empty()) j["resumed_from"] = g.resumed_from_path;
    if (g.first_step_at_us) j["first_step"] = FormatTimeMicros(*g.first_step_at_us);
    if (g.ended_at_us) j["ended"] = FormatTimeMicros(*g.ended_at_us);
    if (!g.end_reason.empty()) j["end_reason"] = g.end_reason;
    return j;
  };
  for (const auto& g : gens.value()) {
    if (e.generation_id == g.id) out["generation"] = gen_json(g);
    if (g.cause_intervention_id && answer_ids.count(*g.cause_intervention_id))
      out["next_generation"] = gen_json(g);
  }
  for (const auto& r : recoveries.value()) {
    if (r.event_id != e.id) continue;
    if (r.detection_ms) out["detection_ms"] = *r.detection_ms;
    if (r.recovery_ms) out["recovery_ms"] = *r.recovery_ms;
  }
  // The checkpoints either side of it: what a restart could resume from, and the next one.
  const CheckpointRow* before = nullptr;
  const CheckpointRow* after = nullptr;
  for (const auto& c : checkpoints.value()) {  // newest step first
    if (c.committed_at_us <= e.time_us && !before) before = &c;
    if (c.committed_at_us > e.time_us) after = &c;
  }
  auto ckpt_json = [](const CheckpointRow& c) {
    return json{{"step", c.step},
                {"path", c.path},
                {"committed", FormatTimeMicros(c.committed_at_us)},
                {"state", c.state}};
  };
  if (before) out["checkpoint_before"] = ckpt_json(*before);
  if (after) out["checkpoint_after"] = ckpt_json(*after);
  // The training curve around it: what rank 0 reported just before and after.
  std::map<int64_t, int64_t> generation_number;
  for (const auto& g : gens.value()) generation_number[g.id] = g.number;
  auto around = lb->StepsAround(e.run_id, e.time_us, kStepsAround);
  json steps = json::array();
  for (const auto& r : around.ok() ? around.value() : std::vector<StepRow>{}) {
    auto opt = [](const std::optional<double>& v) { return v ? json(*v) : json(); };
    steps.push_back({{"time", FormatTimeMicros(r.time_us)},
                     {"generation", generation_number[r.generation_id]},
                     {"step", r.step},
                     {"loss", opt(r.loss)},
                     {"lr", opt(r.lr)},
                     {"grad_norm", opt(r.grad_norm)},
                     {"tokens_per_second", opt(r.tokens_per_second)},
                     {"after_event", r.time_us > e.time_us}});
  }
  out["steps_around"] = steps;
  if (args.output == "json") {
    std::cout << out.dump() << "\n";
    return 0;
  }
  std::printf(
      "event#%lld %s at %s, run %lld%s%s%s%s\n", static_cast<long long>(e.id), e.kind.c_str(),
      FormatTimeMicros(e.time_us).c_str(), static_cast<long long>(e.run_id),
      e.host.empty() ? "" : (", host " + e.host).c_str(),
      e.rank ? (", rank " + std::to_string(*e.rank)).c_str() : "",
      e.step ? (", step " + std::to_string(*e.step)).c_str() : "",
      out.contains("generation")
          ? (", generation " + std::to_string(out["generation"]["number"].get<int64_t>())).c_str()
          : "");
  std::printf("  detail: %s\n", out["event"]["detail"].dump().c_str());
  if (out.contains("detection_ms"))
    std::printf("  detected %.1f ms after the fault\n", out["detection_ms"].get<double>());
  std::printf("answered by:\n");
  if (answers.empty()) std::printf("  (nothing)\n");
  for (const auto& a : answers) {
    std::printf("  action#%lld %s %s by %s: %s %s\n",
                static_cast<long long>(a["id"].get<int64_t>()),
                a["time"].get<std::string>().c_str(), a["action"].get<std::string>().c_str(),
                a["actor"].get<std::string>().c_str(), a["outcome"].get<std::string>().c_str(),
                a["params"].dump().c_str());
  }
  if (out.contains("generation"))
    std::printf("during generation %s\n", out["generation"].dump().c_str());
  if (out.contains("next_generation")) {
    std::printf("led to generation %s\n", out["next_generation"].dump().c_str());
    if (out.contains("recovery_ms"))
      std::printf("  training again %.1f ms after the failure\n", out["recovery_ms"].get<double>());
  }
  if (before)
    std::printf("newest checkpoint before it: %s\n", out["checkpoint_before"].dump().c_str());
  if (after) std::printf("next checkpoint after it: %s\n", out["checkpoint_after"].dump().c_str());
  if (!steps.empty()) {
    std::printf("training around it (rank 0):\n  %-24s %4s %8s %10s %10s %10s %12s\n", "time",
                "gen", "step", "loss", "lr", "grad norm", "tokens/s");
    bool marked = false;
    for (const auto& r : steps) {
      if (r["after_event"].get<bool>() && !marked) {
        std::printf("  ---- event#%lld %s\n", static_cast<long long>(e.id), e.kind.c_str());
        marked = true;
      }
      auto num = [](const json& v, const char* fmt) {
        if (v.is_null()) return std::string("-");
        char buf[32];
        std::snprintf(buf, sizeof(buf), fmt, v.get<double>());
        return std::string(buf);
      };
      std::printf("  %-24s %4lld %8lld %10s %10s %10s %12s\n", r["time"].get<std::string>().c_str(),
                  static_cast<long long>(r["generation"].get<int64_t>()),
                  static_cast<long long>(r["step"].get<int64_t>()), num(r["loss"], "%.4f").c_str(),
                  num(r["lr"], "%.3g").c_str(), num(r["grad_norm"], "%.3f").c_str(),
                  num(r["tokens_per_second"], "%.0f").c_str());
    }
  }
  return 0;
}

int LogbookStats(const LogbookArgs& args) {
  auto lb = OpenLogbookOrSay(args.workdir);
  if (!lb) return 2;
  const int64_t run = NewestRunOrSay(*lb, args.run);
  if (!run) return 2;
  auto st = lb->Stats(run, NowMicros());
  if (!st.ok()) {
    std::fprintf(stderr, "vigil logbook: %s\n", st.status().ToString().c_str());
    return 1;
  }
  const RunStats& s = st.value();
  auto pairs = [](const std::vector<std::pair<std::string, int64_t>>& v) {
    json j = json::object();
    for (const auto& [k, n] : v) j[k] = n;
    return j;
  };
  json out{{"run_id", s.run_id},
           {"wall_seconds", s.wall_seconds},
           {"productive_seconds", s.productive_seconds},
           {"lost_seconds", s.lost_seconds},
           {"goodput", s.goodput},
           {"generations", s.generations},
           {"restarts", s.restarts},
           {"mtbf_seconds", s.mtbf_seconds ? json(*s.mtbf_seconds) : json()},
           {"failures_by_kind", pairs(s.failures_by_kind)},
           {"failures_by_host", pairs(s.failures_by_host)},
           {"interventions_by_action", pairs(s.actions)}};
  auto row = lb->Run(run);
  const std::string slurm_job = row.ok() ? row->slurm_job_id : "";
  if (!slurm_job.empty()) out["slurm_job_id"] = slurm_job;
  if (args.output == "json") {
    std::cout << out.dump() << "\n";
    return 0;
  }
  std::printf("run %lld: %.1f s wall, %.1f s productive, %.1f s lost; goodput %.1f%%\n",
              static_cast<long long>(s.run_id), s.wall_seconds, s.productive_seconds,
              s.lost_seconds, 100.0 * s.goodput);
  if (!slurm_job.empty()) std::printf("Slurm job %s\n", slurm_job.c_str());
  std::printf("%d generations, %d restarts, MTBF %s\n", s.generations, s.restarts,
              s.mtbf_seconds ? (std::to_string(*s.mtbf_seconds) + " s of training").c_str()
                             : "n/a (no failure)");
  auto table = [](const char* title, const std::vector<std::pair<std::string, int64_t>>& v) {
    std::printf("%s:\n", title);
    if (v.empty()) std::printf("  (none)\n");
    for (const auto& [k, n] : v)
      std::printf("  %-28s %lld\n", k.c_str(), static_cast<long long>(n));
  };
  table("detections by kind", s.failures_by_kind);
  table("detections by host", s.failures_by_host);
  table("interventions by action", s.actions);
  return 0;
}

std::string PrintRunReport(const std::string& workdir, int64_t run_id, double wall_seconds,
                           std::optional<double> entropy_floor, bool json_only) {
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
      ++(r.kind == kind::kCheckpointCorrupt ? fallbacks : restarts);
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
  summary["entropy_floor"] = entropy_floor ? json(*entropy_floor) : json(nullptr);
  summary["restarts"] = restarts;
  summary["checkpoint_fallbacks"] = fallbacks;
  // Why a run that did not succeed stopped: its last decision.
  std::string why;
  if (run->status != job_state::kSucceeded) {
    auto interventions = book.Interventions(run_id);
    if (interventions.ok()) {
      for (const auto& i : interventions.value())
        if (i.action == action::kFailJob || i.action == action::kPauseAndPage) why = i.outcome;
    }
    if (why.empty() && run->status == job_state::kCancelled)
      why = "vigild was stopped by a signal (an interrupted vigil run, or scancel)";
    summary["why"] = why;
  }
  summary["tokens_per_second"] =
      run->tokens_per_second ? json(*run->tokens_per_second) : json(nullptr);
  summary["params_digest"] = run->params_digest;
  summary["recoveries"] = rec;
  if (!run->slurm_job_id.empty()) summary["slurm_job_id"] = run->slurm_job_id;
  if (json_only) return summary.dump();

  std::printf("\njob %s, run %lld: %s in %.1f s\n", run->name.c_str(),
              static_cast<long long>(run_id), run->status.c_str(), wall_seconds);
  if (run->final_loss) {
    char floor_note[64] = "file corpus: no known entropy floor";
    if (entropy_floor)
      std::snprintf(floor_note, sizeof(floor_note), "entropy floor of the corpus %.4f",
                    *entropy_floor);
    std::printf(
        "  steps %lld, final loss %.4f (%s), %.0f tokens/s, %d restarts, %d checkpoint "
        "fallback%s\n",
        static_cast<long long>(run->final_step.value_or(0)), *run->final_loss, floor_note,
        run->tokens_per_second.value_or(0), restarts, fallbacks, fallbacks == 1 ? "" : "s");
    std::printf("  params_digest %s\n", run->params_digest.c_str());
  }
  if (!why.empty()) std::printf("  why: %s\n", why.c_str());
  if (!run->slurm_job_id.empty()) std::printf("  Slurm job %s\n", run->slurm_job_id.c_str());
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
