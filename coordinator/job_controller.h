// The job's state machine. Every transition goes through Transition(), which
// logs it and updates the state metric:
//
//   PENDING --all agents registered--> RENDEZVOUS --first step--> RUNNING
//   RENDEZVOUS|RUNNING --a failure the playbook restarts--> RECOVERING
//   RECOVERING --generation torn down--> RENDEZVOUS
//   RUNNING --all ranks exit 0--> SUCCEEDED
//   any --fail_job, restart limit reached, stopped--> FAILED
//   any --pause_and_page, no checkpoint verifies--> PAUSED --`vigil resume`--> RENDEZVOUS
//
// Detections: a rank's exit (reported by its agent the moment waitpid
// returns), a lost agent, a generation that never starts, a rank that
// stops stepping (hang: no step for max(detection.hang_factor x the median
// recent step time, hang_floor_ms); the agents then report each rank's
// process state, which names the rank that hangs, and dump their stacks
// before the teardown), a NaN/Inf gradient (the ranks refuse the update and
// exit 5), a loss or gradient-norm spike against the running median, a
// straggler (compute time against the median rank's), a failed save. Each
// is one `events` row. The playbook (playbook.h) decides what to do; each of
// its actions is one `interventions` row linked to the event, committed
// before it is carried out.
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
// A restart tears the whole generation down (TERM, grace, KILL on every
// agent), waits for every agent to confirm, and launches the next generation
// from the checkpoint the playbook chose (the newest, or `rollback` N older;
// never one taken at or after a numerical anomaly's step), with its
// modifiers (skip_batches, scale_lr, switch_optimizer; the last two stay in
// force for later generations).
//
// Single-threaded: runs on vigild's io_context.
#pragma once

#include <utility>

#include <boost/asio.hpp>
#include <deque>
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
#include "coordinator/goodput.h"
#include "coordinator/metrics.h"
#include "coordinator/playbook.h"
#include "coordinator/rendezvous_store.h"
#include "logbook/logbook.h"
#include "logbook/logbook_writer.h"

namespace vigil::coordinator {

enum class JobState { kPending, kRendezvous, kRunning, kRecovering, kSucceeded, kFailed, kPaused };
const char* JobStateName(JobState s);

// How the controller reaches agents (implemented by the coordinator's
// registry; a test double records the orders).
class AgentLink {
 public:
  virtual ~AgentLink() = default;
  virtual int agent_count() const = 0;
  virtual bool agent_connected(int agent) const = 0;
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
  int world_size = 0;
  int64_t run_id = 0;
  int64_t started_at_us = 0;
  std::string params_digest;
  std::string message;
};

class JobController {
 public:
  // Steps of a run the logbook's `steps` table holds at most (about; plus
  // each generation's first).
  static constexpr int64_t kCurvePoints = 20000;

  JobController(boost::asio::io_context& io, const JobSpec& spec, JobPaths paths,
                LogbookWriter* logbook, int64_t run_id, AgentLink* agents, RendezvousStore* store,
                CoordinatorMetrics* metrics, std::vector<ChaosFault> chaos, Playbook playbook);
  ~JobController();
  // Waits for the checkpoint deletions under way (and ordered so far); they
  // record their outcome through the logbook writer, which must outlive this.
  void FinishFileWork();
  JobController(const JobController&) = delete;
  JobController& operator=(const JobController&) = delete;

  void OnAllAgentsRegistered();
  // An agent registered after the job started: a spare, or a host back.
  void OnAgentJoined(int agent);
  void OnAgentLost(int agent, const std::string& why);
  void OnRankReport(int agent, const wire::RankReport& report);
  void OnRankExited(int agent, const wire::RankExited& exited);
  void OnGenerationStopped(int agent, uint64_t generation);
  void OnDiagnosis(int agent, const wire::Diagnosis& diagnosis);
  void OnGpuFault(int agent, const wire::GpuFault& fault);
  // Called often (every 50 ms): hang detection.
  void OnTick();
  // vigild is stopping (signal): tear down and record the run as failed.
  void Stop(const std::string& why);
  // A person continues a paused job (`vigil resume`). Error if not paused.
  Status Resume(const std::string& actor, const std::string& note);
  // A fault to inject now (`vigil chaos`), checked against the world.
  Status InjectChaos(const std::string& spec, const std::string& actor);

  JobState state() const { return state_; }
  const JobProgress& progress() const { return progress_; }
  // Every host that registered: {host, state (active|spare|cordoned|lost), slot, ranks}.
  nlohmann::json Hosts() const;
  bool terminal() const { return state_ == JobState::kSucceeded || state_ == JobState::kFailed; }
  // Called once when the job reaches a terminal state and agents were told to shut down.
  std::function<void()> on_terminal;

