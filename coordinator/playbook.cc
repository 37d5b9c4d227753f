#include "coordinator/playbook.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <map>
#include <set>

#include "common/fs.h"
#include "common/util.h"
#include "common/vocabulary.h"
#include "common/yaml_reader.h"

namespace vigil::coordinator {

namespace {

const std::set<std::string> kOutcomes = {action::kRestartFromLatest, action::kRollback,
                                         action::kContinue, action::kPauseAndPage,
                                         action::kFailJob};
const std::set<std::string> kModifiers = {
    action::kSkipBatches, action::kScaleLr,  action::kSwitchOptimizer,
    action::kCordonHost,  action::kUseSpare, action::kShrinkWorld,
    action::kPage};
// Modifiers that change the next generation need one.
const std::set<std::string> kRestartModifiers = {action::kSkipBatches,     action::kScaleLr,
                                                 action::kSwitchOptimizer, action::kCordonHost,
                                                 action::kUseSpare,        action::kShrinkWorld};

std::string Join(const std::set<std::string>& names) {
  std::string out;
  for (const auto& n : names) out += (out.empty() ? "" : ", ") + n;
  return out;
}

std::string Ordinal(size_t n) {
  const char* suffix = (n % 100 >= 11 && n % 100 <= 13) ? "th"
                       : n % 10 == 1                    ? "st"
                       : n % 10 == 2                    ? "nd"
                       : n % 10 == 3                    ? "rd"
                                                        : "th";
  return std::to_string(n) + suffix;
}

class PlaybookReader {
 public:
  explicit PlaybookReader(const std::string& source) : r_(source) {}
  YamlReader& r() { return r_; }

  // `do:` or `then:` — a list of actions, each a name or {name: argument}.
  std::vector<PlaybookAction> Actions(const YAML::Node& node, const std::string& path) {
    std::vector<PlaybookAction> out;
    if (!node.IsSequence() || node.size() == 0) {
      r_.Fail(node, path, "expected a non-empty list of actions");
      return out;
    }
    for (size_t i = 0; i < node.size() && r_.error().ok(); ++i) {
      const YAML::Node item = node[i];
      const std::string here = path + "[" + std::to_string(i) + "]";
      PlaybookAction a;
      YAML::Node arg;
      bool has_arg = false;
      if (item.IsScalar()) {
        a.name = item.Scalar();
      } else if (item.IsMap() && item.size() == 1) {
        a.name = item.begin()->first.Scalar();
        arg = item.begin()->second;
        has_arg = true;
      } else {
        r_.Fail(item, here, "expected an action name or {action: argument}");
        break;
      }
      if (!kOutcomes.count(a.name) && !kModifiers.count(a.name)) {
        r_.Fail(item, here,
                "unknown action '" + a.name + "' (known: " + Join(kOutcomes) + ", " +
                    Join(kModifiers) + ")");
        break;
      }
      const bool takes_count = a.name == action::kRollback || a.name == action::kSkipBatches;
      const bool takes_arg =
          takes_count || a.name == action::kScaleLr || a.name == action::kSwitchOptimizer;
      if (takes_arg && !has_arg) {
        r_.Fail(item, here + "." + a.name,
                "needs an argument, e.g. {" + a.name + ": " +
                    (a.name == action::kScaleLr           ? "0.5"
                     : a.name == action::kSwitchOptimizer ? "sgd"
                                                          : "1") +
                    "}");
        break;
      }
      if (!takes_arg && has_arg) {
        r_.Fail(arg, here + "." + a.name, "takes no argument");
        break;
      }
      try {
        if (takes_count) {
          a.count = arg.as<int64_t>();
          if (a.count < 1 || a.count > 1000000) throw YAML::Exception(arg.Mark(), "range");
        } else if (a.name == action::kScaleLr) {
          a.factor = arg.as<double>();
          if (!(a.factor > 0) || !std::isfinite(a.factor) || a.factor > 100)
            throw YAML::Exception(arg.Mark(), "range");
        } else if (a.name == action::kSwitchOptimizer) {
          a.optimizer = arg.as<std::string>();
          if (a.optimizer != "adamw" && a.optimizer != "sgd")
            throw YAML::Exception(arg.Mark(), "range");
        }
      } catch (const YAML::Exception&) {
        r_.Fail(arg, here + "." + a.name,
                std::string("expected ") +
                    (takes_count                  ? "an integer in [1, 1000000]"
                     : a.name == action::kScaleLr ? "a number in (0, 100]"
                                                  : "'adamw' or 'sgd'") +
                    ", got '" + (arg.IsScalar() ? arg.Scalar() : std::string("a collection")) +
                    "'");
        break;
      }
      out.push_back(a);
    }
    if (!r_.error().ok()) return out;
    // One outcome; modifiers only where they have a generation to change.
    std::set<std::string> names;
    std::string outcome;
    for (const auto& a : out) {
      if (!names.insert(a.name).second) {
        r_.Fail(node, path, "'" + a.name + "' appears twice");
        return out;
      }
      if (a.is_outcome()) {
        if (!outcome.empty()) {
          r_.Fail(node, path,
                  "has two outcomes, '" + outcome + "' and '" + a.name + "' (exactly one of " +
                      Join(kOutcomes) + ")");
          return out;
        }
        outcome = a.name;
      }
    }
    if (outcome.empty()) {
      r_.Fail(node, path, "needs exactly one of " + Join(kOutcomes));
      return out;
    }
    if (outcome != action::kRestartFromLatest && outcome != action::kRollback) {
      for (const auto& a : out) {
        if (kRestartModifiers.count(a.name)) {
          r_.Fail(node, path,
                  "'" + a.name + "' changes the next generation, which '" + outcome +
                      "' does not start (use restart_from_latest or rollback)");
          return out;
        }
      }
    }
    return out;
  }

