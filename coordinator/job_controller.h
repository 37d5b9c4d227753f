// The job's state machine. Every transition goes through Transition(), which
// logs it and updates the state metric:
//
//   PENDING --all agents registered--> RENDEZVOUS --first step--> RUNNING
//   RENDEZVOUS|RUNNING --a rank fails--> RECOVERING --generation torn down--> RENDEZVOUS
//   RUNNING --all ranks exit 0--> SUCCEEDED
//   any --restart limit reached, host lost, stopped--> FAILED
//   RECOVERING --no checkpoint verifies within checkpoint.max_fallbacks--> PAUSED
//
// Checkpoints: one is considered for resume only once committed and
// recorded. Before a launch the newest is checked (manifest, shard sizes);
// one that fails, or that a rank finds corrupt while loading it (exit 4), is
// marked corrupt in the logbook with an event and never chosen again, and
// the next older one is tried: a fallback, not a restart. Past
// checkpoint.max_fallbacks in one recovery, or with none left, the job
// pauses for a person instead of starting over or looping. After each
// commit, retention (checkpoint/retention.h) deletes what keep_last and
// keep_every do not keep, never the checkpoint being restored, and records
// each deletion as an intervention.
//
// A failure is detected from a rank's exit (reported by its agent the moment
// waitpid returns) or a lost agent. Each detection is one `events` row; each
// decision one `interventions` row linked to it, committed before it is
// carried out. A restart tears the whole generation down (TERM, grace,
// KILL on every agent), waits for every agent to confirm, and launches the
// next generation from the newest committed checkpoint.
//
// Single-threaded: runs on vigild's io_context.
#pragma once

#include <utility>

#include <boost/asio.hpp>
#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "common/job_spec.h"
#include "common/util.h"
#include "common/vigil.pb.h"
#include "coordinator/chaos.h"
#include "coordinator/metrics.h"
#include "coordinator/rendezvous_store.h"
#include "logbook/logbook.h"

namespace vigil::coordinator {

enum class JobState { kPending, kRendezvous, kRunning, kRecovering, kSucceeded, kFailed, kPaused };
const char* JobStateName(JobState s);

// How the controller reaches agents (implemented by the coordinator's
// registry; a test double records the orders).
class AgentLink {
 public:
  virtual ~AgentLink() = default;
  virtual int agent_count() const = 0;
  virtual std::string agent_host(int agent) const = 0;
  virtual void SendToAgent(int agent, const wire::Envelope& env) = 0;
};

struct JobPaths {
  std::string workdir, job_file, checkpoint_dir, log_dir, store_address;
};

struct JobProgress {
  JobState state = JobState::kPending;
  int64_t generation = -1;
  int64_t step = 0;
  int64_t total_steps = 0;
  double loss = 0.0;
  double tokens_per_second = 0.0;
  int restarts = 0;
  int live_ranks = 0;
  int64_t run_id = 0;
  int64_t started_at_us = 0;
  std::string params_digest;
  std::string message;
};

class JobController {
 public:
  JobController(boost::asio::io_context& io, const JobSpec& spec, JobPaths paths, Logbook* logbook,
                int64_t run_id, AgentLink* agents, RendezvousStore* store,
                CoordinatorMetrics* metrics, std::vector<ChaosFault> chaos);

  void OnAllAgentsRegistered();
  void OnAgentLost(int agent, const std::string& why);
  void OnRankReport(int agent, const wire::RankReport& report);
  void OnRankExited(int agent, const wire::RankExited& exited);
  void OnGenerationStopped(int agent, uint64_t generation);
  // vigild is stopping (signal): tear down and record the run as failed.
  void Stop(const std::string& why);

  JobState state() const { return state_; }
  const JobProgress& progress() const { return progress_; }
  bool terminal() const {
    return state_ == JobState::kSucceeded || state_ == JobState::kFailed ||
           state_ == JobState::kPaused;
  }
  // Called once when the job reaches a terminal state and agents were told to shut down.
  std::function<void()> on_terminal;

 private:
  void Transition(JobState to, const std::string& why);
  void Launch(std::optional<int64_t> cause_intervention);
  // The checkpoint the next generation resumes from: none for a fresh
  // start, or `pause` with the reason when no usable one is left.
  struct Choice {
    std::optional<CheckpointRow> checkpoint;
    bool pause = false;
    std::string why;
  };
  Choice ChooseCheckpoint();
  // Marks a checkpoint corrupt in the logbook, never to be chosen again: one
  // more fallback. RecordCorrupt also records the event (vigild found it).
  void MarkCorrupt(const std::string& path);
  void RecordCorrupt(const std::string& path, const std::string& reason);
  nlohmann::json CorruptDetail(const std::string& path, const std::string& reason,
                               const std::string& found_by) const;
  void Pause(std::optional<int64_t> cause, const std::string& why);
  void ApplyRetention();
  void OnCheckpointFailed(const wire::RankReport& r);
  // A failure held back for limits.failure_settle_ms because it may be the
  // symptom of another (see OnRankExited).
  struct HeldFailure {
    std::string kind;
    int agent = -1;
    std::optional<int> rank;
    std::string detail_json, summary;
  };
  void HandleFailure(const std::string& kind, int agent, std::optional<int> rank,
                     const std::string& detail_json, const std::string& summary);
  void TearDownGeneration(const std::string& reason);
  void FinishGeneration(const std::string& reason);
  enum class Outcome { kSucceeded, kFailed, kPaused };
  void Finish(Outcome outcome, const std::string& why);
  void MaybeInjectChaos(int agent, const wire::RankReport& report);
  void DamageNewestCheckpoint(ChaosFault& f);
  int AgentOfRank(int rank) const { return rank / spec_.world.ranks_per_host; }
  void Check(const Status& st, const char* what);

  const JobSpec& spec_;
  JobPaths paths_;
  Logbook* logbook_;
  int64_t run_id_;
  AgentLink* agents_;
  RendezvousStore* store_;
  CoordinatorMetrics* metrics_;
  std::vector<ChaosFault> chaos_;
  std::shared_ptr<spdlog::logger> log_;

  JobState state_ = JobState::kPending;
  JobProgress progress_;
  // The current generation.
  int64_t generation_ = -1;
  int64_t generation_row_ = 0;
  bool first_step_seen_ = false;
  std::set<int> ranks_alive_, ranks_succeeded_;
  std::set<int> agents_stopped_;
  std::string resumed_from_;
  std::set<std::string> bad_checkpoints_;
  int fallbacks_ = 0;  // corrupt checkpoints skipped since the last healthy start
  std::set<std::pair<int64_t, int64_t>> failed_saves_;  // (generation, step) already recorded
  // Failure being recovered from (for recovery time), and chaos kill times by rank.
  std::optional<int64_t> failure_at_us_;
  std::map<int, int64_t> chaos_sent_at_us_;
  std::optional<int64_t> pending_intervention_;
  boost::asio::steady_timer teardown_timer_;
  boost::asio::steady_timer settle_timer_;
  boost::asio::steady_timer start_timer_;
  std::optional<HeldFailure> held_;
  std::map<int, std::string> rank_errors_;
  int64_t final_tokens_ = 0;
  double final_loss_ = 0.0;
};

}  // namespace vigil::coordinator