 private:
  // A detection, before and after the playbook sees it.
  struct Failure {
    std::string kind;
    int agent = -1;
    std::optional<int> rank;
    nlohmann::json detail = nlohmann::json::object();
    std::string summary;
    std::vector<int64_t> codes;           // exit code, 128+signal, Xid
    std::optional<int64_t> anomaly_step;  // numerics: the step whose update is suspect
  };
  // What the next generation is launched with (a playbook's modifiers).
  struct NextLaunch {
    int rollback = 0;                    // checkpoints older than the newest usable one
    std::optional<int64_t> before_step;  // only checkpoints older than this step
    int64_t skip_batches = 0;
    std::optional<int64_t> skip_end_step;  // the skipped batches end here (else: at the resume)
    double scale_lr = 0.0;                 // multiplies the checkpoint's scale
  };

  void Transition(JobState to, const std::string& why);
  // Records the detection as one `events` row; its id.
  int64_t RecordEvent(const Failure& f);
  // Asks the playbook (which remembers every detection it is asked about).
  Decision Decide(const Failure& f);
  // Placement. Host slot i runs ranks [i x ranks_per_host, (i+1) x
  // ranks_per_host) on agent slots_[i]. A slot whose agent is lost or
  // cordoned is vacant until a spare (a connected agent in no slot, not
  // cordoned) takes it; a generation launches only with no slot vacant.
  bool Usable(int agent) const;
  std::vector<int> FreeSpares() const;
  std::optional<int> VacantSlot() const;
  std::string VacancyReason(int slot) const;
  // Puts free spares into vacant slots, one `use_spare` intervention each;
  // false if a slot stays vacant.
  bool FillVacancies(std::optional<int64_t> event, const std::string& actor);
  void Cordon(std::optional<int64_t> event, const std::string& actor, const std::string& host,
              const std::string& why);
  // Drops vacant slots when the global batch divides over the ranks left
  // (and an expert-parallel MoE's experts do): one `shrink_world`
  // intervention; false (and why, recorded) when it cannot.
  bool ShrinkWorld(std::optional<int64_t> event, const std::string& actor);
  // Why `hosts` hosts cannot carry the job's global batch (and experts); "" when they can.
  std::string CannotPlaceOn(int hosts) const;
  // Runs the job on `slots` from the next generation, with the global batch kept.
  void Resize(std::vector<int> slots);
  // A shrunk world that has free spares again grows back (world.regrow), as
  // far as the global batch divides: the checkpoint of `step` was just
  // committed, so the restart onto it loses next to nothing. One
  // `grow_world` intervention; no event (nothing failed).
  void MaybeRegrow(int64_t step);
  int world_size() const { return static_cast<int>(slots_.size()) * spec_.world.ranks_per_host; }
  std::string HostState(int agent) const;  // active | spare | cordoned | lost
  void UpdateHostMetrics();
  // Ranks by state, productive time and goodput (once a second, from OnTick).
  void UpdateRankMetrics(int64_t now_us);
  // Sends to every agent that runs a rank of the current generation.
  void SendToGeneration(const wire::Envelope& env);
  void Launch(std::optional<int64_t> cause_intervention);
  // The checkpoint the next generation resumes from: none for a fresh
  // start, or `pause` with the reason when no usable one is left. Those
  // newer than it that `next_` rolls back over are listed in `rolled_back`.
  struct Choice {
    std::optional<CheckpointRow> checkpoint;
    double lr_scale = 1.0;  // the checkpoint's
    std::vector<CheckpointRow> rolled_back;
    bool pause = false;
    std::string why;
  };
  Choice ChooseCheckpoint();
  // Moves the checkpoints rolled back over aside, once the intervention that
  // decided it is committed (on the logbook writer's thread, so before the
  // next generation's launch order leaves); never resumed from again.
  void RollBack(const std::vector<CheckpointRow>& rows);
  // Marks a checkpoint corrupt in the logbook, never to be chosen again: one
  // more fallback. RecordCorrupt also records the event (vigild found it).
  void MarkCorrupt(const std::string& path);
  void RecordCorrupt(const std::string& path, const std::string& reason);
  nlohmann::json CorruptDetail(const std::string& path, const std::string& reason,
                               const std::string& found_by) const;
  // Tears the generation down (if any runs) and waits for `vigil resume`;
  // `event` is the detection it answers (the resume is linked to it).
  void Pause(std::optional<int64_t> event, const std::string& why);
  int64_t AddIntervention(std::optional<int64_t> event, const std::string& action,
                          const std::string& actor, const nlohmann::json& params,
                          const std::string& outcome);
  void Page(std::optional<int64_t> event, const std::string& actor, const std::string& why);
  // Deletes what checkpoint.keep_last/keep_every do not keep: one
  // `delete_checkpoint` intervention each, committed before the deletion,
  // which runs on files_ (a sharded checkpoint on a parallel file system can
  // take seconds to remove), its outcome coming back to the event loop.
  void ApplyRetention();
  void OnCheckpointFailed(const wire::RankReport& r);
  // Records the detection, asks the playbook, carries out its decision.
  void HandleFailure(Failure f);
  void CheckNumerics(const wire::RankReport& r);
  void CheckStragglers(const wire::RankReport& r);
  void DeclareHang(int64_t now_us, double timeout_ms);
  void FinishHang();
  // When a chaos fault was sent to `rank` (any rank if none), forgotten once taken.
  std::optional<int64_t> TakeInjectedAt(std::optional<int> rank);
  // Records detection latency (when the fault was injected) and when the
  // failure happened, for recovery time.
  void NoteDetectionLatency(const std::string& kind, nlohmann::json* detail,
                            std::optional<int64_t> injected_at, int64_t detected_at);
  void TearDownGeneration(const std::string& reason);
  void FinishGeneration(const std::string& reason);
  enum class Outcome { kSucceeded, kFailed };
  void Finish(Outcome outcome, const std::string& why);
  void MaybeInjectChaos(const wire::RankReport& report);
  void DamageNewestCheckpoint(ChaosFault& f);
  int AgentOfRank(int rank) const {
    return generation_agents_.at(rank / spec_.world.ranks_per_host);
  }
  // In the logbook and in checkpoints_; `new_path` if it moved.
  void SetCheckpointState(int64_t id, const std::string& state, const std::string& new_path = "");
  // In checkpoints_ only (what the logbook gets, or already has, from elsewhere).
  void RememberCheckpointState(int64_t id, const std::string& state,
                               const std::string& new_path = "");

