// Playbooks: what vigild does about each detection, written down in YAML a
// person can read, review and change (playbooks/default.yaml is the one it
// follows unless the job names another).
//
//   version: 1
//   rules:                      # first match wins
//     - name: numerics
//       when: {kind: [nonfinite, loss_spike]}   # kinds, optional codes
//       do: [restart_from_latest, {skip_batches: 2}]
//       limit: {max: 2, within: 6h, then: [{rollback: 1}, {scale_lr: 0.5}, {skip_batches: 4}]}
//     - name: flaky-host
//       when: {kind: process_exit, per: host, count: 3, within: 1h}
//       do: [pause_and_page]
//     - name: default
//       when: {kind: any}
//       do: [restart_from_latest]
//   restart_loop: {max: 5, within: 30m, then: [pause_and_page]}
//
// A rule matches a detection by kind (or `any`) and, optionally, codes (an
// exit code, a signal as 128+N, a GPU Xid). With `count`, it matches only
// when this is at least the count-th matching detection within `within`,
// counted over the whole job or `per` host or rank. A rule's `limit`
// escalates: once the rule has been applied `max` times within `within`,
// its `then` actions are taken instead. `restart_loop` bounds restarts of
// any cause: past `max` within `within` the job does `then` instead of
// restarting again (by default it pauses and pages rather than burn GPUs).
//
// Each rule's actions are one outcome (exactly one of restart_from_latest,
// rollback, continue, pause_and_page, fail_job) plus modifiers applied to
// the next generation (skip_batches, scale_lr, switch_optimizer; cordon_host:
// the detection's host gets no more ranks; use_spare: a spare host takes the
// place of each lost or cordoned one; shrink_world: continue without the
// hosts still missing, the global batch kept) or alongside (page).
//
// The engine is pure: it keeps the history of detections and decisions it
// has seen and of what was done, and decides; the JobController carries
// decisions out and tells it which it did.
#pragma once

#include <cstdint>
#include <deque>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/status.h"
#include "coordinator/detection.h"

namespace vigil::coordinator {

// Detection kinds a playbook may name (`any` matches every one).
const std::vector<std::string>& DetectionKinds();

struct PlaybookAction {
  static PlaybookAction Named(std::string name) {
    PlaybookAction a;
    a.name = std::move(name);
    return a;
  }
  // restart_from_latest | rollback | continue | pause_and_page | fail_job
  // | skip_batches | scale_lr | switch_optimizer | cordon_host | use_spare
  // | shrink_world | page
  std::string name;
  int64_t count = 0;      // rollback: checkpoints back; skip_batches: batches
  double factor = 0.0;    // scale_lr
  std::string optimizer;  // switch_optimizer
  bool is_outcome() const;
  nlohmann::json Params() const;
  std::string ToString() const;
};

struct PlaybookRule {
  std::string name;
  int line = 0;                    // where it is written, for messages
  std::vector<std::string> kinds;  // empty: any
  std::vector<int64_t> codes;      // empty: any
  std::string per = "job";         // job | host | rank
  int count = 1;
  int64_t within_us = 0;  // 0: the whole run
  std::vector<PlaybookAction> actions;
  // Escalation: after `limit_max` applications within `limit_within_us`.
  int limit_max = 0;  // 0: none
  int64_t limit_within_us = 0;
  std::vector<PlaybookAction> limit_then;
};

struct Playbook {
  std::string source;
  std::vector<PlaybookRule> rules;
  int restart_loop_max = 0;  // 0: unbounded (limits.max_restarts still applies)
  int64_t restart_loop_within_us = 0;
  std::vector<PlaybookAction> restart_loop_then;
};

// Parses and validates; errors name the file, line and field.
Result<Playbook> ParsePlaybook(const std::string& yaml_text, const std::string& source_name);
// Reads `path`, or the built-in default when `path` is empty.
Result<Playbook> LoadPlaybook(const std::string& path);
// playbooks/default.yaml as built into this binary.
const std::string& DefaultPlaybookYaml();

struct Decision {
  std::string rule;     // "" when no rule matched (then: restart_from_latest)
  int rule_index = -1;  // its index in Playbook::rules
  std::vector<PlaybookAction> actions;
  // Why these actions: "rule numerics (2nd within 6h: escalated by its limit)".
  std::string why;
  const PlaybookAction* Find(const std::string& name) const;
  const PlaybookAction& outcome() const;  // the one outcome action
  bool restarts() const;                  // restart_from_latest or rollback
};

class PlaybookEngine {
 public:
  explicit PlaybookEngine(Playbook playbook) : playbook_(std::move(playbook)) {}
  // Remembers `d` (a rule's `count` counts detections) and decides what to
  // do about it. Deciding is not doing: what was done is recorded with
  // Carried, and only that counts toward a rule's `limit` and the
  // `restart_loop`.
  Decision Decide(const Detection& d);
  // `decision` (made for the detection of `time_us`) was carried out: its
  // rule was applied.
  void Carried(const Decision& decision, int64_t time_us);
  // The job restarted for the detection of `time_us`: the next generation
  // launched.
  void Restarted(int64_t time_us) { restarts_.push_back(time_us); }
  // A vigild that took the run over replays what the one before it saw and
  // did (takeover.h): every detection, oldest first; each application of a
  // rule, by name, at its detection's time; each counted restart's
  // detection time. Rules the playbook no longer has are skipped.
  void Replay(const std::vector<Detection>& seen,
              const std::vector<std::pair<std::string, int64_t>>& applied,
              const std::vector<int64_t>& restarts);
  const Playbook& playbook() const { return playbook_; }

 private:
  bool Matches(const PlaybookRule& rule, const Detection& d) const;
  Playbook playbook_;
  std::deque<Detection> seen_;                // every detection so far (bounded)
  std::vector<std::deque<int64_t>> applied_;  // per rule: when it was carried out
  std::deque<int64_t> restarts_;              // when a restart was carried out
};

}  // namespace vigil::coordinator
