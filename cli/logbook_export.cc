// `vigil logbook export --format markdown`: a run's chronicle, in the spirit
// of the OPT-175B logbook: per day (UTC), what broke, what was done about it
// and by whom, the generations, the checkpoints, learning-rate and optimizer
// changes, and people's notes.
#include <algorithm>
#include <cstdio>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "common/util.h"
#include "common/vocabulary.h"
#include "logbook/logbook.h"

namespace vigil::cli {

using nlohmann::json;

namespace {

std::string Day(int64_t us) { return FormatTimeMicros(us).substr(0, 10); }
std::string Clock(int64_t us) { return FormatTimeMicros(us).substr(11, 8); }

// "rank 3 on host-7 at step 1200" (what is known of it).
std::string Where(const LogbookEntry& e) {
  std::string out;
  if (e.rank) out += " rank " + std::to_string(*e.rank);
  if (!e.host.empty()) out += (out.empty() ? " on " : " of ") + e.host;
  if (e.step) out += " at step " + std::to_string(*e.step);
  return out;
}

// The one line people want from an event's detail.
std::string Gist(const std::string& kind, const json& d) {
  if (!d.is_object()) return "";
  for (const char* key : {"summary", "reason", "message", "xid_name", "suspect_reason"}) {
    if (d.contains(key) && d[key].is_string() && !d[key].get<std::string>().empty())
      return d[key].get<std::string>();
  }
  if (d.contains("signal_name")) return "killed by SIG" + d["signal_name"].get<std::string>();
  if (d.contains("exit_code")) return "exit code " + d["exit_code"].dump();
  (void)kind;
  return "";
}

std::string ActionText(const LogbookEntry& i) {
  const json d = json::parse(i.detail_json, nullptr, false);
  const json p = d.is_object() && d.contains("params") ? d["params"] : json::object();
  std::string what = "`" + i.what + "`";
  if (i.what == action::kRestartFromLatest || i.what == action::kRollback ||
      i.what == action::kFallbackToOlderCheckpoint) {
    if (p.value("checkpoint_step", 0) > 0)
      what += " from step " + std::to_string(p.value("checkpoint_step", 0));
    else
      what += " from scratch";
  } else if (i.what == action::kScaleLr) {
    what += " ×" + p.value("factor", json(0)).dump();
  } else if (i.what == action::kSwitchOptimizer) {
    what += " to " + p.value("to", std::string("?"));
  } else if (i.what == action::kSkipBatches) {
    what += " " + p.value("batches", json(0)).dump();
  } else if (i.what == action::kCordonHost) {
    what += " " + p.value("host", std::string("?"));
  } else if (i.what == action::kUseSpare) {
    if (p.contains("spare"))
      what += " " + p["spare"].get<std::string>() + " for " + p.value("replaced", std::string("?"));
  } else if (i.what == action::kShrinkWorld || i.what == action::kGrowWorld) {
    what += " " + p.value("from_world", json(0)).dump() + " → " +
            p.value("to_world", json(0)).dump() + " ranks";
  }
  return what + " (" + i.actor + ")";
}

}  // namespace

Result<std::string> ChronicleMarkdown(Logbook& lb, int64_t run_id) {
  auto found = lb.Run(run_id);
  if (!found.ok()) return found.status();
  const RunRow* run = &found.value();
  EntryFilter f;
  f.run_id = run_id;
  auto entries = lb.Entries(f);
  auto gens = lb.Generations(run_id);
  auto ckpts = lb.Checkpoints(run_id);
  auto stats = lb.Stats(run_id, NowMicros());
  if (!entries.ok()) return entries.status();
  if (!gens.ok()) return gens.status();
  if (!ckpts.ok()) return ckpts.status();
  if (!stats.ok()) return stats.status();

  // Lines per day, in time order: (time, text).
  std::map<std::string, std::multimap<int64_t, std::string>> days;
  auto add = [&](int64_t t, std::string text) { days[Day(t)].emplace(t, std::move(text)); };
  for (const auto& g : gens.value()) {
    std::string text = "Generation " + std::to_string(g.number) +
                       " started: " + std::to_string(g.world_size) + " ranks on " + g.hosts + ", ";
    text += g.resumed_from_step ? "resumed from step " + std::to_string(*g.resumed_from_step)
                                : "from scratch";
    if (g.first_step_at_us) {
      char buf[64];
      std::snprintf(buf, sizeof(buf), "; training %.1f s later",
                    static_cast<double>(*g.first_step_at_us - g.started_at_us) / 1e6);
      text += buf;
    }
    add(g.started_at_us, text + ".");
    if (g.ended_at_us)
      add(*g.ended_at_us,
          "Generation " + std::to_string(g.number) + " ended: " + g.end_reason + ".");
  }
  // Interventions go under the event they answer; the rest stand alone.
  std::map<int64_t, std::vector<const LogbookEntry*>> answers;
  for (const auto& e : entries.value()) {
    if (e.type == "intervention" && e.event_id) answers[*e.event_id].push_back(&e);
  }
  for (const auto& e : entries.value()) {
    if (e.type == "event") {
      std::string text = "**" + e.what + "**" + Where(e);
      const std::string gist = Gist(e.what, json::parse(e.detail_json, nullptr, false));
      if (!gist.empty()) text += ": " + gist;
      std::string done;
      for (const LogbookEntry* i : answers[e.id])
        done += (done.empty() ? "" : ", ") + ActionText(*i);
      add(e.time_us, text + (done.empty() ? "" : " → " + done) + ".");
    } else if (e.type == "note") {
      const json d = json::parse(e.detail_json, nullptr, false);
      add(e.time_us, "Note by " + e.actor.substr(6) + ": “" +
                         (d.is_object() ? d.value("text", "") : e.detail_json) + "”");
    } else if (!e.event_id && e.what != action::kDeleteCheckpoint) {
      add(e.time_us, ActionText(e) + ".");
    }
  }
  // Checkpoints: one line per day (how many, which steps), and every one found corrupt.
  std::map<std::string, std::vector<const CheckpointRow*>> saved;
  for (const auto& c : ckpts.value()) saved[Day(c.committed_at_us)].push_back(&c);
  std::string out = "# " + run->name + ", run " + std::to_string(run_id) + "\n\n";
  const RunStats& s = stats.value();
  char head[512];
  std::snprintf(head, sizeof(head),
                "Started %s, %s%s. %d generations, %d restarts, goodput %.1f%% (%.0f s of %.0f s "
                "productive).",
                FormatTimeMicros(run->started_at_us).c_str(), run->status.c_str(),
                run->ended_at_us ? (" at " + FormatTimeMicros(*run->ended_at_us)).c_str() : "",
                s.generations, s.restarts, 100.0 * s.goodput, s.productive_seconds, s.wall_seconds);
  out += head;
  if (run->final_step) {
    char tail[160];
    std::snprintf(tail, sizeof(tail), " Ended at step %lld, loss %.4f.",
                  static_cast<long long>(*run->final_step), run->final_loss.value_or(0));
    out += tail;
  }
  out += "\n";
  std::map<std::string, bool> all_days;
  for (const auto& [d, unused] : days) all_days[d] = true;
  for (const auto& [d, unused] : saved) all_days[d] = true;
  for (const auto& [day, unused] : all_days) {
    out += "\n## " + day + "\n\n";
    for (const auto& [t, text] : days[day]) out += "- " + Clock(t) + " " + text + "\n";
    const auto& list = saved[day];
    if (!list.empty()) {
      int64_t lo = list.front()->step, hi = lo;
      std::string bad;
      for (const auto* c : list) {
        lo = std::min(lo, c->step);
        hi = std::max(hi, c->step);
        if (c->state == checkpoint_state::kCorrupt || c->state == checkpoint_state::kRolledBack)
          bad += (bad.empty() ? "" : ", ") + std::to_string(c->step) + " (" + c->state + ")";
      }
      out += "- Checkpoints: " + std::to_string(list.size()) + " committed, steps " +
             std::to_string(lo) + "–" + std::to_string(hi) + (bad.empty() ? "" : "; " + bad) +
             ".\n";
    }
  }
  return out;
}

int LogbookExport(const LogbookArgs& args) {
  if (args.format != "markdown") {
    std::fprintf(stderr, "vigil logbook export: unknown format '%s' (markdown)\n",
                 args.format.c_str());
    return 2;
  }
  auto lb = OpenLogbookOrSay(args.workdir);
  if (!lb) return 2;
  const int64_t run = NewestRunOrSay(*lb, args.run);
  if (!run) return 2;
  auto md = ChronicleMarkdown(*lb, run);
  if (!md.ok()) {
    std::fprintf(stderr, "vigil logbook: %s\n", md.status().ToString().c_str());
    return 1;
  }
  return WriteOutputOrSay(args.out_file, md.value(), "vigil logbook");
}

int WriteOutputOrSay(const std::string& out_file, const std::string& text, const char* command) {
  if (out_file.empty() || out_file == "-") {
    std::fputs(text.c_str(), stdout);
    return 0;
  }
  std::ofstream out(out_file, std::ios::trunc);
  out << text;
  if (!out) {
    std::fprintf(stderr, "%s: cannot write %s\n", command, out_file.c_str());
    return 1;
  }
  std::printf("wrote %s\n", out_file.c_str());
  return 0;
}

}  // namespace vigil::cli