  boost::asio::io_context& io_;
  const JobSpec& spec_;
  JobPaths paths_;
  LogbookWriter* logbook_;
  // This run's checkpoints, newest first (by step, then id), as the logbook has them.
  std::vector<CheckpointRow> checkpoints_;
  int64_t run_id_;
  AgentLink* agents_;
  RendezvousStore* store_;
  CoordinatorMetrics* metrics_;
  std::vector<ChaosFault> chaos_;
  PlaybookEngine playbook_;
  std::shared_ptr<spdlog::logger> log_;

  JobState state_ = JobState::kPending;
  JobProgress progress_;
  std::vector<int> slots_;              // host slot -> agent
  std::vector<int> generation_agents_;  // slots_ when the current generation launched
  std::set<std::string> cordoned_;      // hosts that get no more ranks this run
  int batch_per_rank_ = 0;              // a shrunk world's (0: the spec's)
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
  std::string recovering_from_;  // the failure kind the current restart answers
  GoodputTracker goodput_{NowMicros()};
  int64_t metrics_updated_us_ = 0;
  int64_t curve_generation_row_ = 0;  // the generation whose steps the logbook's curve has
  std::map<int, int64_t> chaos_sent_at_us_;
  std::map<int, int64_t> agent_chaos_at_us_;  // kill-agent, by agent
  std::optional<int64_t> pending_intervention_;
  boost::asio::steady_timer teardown_timer_;
  boost::asio::steady_timer settle_timer_;
  boost::asio::steady_timer start_timer_;
  std::optional<Failure> held_;  // a symptom held for limits.failure_settle_ms
  std::map<int, std::string> rank_errors_;
  std::map<int, wire::RankReport> nonfinite_;  // by rank, this generation
  NextLaunch next_;
  std::string optimizer_override_;  // a switch_optimizer stays in force
  // Progress by rank (steady microseconds of its last step or save report),
  // for hang detection; recent step times for its timeout.
  struct RankProgress {
    int64_t last_us = 0;
    int64_t step = 0;
    bool saving = false;
  };
  std::map<int, RankProgress> rank_progress_;
  std::deque<double> recent_step_seconds_;
  std::deque<double> recent_losses_, recent_grad_norms_;
  std::map<int, std::deque<double>> compute_seconds_;  // by rank, this generation
  std::map<int, int> straggler_strikes_;               // windows running above the factor
  // A hang being diagnosed: agents asked for their ranks' states.
  struct HangProbe {
    int64_t detected_us = 0;
    double timeout_ms = 0, median_ms = 0;
    std::set<int> agents_answered;
    std::map<int, wire::RankDiagnosis> ranks;
  };
  std::optional<HangProbe> hang_;
  boost::asio::steady_timer hang_timer_;
  std::optional<int64_t> paused_event_;
  // The detection being recovered from: a pause or a spare at launch answers it.
  std::optional<int64_t> last_event_;
  int64_t final_tokens_ = 0;
  double final_loss_ = 0.0;
  // Checkpoint deletions, off the event loop; last, so destroyed first.
  boost::asio::thread_pool files_{1};
};

}  // namespace vigil::coordinator
