// `vigil report`: one self-contained HTML page about a run, for people who
// would rather look than read: the loss curve with every intervention and
// detection marked on it, the generations on a timeline, failures by class
// and by host, and the interventions in a table. Inline SVG and CSS, no
// script and nothing fetched: it opens from a mail attachment.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "common/util.h"
#include "common/vocabulary.h"
#include "logbook/logbook.h"

namespace vigil::cli {
namespace {

std::string Escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

std::string Num(double v, const char* fmt = "%.1f") {
  char buf[64];
  std::snprintf(buf, sizeof(buf), fmt, v);
  return buf;
}

std::string Duration(double seconds) {
  if (seconds < 120) return Num(seconds, "%.1f s");
  if (seconds < 7200) return Num(seconds / 60, "%.1f min");
  if (seconds < 172800) return Num(seconds / 3600, "%.1f h");
  return Num(seconds / 86400, "%.1f days");
}

// Colour of an intervention by what it does.
const char* ActionColor(const std::string& what) {
  if (what == action::kRestartFromLatest || what == action::kRollback ||
      what == action::kFallbackToOlderCheckpoint || what == action::kResume)
    return "#e8890c";
  if (what == action::kCordonHost || what == action::kUseSpare || what == action::kShrinkWorld ||
      what == action::kGrowWorld)
    return "#8e44ad";
  if (what == action::kSkipBatches || what == action::kScaleLr || what == action::kSwitchOptimizer)
    return "#1f77b4";
  if (what == action::kPage || what == action::kPauseAndPage || what == action::kFailJob)
    return "#d62728";
  return "#7f7f7f";
}

constexpr const char* kGenerationColors[] = {"#2c7fb8", "#41ab5d", "#6a51a3",
                                             "#d95f0e", "#1c9099", "#c51b8a"};

// A plot area: times [t0, t1] across, values [lo, hi] up.
struct Frame {
  double x0, y0, w, h;  // pixels
  int64_t t0, t1;
  double lo, hi;
  double X(int64_t t) const {
    return x0 +
           w * static_cast<double>(t - t0) / static_cast<double>(std::max<int64_t>(1, t1 - t0));
  }
  double Y(double v) const { return y0 + h - h * (v - lo) / std::max(1e-12, hi - lo); }
};

// Time labels under a frame: minutes or hours since the start.
std::string TimeAxis(const Frame& f, double y) {
  std::ostringstream svg;
  const double span = static_cast<double>(f.t1 - f.t0) / 1e6;
  for (int i = 0; i <= 5; ++i) {
    const int64_t t = f.t0 + (f.t1 - f.t0) * i / 5;
    const double s = span * i / 5;
    svg << "<text x='" << Num(f.X(t)) << "' y='" << Num(y) << "' class='tick' text-anchor='middle'>"
        << (span < 600     ? Num(s, "+%.0f s")
            : span < 36000 ? Num(s / 60, "+%.0f min")
                           : Num(s / 3600, "+%.1f h"))
        << "</text>";
  }
  return svg.str();
}

std::string LossChart(const std::vector<StepRow>& steps, const std::vector<LogbookEntry>& entries,
                      const std::map<int64_t, int64_t>& generation_number, int64_t t0, int64_t t1) {
  double lo = INFINITY, hi = -INFINITY;
  for (const auto& s : steps) {
    if (s.loss && std::isfinite(*s.loss)) {
      lo = std::min(lo, *s.loss);
      hi = std::max(hi, *s.loss);
    }
  }
  if (!std::isfinite(lo)) return "<p>No steps were recorded for this run.</p>";
  const double pad = std::max(1e-6, (hi - lo) * 0.05);
  const Frame f{60, 20, 900, 300, t0, t1, lo - pad, hi + pad};
  std::ostringstream svg;
  svg << "<svg viewBox='0 0 1000 370' class='chart' role='img' aria-label='loss curve'>";
  svg << "<rect x='60' y='20' width='900' height='300' class='frame'/>";
  for (int i = 0; i <= 4; ++i) {
    const double v = f.lo + (f.hi - f.lo) * i / 4;
    svg << "<line x1='60' x2='960' y1='" << Num(f.Y(v)) << "' y2='" << Num(f.Y(v))
        << "' class='grid'/><text x='54' y='" << Num(f.Y(v) + 4)
        << "' class='tick' text-anchor='end'>" << Num(v, "%.3g") << "</text>";
  }
  svg << TimeAxis(f, 340);
  // One line per generation (a restart jumps back in steps, not in time).
  std::map<int64_t, std::string> lines;
  for (const auto& s : steps) {
    if (!s.loss || !std::isfinite(*s.loss)) continue;
    lines[s.generation_id] += Num(f.X(s.time_us)) + "," + Num(f.Y(*s.loss)) + " ";
  }
  for (const auto& [gen, points] : lines) {
    const int64_t n = generation_number.count(gen) ? generation_number.at(gen) : 0;
    svg << "<polyline fill='none' stroke-width='1.5' stroke='"
        << kGenerationColors[static_cast<size_t>(n) % std::size(kGenerationColors)] << "' points='"
        << points << "'><title>generation " << n << "</title></polyline>";
  }
  // Interventions as vertical lines, detections as marks along the top.
  for (const auto& e : entries) {
    if (e.time_us < t0 || e.time_us > t1) continue;
    const std::string x = Num(f.X(e.time_us));
    const std::string when = Escape(FormatTimeMicros(e.time_us));
    if (e.type == "intervention" && e.what != action::kDeleteCheckpoint) {
      svg << "<line x1='" << x << "' x2='" << x << "' y1='20' y2='320' stroke='"
          << ActionColor(e.what) << "' stroke-dasharray='4,3' class='intervention'><title>" << when
          << " " << Escape(e.what) << " by " << Escape(e.actor) << "</title></line>";
    } else if (e.type == "event") {
      svg << "<circle cx='" << x << "' cy='14' r='4' class='event'><title>" << when << " "
          << Escape(e.what) << (e.host.empty() ? "" : " on " + Escape(e.host))
          << (e.rank ? " rank " + std::to_string(*e.rank) : "") << "</title></circle>";
    }
  }
  svg << "<text x='20' y='170' class='axis' transform='rotate(-90 20 170)'>loss</text>";
  svg << "</svg>";
  return svg.str();
}

std::string Timeline(const std::vector<GenerationRow>& gens, int64_t t0, int64_t t1) {
  const Frame f{60, 10, 900, 30, t0, t1, 0, 1};
  std::ostringstream svg;
  svg << "<svg viewBox='0 0 1000 70' class='chart' role='img' aria-label='generations'>";
  for (const auto& g : gens) {
    const int64_t end = g.ended_at_us.value_or(t1);
    const int64_t trained = g.first_step_at_us.value_or(end);
    const std::string title =
        "generation " + std::to_string(g.number) +
        (g.resumed_from_step ? ", from step " + std::to_string(*g.resumed_from_step)
                             : ", from scratch") +
        (g.end_reason.empty() ? "" : "; ended: " + g.end_reason);
    // Starting (launch to first step) in grey, then training in its colour.
    svg << "<rect x='" << Num(f.X(g.started_at_us)) << "' y='10' height='30' width='"
        << Num(std::max(0.5, f.X(trained) - f.X(g.started_at_us))) << "' class='starting'><title>"
        << Escape(title) << ": starting</title></rect>";
    svg << "<rect x='" << Num(f.X(trained)) << "' y='10' height='30' width='"
        << Num(std::max(0.5, f.X(end) - f.X(trained))) << "' fill='"
        << kGenerationColors[static_cast<size_t>(g.number) % std::size(kGenerationColors)]
        << "'><title>" << Escape(title) << "</title></rect>";
    if (f.X(end) - f.X(g.started_at_us) > 28) {
      svg << "<text x='" << Num((f.X(g.started_at_us) + f.X(end)) / 2)
          << "' y='30' class='label' text-anchor='middle'>" << g.number << "</text>";
    }
  }
  svg << TimeAxis(f, 58) << "</svg>";
  return svg.str();
}

std::string Bars(const std::string& label,
                 const std::vector<std::pair<std::string, int64_t>>& counts) {
  if (counts.empty()) return "<p>No " + Escape(label) + ".</p>";
  int64_t most = 1;
  for (const auto& [name, n] : counts) most = std::max(most, n);
  const int height = 24 * static_cast<int>(counts.size()) + 10;
  std::ostringstream svg;
  svg << "<svg viewBox='0 0 480 " << height << "' class='bars' role='img' aria-label='"
      << Escape(label) << "'>";
  int y = 5;
  for (const auto& [name, n] : counts) {
    const double w = 260.0 * static_cast<double>(n) / static_cast<double>(most);
    svg << "<text x='170' y='" << y + 15 << "' class='tick' text-anchor='end'>" << Escape(name)
        << "</text><rect x='176' y='" << y + 3 << "' height='16' width='" << Num(std::max(1.0, w))
        << "' class='bar'/><text x='" << Num(182 + w) << "' y='" << y + 15 << "' class='tick'>" << n
        << "</text>";
    y += 24;
  }
  svg << "</svg>";
  return svg.str();
}

constexpr const char* kStyle = R"css(
body { font: 14px/1.45 system-ui, sans-serif; margin: 24px auto; max-width: 1040px; color: #222; }
h1 { font-size: 22px; margin-bottom: 4px; } h2 { font-size: 17px; margin-top: 28px; }
.facts { display: flex; flex-wrap: wrap; gap: 10px; margin: 12px 0; }
.fact { border: 1px solid #ddd; border-radius: 6px; padding: 6px 12px; }
.fact b { display: block; font-size: 18px; }
svg.chart { width: 100%; } svg.bars { width: 480px; }
.frame { fill: #fcfcfc; stroke: #bbb; } .grid { stroke: #eee; }
.tick { font-size: 11px; fill: #555; } .axis { font-size: 12px; fill: #333; }
.label { font-size: 11px; fill: #fff; } .starting { fill: #bbb; }
.event { fill: #d62728; } .bar { fill: #4c78a8; }
.columns { display: flex; flex-wrap: wrap; gap: 24px; }
.legend span { display: inline-block; margin-right: 14px; font-size: 12px; }
.legend i { display: inline-block; width: 14px; height: 3px; margin-right: 4px; vertical-align: middle; }
table { border-collapse: collapse; font-size: 12px; width: 100%; }
td, th { border-bottom: 1px solid #eee; padding: 3px 6px; text-align: left; vertical-align: top; }
td:first-child { white-space: nowrap; }
)css";

}  // namespace

Result<std::string> ReportHtml(Logbook& lb, int64_t run_id) {
  auto found = lb.Run(run_id);
  if (!found.ok()) return found.status();
  const RunRow* run = &found.value();
  const int64_t now = NowMicros();
  auto stats = lb.Stats(run_id, now);
  auto gens = lb.Generations(run_id);
  const int64_t t0 = run->started_at_us, t1 = std::max(t0 + 1, run->ended_at_us.value_or(now));
  auto steps = lb.Steps(run_id, t0, t1 + 1);
  EntryFilter filter;
  filter.run_id = run_id;
  auto entries = lb.Entries(filter);
  if (!stats.ok()) return stats.status();
  if (!gens.ok()) return gens.status();
  if (!steps.ok()) return steps.status();
  if (!entries.ok()) return entries.status();
  std::map<int64_t, int64_t> generation_number;
  for (const auto& g : gens.value()) generation_number[g.id] = g.number;

  const RunStats& st = stats.value();
  std::ostringstream html;
  html << "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>vigil run " << run_id
       << ": " << Escape(run->name) << "</title><style>" << kStyle << "</style></head><body>";
  html << "<h1>Run " << run_id << ": " << Escape(run->name) << "</h1><div>"
       << Escape(FormatTimeMicros(t0)) << " to "
       << (run->ended_at_us ? Escape(FormatTimeMicros(*run->ended_at_us)) : "now (running)") << ", "
       << Escape(run->status) << "</div>";
  auto fact = [&](const std::string& name, const std::string& value) {
    html << "<div class='fact'>" << Escape(name) << "<b>" << Escape(value) << "</b></div>";
  };
  html << "<div class='facts'>";
  fact("wall time", Duration(st.wall_seconds));
  fact("goodput", Num(100 * st.goodput, "%.1f%%"));
  fact("time lost", Duration(st.lost_seconds));
  fact("generations", std::to_string(st.generations));
  fact("restarts", std::to_string(st.restarts));
  fact("MTBF", st.mtbf_seconds ? Duration(*st.mtbf_seconds) : "no failure");
  if (run->final_step) fact("final step", std::to_string(*run->final_step));
  if (run->final_loss) fact("final loss", Num(*run->final_loss, "%.4f"));
  html << "</div>";

  html << "<h2>Loss, with every detection (red dots) and intervention (dashed lines)</h2>";
  html << "<div class='legend'>";
  for (const auto& [name, color] : std::vector<std::pair<const char*, const char*>>{
           {"restart, rollback, fallback, resume", "#e8890c"},
           {"cordon, spare, shrink, grow", "#8e44ad"},
           {"skip data, scale LR, switch optimizer", "#1f77b4"},
           {"page, pause, fail", "#d62728"},
           {"other", "#7f7f7f"}}) {
    html << "<span><i style='background:" << color << "'></i>" << name << "</span>";
  }
  html << "</div>" << LossChart(steps.value(), entries.value(), generation_number, t0, t1);
  html << "<h2>Generations (grey: starting, colour: training)</h2>"
       << Timeline(gens.value(), t0, t1);
  html << "<div class='columns'><div><h2>Failures by class</h2>"
       << Bars("failures", st.failures_by_kind) << "</div><div><h2>Failures by host</h2>"
       << Bars("failures on a host", st.failures_by_host) << "</div></div>";
  html << "<h2>Interventions</h2><table><tr><th>time</th><th>action</th><th>by</th>"
          "<th>answering</th><th>outcome</th></tr>";
  std::map<int64_t, std::string> event_kind;
  for (const auto& e : entries.value()) {
    if (e.type == "event") event_kind[e.id] = e.what;
  }
  for (const auto& e : entries.value()) {
    if (e.type != "intervention" || e.what == action::kDeleteCheckpoint) continue;
    const std::string answering =
        e.event_id ? "event#" + std::to_string(*e.event_id) + " " + event_kind[*e.event_id] : "";
    std::string outcome;
    const auto detail = nlohmann::json::parse(e.detail_json, nullptr, false);
    if (detail.is_object()) outcome = detail.value("outcome", "");
    html << "<tr><td>" << Escape(FormatTimeMicros(e.time_us)) << "</td><td>" << Escape(e.what)
         << "</td><td>" << Escape(e.actor) << "</td><td>" << Escape(answering) << "</td><td>"
         << Escape(outcome) << "</td></tr>";
  }
  html << "</table><p style='color:#777'>Made by <code>vigil report</code> from the logbook at "
       << Escape(lb.path()) << ", " << Escape(FormatTimeMicros(now)) << ".</p></body></html>\n";
  return html.str();
}

int Report(const LogbookArgs& args) {
  auto lb = OpenLogbookOrSay(args.workdir);
  if (!lb) return 2;
  const int64_t run = NewestRunOrSay(*lb, args.run);
  if (!run) return 2;
  auto html = ReportHtml(*lb, run);
  if (!html.ok()) {
    std::fprintf(stderr, "vigil report: %s\n", html.status().ToString().c_str());
    return 1;
  }
  return WriteOutputOrSay(args.out_file, html.value(), "vigil report");
}

}  // namespace vigil::cli