  int64_t Duration(const YAML::Node& map, const std::string& path, const std::string& key) {
    const YAML::Node node = map[key];
    if (!node.IsDefined() || node.IsNull()) return 0;
    auto d = node.IsScalar() ? ParseDuration(node.Scalar()) : Status::InvalidArgument("");
    if (!d.ok() || d.value() <= 0) {
      r_.Fail(node, path + "." + key,
              "expected a duration such as 90s, 30m, 6h or 2d, got '" +
                  (node.IsScalar() ? node.Scalar() : std::string("a collection")) + "'");
      return 0;
    }
    return d.value();
  }

 private:
  YamlReader r_;
};

}  // namespace

const std::vector<std::string>& DetectionKinds() {
  static const std::vector<std::string> kinds = [] {
    std::vector<std::string> out;
    for (const char* k : kFailureKinds) {
      if (std::string(k) != kind::kCheckpointCorrupt) out.push_back(k);
    }
    return out;
  }();
  return kinds;
}

bool PlaybookAction::is_outcome() const { return kOutcomes.count(name) > 0; }

nlohmann::json PlaybookAction::Params() const {
  if (name == action::kRollback || name == action::kSkipBatches) return {{name, count}};
  if (name == action::kScaleLr) return {{name, factor}};
  if (name == action::kSwitchOptimizer) return {{name, optimizer}};
  return name;
}

std::string PlaybookAction::ToString() const {
  const auto p = Params();
  return p.is_string() ? name : p.dump();
}

Result<Playbook> ParsePlaybook(const std::string& yaml_text, const std::string& source_name) {
  auto loaded = LoadYaml(yaml_text, source_name);
  if (!loaded.ok()) return loaded.status();
  const YAML::Node root = loaded.value();
  if (!root.IsDefined() || root.IsNull())
    return Status::InvalidArgument(source_name + ": empty playbook");
  Playbook pb;
  pb.source = source_name;
  PlaybookReader reader(source_name);
  YamlReader& r = reader.r();
  const std::set<std::string> kinds(DetectionKinds().begin(), DetectionKinds().end());
  r.Section(root, "", "", {"version", "rules", "restart_loop"}, true,
            [&](const YAML::Node& top, const std::string&) {
              int version = 0;
              r.Required(top, "", "version");
              r.Field<int>(
                  top, "", "version", &version, [](const int& v) { return v == 1; }, "1");
              r.Required(top, "", "rules");
            });
  if (!r.error().ok()) return r.error();
  const YAML::Node rules = root["rules"];
  if (!rules.IsSequence() || rules.size() == 0) {
    r.Fail(rules, "rules", "expected a non-empty list of rules");
    return r.error();
  }
  std::set<std::string> names;
  for (size_t i = 0; i < rules.size() && r.error().ok(); ++i) {
    PlaybookRule rule;
    rule.line = rules[i].Mark().line + 1;
    const std::string path = "rules[" + std::to_string(i) + "]";
    r.Section(rules[i], "", path, {"name", "when", "do", "limit"}, true,
              [&](const YAML::Node& m, const std::string& p) {
                r.Required(m, p, "name");
                r.Required(m, p, "when");
                r.Required(m, p, "do");
                r.Field<std::string>(m, p, "name", &rule.name);
                if (r.error().ok() && !names.insert(rule.name).second)
                  r.Fail(m["name"], p + ".name", "another rule is named '" + rule.name + "'");
              });
    const std::string here = rule.name.empty() ? path : path + " (" + rule.name + ")";
    r.Section(rules[i], "when", here, {"kind", "codes", "per", "count", "within"}, true,
              [&](const YAML::Node& m, const std::string& p) {
                r.Required(m, p, "kind");
                const YAML::Node k = m["kind"];
                std::vector<YAML::Node> items;
                if (k.IsSequence()) {
                  for (const auto& n : k) items.push_back(n);
                } else {
                  items.push_back(k);
                }
                for (const auto& n : items) {
                  if (!r.error().ok()) break;
                  if (!n.IsScalar() || (n.Scalar() != "any" && !kinds.count(n.Scalar()))) {
                    std::string known;
                    for (const auto& name : DetectionKinds()) known += name + ", ";
                    r.Fail(n, p + ".kind",
                           "unknown detection kind '" + (n.IsScalar() ? n.Scalar() : "") +
                               "' (known: " + known + "any)");
                  } else if (n.Scalar() != "any") {
                    rule.kinds.push_back(n.Scalar());
                  }
                }
                if (const YAML::Node c = m["codes"]; c.IsDefined() && r.error().ok()) {
                  if (!c.IsSequence() || c.size() == 0) {
                    r.Fail(c, p + ".codes", "expected a non-empty list of integers");
                  } else {
                    for (const auto& n : c) {
                      try {
                        rule.codes.push_back(n.as<int64_t>());
                      } catch (const YAML::Exception&) {
                        r.Fail(n, p + ".codes", "expected an integer, got '" + n.Scalar() + "'");
                        break;
                      }
                    }
                  }
                }
                r.Field<std::string>(m, p, "per", &rule.per, OneOf({"job", "host", "rank"}),
                                     "job, host or rank");
                r.Field<int>(m, p, "count", &rule.count, Positive(), "a positive integer");
                rule.within_us = reader.Duration(m, p, "within");
              });
    if (!r.error().ok()) break;
    rule.actions = reader.Actions(rules[i]["do"], here + ".do");
    r.Section(rules[i], "limit", here, {"max", "within", "then"}, false,
              [&](const YAML::Node& m, const std::string& p) {
                r.Required(m, p, "max");
                r.Required(m, p, "then");
                r.Field<int>(m, p, "max", &rule.limit_max, Positive(), "a positive integer");
                rule.limit_within_us = reader.Duration(m, p, "within");
                if (r.error().ok()) rule.limit_then = reader.Actions(m["then"], p + ".then");
              });
    pb.rules.push_back(std::move(rule));
  }
  r.Section(root, "restart_loop", "", {"max", "within", "then"}, false,
            [&](const YAML::Node& m, const std::string& p) {
              r.Required(m, p, "max");
              r.Required(m, p, "within");
              r.Field<int>(m, p, "max", &pb.restart_loop_max, Positive(), "a positive integer");
              pb.restart_loop_within_us = reader.Duration(m, p, "within");
              pb.restart_loop_then = {PlaybookAction::Named(action::kPauseAndPage)};
              if (r.error().ok() && m["then"].IsDefined())
                pb.restart_loop_then = reader.Actions(m["then"], p + ".then");
              if (!r.error().ok()) return;
              for (const auto& a : pb.restart_loop_then) {
                if (a.name == action::kRestartFromLatest || a.name == action::kRollback)
                  r.Fail(m["then"], p + ".then", "must not restart (it is what a loop does)");
              }
            });
  if (!r.error().ok()) return r.error();
  return pb;
}

const std::string& DefaultPlaybookYaml() {
  static const std::string text =
#include "coordinator/default_playbook.inc"
      ;
  return text;
}

Result<Playbook> LoadPlaybook(const std::string& path) {
  if (path.empty()) return ParsePlaybook(DefaultPlaybookYaml(), "playbooks/default.yaml");
  auto text = ReadFile(path);
  if (!text.ok()) return Status::NotFound(path + ": cannot read playbook");
  return ParsePlaybook(text.value(), path);
}

const PlaybookAction* Decision::Find(const std::string& name) const {
  for (const auto& a : actions) {
    if (a.name == name) return &a;
  }
  return nullptr;
}

const PlaybookAction& Decision::outcome() const {
  for (const auto& a : actions) {
    if (a.is_outcome()) return a;
  }
  static const PlaybookAction restart = PlaybookAction::Named(action::kRestartFromLatest);
  return restart;
}

bool Decision::restarts() const {
  const auto& o = outcome().name;
  return o == action::kRestartFromLatest || o == action::kRollback;
}

bool PlaybookEngine::Matches(const PlaybookRule& rule, const Detection& d) const {
  auto kind_ok = [&](const Detection& e) {
    return rule.kinds.empty() ||
           std::find(rule.kinds.begin(), rule.kinds.end(), e.kind) != rule.kinds.end();
  };
  auto codes_ok = [&](const Detection& e) {
    if (rule.codes.empty()) return true;
    for (int64_t c : e.codes) {
      if (std::find(rule.codes.begin(), rule.codes.end(), c) != rule.codes.end()) return true;
    }
    return false;
  };
  if (!kind_ok(d) || !codes_ok(d)) return false;
  if (rule.count <= 1) return true;
  if ((rule.per == "host" && d.host.empty()) || (rule.per == "rank" && !d.rank)) return false;
  int n = 0;  // `d` itself is the newest entry of seen_
  for (const auto& e : seen_) {
    if (rule.within_us > 0 && e.time_us < d.time_us - rule.within_us) continue;
    if (!kind_ok(e) || !codes_ok(e)) continue;
    if (rule.per == "host" && e.host != d.host) continue;
    if (rule.per == "rank" && e.rank != d.rank) continue;
    ++n;
  }
  return n >= rule.count;
}

Decision PlaybookEngine::Decide(const Detection& d) {
  seen_.push_back(d);
  if (seen_.size() > 100000) seen_.pop_front();
  applied_.resize(playbook_.rules.size());
  Decision out;
  size_t i = 0;
  for (; i < playbook_.rules.size(); ++i) {
    if (Matches(playbook_.rules[i], d)) break;
  }
  if (i == playbook_.rules.size()) {
    out.actions = {PlaybookAction::Named(action::kRestartFromLatest)};
    out.why = "no rule of " + playbook_.source + " matches " + d.kind + ": restart_from_latest";
  } else {
    const PlaybookRule& rule = playbook_.rules[i];
    out.rule = rule.name;
    out.rule_index = static_cast<int>(i);
    auto& times = applied_[i];
    while (!times.empty() && rule.limit_within_us > 0 &&
           times.front() < d.time_us - rule.limit_within_us)
      times.pop_front();
    const size_t application = times.size() + 1;  // this one, if carried out
    out.actions = rule.actions;
    out.why = "rule " + rule.name + " (" + playbook_.source + ":" + std::to_string(rule.line) + ")";
    if (rule.limit_max > 0 && static_cast<int>(application) > rule.limit_max) {
      out.actions = rule.limit_then;
      out.why += ", applied for the " + Ordinal(application) + " time" +
                 (rule.limit_within_us ? " within its limit's window" : "") +
                 ": escalated past limit.max " + std::to_string(rule.limit_max);
    }
  }
  if (out.restarts() && playbook_.restart_loop_max > 0) {
    while (!restarts_.empty() && restarts_.front() < d.time_us - playbook_.restart_loop_within_us)
      restarts_.pop_front();
    if (static_cast<int>(restarts_.size()) >= playbook_.restart_loop_max) {
      out.actions = playbook_.restart_loop_then;
      out.why += "; restart loop: " + std::to_string(restarts_.size()) +
                 " restarts within restart_loop.within, so " + out.outcome().name + " instead";
    }
  }
  return out;
}

void PlaybookEngine::Carried(const Decision& decision, int64_t time_us) {
  applied_.resize(playbook_.rules.size());
  if (decision.rule_index >= 0 && decision.rule_index < static_cast<int>(applied_.size()))
    applied_[static_cast<size_t>(decision.rule_index)].push_back(time_us);
}

void PlaybookEngine::Replay(const std::vector<Detection>& seen,
                            const std::vector<std::pair<std::string, int64_t>>& applied,
                            const std::vector<int64_t>& restarts) {
  for (const auto& d : seen) {
    seen_.push_back(d);
    if (seen_.size() > 100000) seen_.pop_front();
  }
  applied_.resize(playbook_.rules.size());
  for (const auto& [rule, time_us] : applied) {
    for (size_t i = 0; i < playbook_.rules.size(); ++i) {
      if (playbook_.rules[i].name == rule) applied_[i].push_back(time_us);
    }
  }
  for (auto& times : applied_) std::sort(times.begin(), times.end());
  restarts_.insert(restarts_.end(), restarts.begin(), restarts.end());
  std::sort(restarts_.begin(), restarts_.end());
}

}  // namespace vigil::coordinator
