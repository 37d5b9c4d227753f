// The job controller: where detections meet decisions and decisions become
// actions. It owns the job's state machine (job_state.h) and wires the
// parts, each of which does one thing:
//
//   detectors      rank exits (detections.h), hangs (hang_detector.h),
//                  numerics (numerics_detector.h), stragglers
//                  (straggler_detector.h), collective errors held to settle
//                  (symptom_settler.h), GPU faults, failed saves, lost
//                  hosts, a generation that never starts: each only reports
//                  a Detection;
//   journal        journal.h: records each detection as one `events` row,
//                  and every intervention, generation, checkpoint and step;
//   playbook       playbook.h (pure): decides what to do;
//   planner        recovery_planner.h (pure): turns the decision, the
//                  placement, the checkpoint catalogue and the limits into
//                  one plan, the checkpoint chosen once;
//   executors      this class carries the plan out: interventions recorded
//                  (before their orders leave: the agent link is
//                  write-ahead), placement (placement.h) adopted, the
//                  generation torn down and the next launched
//                  (generation.h), checkpoints rolled back and retention
//                  applied (checkpoint_catalog.h), chaos faults fired
//                  (chaos_injector.h).
//
// The playbook hears what was carried out (a restart that became a pause
// is no restart). Time comes from the Clock it is given and files are
// reached through the Storage it is given, so the whole controller runs in
// the scenario tests on fake time, with an in-memory journal and a fake
// agent link, without a process.
//
// A restart tears the whole generation down (TERM, grace, KILL on every
// agent), waits for every agent to confirm (limits.teardown_timeout_ms,
// past which the job pauses for a person: an agent that does not confirm
// may still hold its GPUs), and launches the next generation from the
// planned checkpoint with the planned modifiers (skip_batches, scale_lr,
// switch_optimizer; the last two stay in force for later generations).
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

#include "checkpoint/storage.h"
#include "common/crash_point.h"
#include "common/job_spec.h"
#include "common/util.h"
#include "common/vigil.pb.h"
#include "coordinator/agent_link.h"
#include "coordinator/chaos.h"
#include "coordinator/chaos_injector.h"
#include "coordinator/checkpoint_catalog.h"
#include "coordinator/clock.h"
#include "coordinator/generation.h"
#include "coordinator/goodput.h"
#include "coordinator/hang_detector.h"
#include "coordinator/job_state.h"
#include "coordinator/journal.h"
#include "coordinator/metrics.h"
#include "coordinator/numerics_detector.h"
#include "coordinator/placement.h"
#include "coordinator/playbook.h"
#include "coordinator/recovery_planner.h"
#include "coordinator/rendezvous_store.h"
#include "coordinator/step_recorder.h"
#include "coordinator/straggler_detector.h"
#include "coordinator/symptom_settler.h"
#include "coordinator/takeover.h"

namespace vigil::coordinator {

// What the controller runs on; none owned.
struct ControllerSeams {
  Clock* clock = nullptr;
  Journal* journal = nullptr;
  AgentLink* agents = nullptr;
  RendezvousStore* store = nullptr;
  CoordinatorMetrics* metrics = nullptr;
  checkpoint::Storage* storage = nullptr;  // rollback renames, retention deletions
  CheckpointProbe probe;                   // empty: ManifestProbe(storage)
  // Where the catalog's file work (probes, deletions) runs; empty: a
  // thread of its own. The scenario tests pass their event loop's.
  boost::asio::any_io_executor file_work;
  // Carries out kill-vigild and hang-vigild (vigild's own process; empty:
  // not injected, as in the scenario tests). Called once the fault's
  // intervention is committed.
  std::function<void(const ChaosFault&)> self_fault;
  // Where a test has vigild die (common/crash_point.h); none by default.
  CrashPoints crash_points;
};

class JobController {
 public:
  JobController(boost::asio::io_context& io, const JobSpec& spec, JobPaths paths, int64_t run_id,
                ControllerSeams seams, std::vector<ChaosFault> chaos, Playbook playbook);
  ~JobController();
  // Waits for the checkpoint deletions under way (and ordered so far); they
  // record their outcome through the journal, which must outlive this.
  void FinishFileWork() { catalog_.FinishFileWork(); }
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
  // Called often (every 50 ms): hang detection, and the metrics once a second.
  void OnTick();
  // vigild was cut off from the agents (not called OnTick meanwhile) and
  // they are back: no rank could report, so each one's silence counts from now.
  void OnAgentsBack();
  // vigild is stopping (signal): tear down and record the run as cancelled.
  void Stop(const std::string& why);
  // A person continues a paused job (`vigil resume`). Error if not paused.
  Status Resume(const std::string& actor, const std::string& note);
  // A fault to inject now (`vigil chaos`), checked against the world.
  Status InjectChaos(const std::string& spec, const std::string& actor);

  JobState state() const { return machine_.state(); }
  const JobProgress& progress() const { return progress_; }
  // Every host that registered: {host, state (active|spare|cordoned|lost), slot, ranks}.
  nlohmann::json Hosts() const { return placement_.Hosts(); }
  bool terminal() const { return machine_.terminal(); }
  // Moves the table refused (a bug; the scenario tests fail on any).
  int illegal_moves() const { return machine_.illegal_moves(); }
  // Called once when the job reaches a terminal state and agents were told to shut down.
  std::function<void()> on_terminal;
  // Called for each cordon_host intervention, once it is recorded: an
  // executor outside the job acts on it (Slurm's drain, slurm_drainer.h).
  std::function<void(int64_t event_id, const std::string& host, const std::string& kind)> on_cordon;
  // An event of the run, now: the current generation and step, `detail`,
  // and the host it is about (if any). Its id.
  int64_t RecordEvent(const std::string& kind, const nlohmann::json& detail,
                      const std::string& host = "");
  // What such an executor did, recorded as an intervention of `event`.
  void RecordExecuted(std::optional<int64_t> event, const std::string& action,
                      const std::string& actor, const nlohmann::json& params,
                      const std::string& outcome) {
    AddIntervention(event, action, actor, params, outcome);
  }

  // ---- A vigild that takes over a run whose vigild died (takeover.h;
  // job_controller_takeover.cc).
  // Before any agent registers: what the logbook holds (the catalogue, the
  // playbook's history, restarts, cordons, the optimizer switched, chaos
  // already fired, the last step).
  void Restore(const RunTakeover& t);
  // The hosts of the run's world by slot, to wait for; empty when there is
  // no takeover under way.
  const std::vector<std::string>& takeover_hosts() const;
  bool taking_over() const { return takeover_.has_value(); }
  // Every host of the world registered again, or was given up (its slot's
  // agent is an index no agent holds; the coordinator reports it lost
  // next); `hellos` is what each registered agent said it runs. Where
  // every rank of the generation in flight is accounted for, it is adopted
  // as it stands (no teardown: the job is running again); a rank that is
  // gone without a kept exit status is a detection; ranks of any other
  // generation are torn down; a paused run stays paused; a run between
  // generations carries out the restart that was decided. One
  // `coordinator_restart` event says what was found and adopted.
  void Adopt(const std::vector<int>& slot_agents, const std::map<int, wire::Hello>& hellos);

 private:
  void OnMove(JobState from, JobState to, const std::string& why);
  void Transition(JobState to, const std::string& why) { machine_.Move(to, why); }
  int world_size() const { return placement_.world_size(); }
  int AgentOfRank(int rank) const { return gen_.AgentOfRank(rank, spec_.world.ranks_per_host); }
  std::string HostOf(int agent) const { return agent >= 0 ? agents_->agent_host(agent) : ""; }
  int64_t Now() const { return clock_->NowMicros(); }

  // The journal, with the metrics that count rows.
  int64_t RecordEvent(const Detection& d);
  int64_t AddIntervention(std::optional<int64_t> event, const std::string& action,
                          const std::string& actor, const nlohmann::json& params,
                          const std::string& outcome);
  std::vector<int64_t> Record(std::optional<int64_t> event, const std::string& actor,
                              const std::vector<PlannedAction>& actions);
  // A corrupt checkpoint vigild's own probe found: its event and fallback.
  void RecordCorrupt(const std::string& path, const std::string& reason);
  // RecordCorrupt, as the checkpoint choice's callback.
  OnCorrupt CorruptRecorder() {
    return
        [this](const std::string& path, const std::string& reason) { RecordCorrupt(path, reason); };
  }
  nlohmann::json CorruptDetail(const std::string& path, const std::string& reason,
                               const std::string& found_by) const;
  // Records detection latency (when the fault was injected) and when the
  // failure happened, for recovery time.
  void NoteDetectionLatency(Detection* d, std::optional<int64_t> injected_at, int64_t detected_at);

  // Records the detection, asks the playbook, plans and carries out; a
  // restart's second half once its checkpoint is chosen (OnRestartChosen).
  void HandleFailure(Detection d);
  void LogDecision(const RecoveryPlan& plan);
  // Chooses off the loop; `done` runs on it.
  void ChooseCheckpoint(const CheckpointWant& want, std::function<void(CheckpointChoice)> done);
  void OnRestartChosen(CheckpointChoice choice);
  // A plan that is not a restart: continue, pause or fail.
  void Carry(const RecoveryPlan& plan, int64_t event_id);
  void AdoptPlacement(const Placement& p);
  // Every host's state series and the counts by state, from the placement.
  void UpdateHostMetrics();
  // The same after `agent` joined and nothing else changed: its own series,
  // and the counts one up (a join costs O(1), not O(agents): 10,000 spares
  // registering at once).
  void UpdateHostMetricsForNew(int agent);
  void UpdateRankMetrics(int64_t now_us);
  std::map<std::string, int> host_counts_;   // by state, as UpdateHostMetrics counted
  std::vector<std::string> counted_states_;  // by agent: the state it is counted in
  void Pause(std::optional<int64_t> event, const std::string& why);

  // The generation's lifecycle. Launch uses the restart's planned
  // checkpoint, or chooses one (a first start, a resume, a regrow).
  void Launch(std::optional<int64_t> cause_intervention);
  void LaunchFrom(CheckpointChoice choice, std::optional<int64_t> cause_intervention);
  void SendToGeneration(const wire::Envelope& env);
  // The generation is condemned (recovering; its row ended) ...
  void BeginRecovery(const std::string& reason);
  // ... and its teardown ordered (TERM, grace, KILL), bounded by
  // limits.teardown_timeout_ms.
  void KillGeneration();
  void TearDownGeneration(const std::string& reason);  // both
  // Launches the next generation once every agent confirmed the teardown
  // and the restart's checkpoint is chosen.
  void MaybeLaunchNext();
  void OnTeardownTimeout(int64_t generation);
  // limits.start_timeout_ms for the generation launched (or adopted before its first step).
  void ArmStartTimer();
  void RestorePendingRestart(const RunTakeover& t);
  Detection MissingRanksDetection(const std::vector<int>& ranks) const;
  void FinishGeneration(const std::string& reason);
  enum class Outcome { kSucceeded, kFailed, kCancelled };
  void Finish(Outcome outcome, const std::string& why);

  void OnStep(const wire::RankReport& r);
  void OnCheckpoint(const wire::RankReport& r);
  void OnCheckpointFailed(const wire::RankReport& r);
  void ApplyRetention();
  // A shrunk world that has free spares again grows back (world.regrow),
  // as far as the global batch divides: the checkpoint of `step` was just
  // committed, so the restart onto it loses next to nothing. One
  // `grow_world` intervention; no event (nothing failed).
  void MaybeRegrow(int64_t step);
  void DeclareHang(int64_t now_us);
  void FinishHang();

  boost::asio::io_context& io_;
  const JobSpec& spec_;
  JobPaths paths_;
  int64_t run_id_;
  Clock* clock_;
  Journal* journal_;
  AgentLink* agents_;
  RendezvousStore* store_;
  CoordinatorMetrics* metrics_;
  std::shared_ptr<spdlog::logger> log_;

  JobStateMachine machine_;
  JobProgress progress_;
  Placement placement_;
  CheckpointCatalog catalog_;
  PlaybookEngine playbook_;
  HangDetector hangs_;
  NumericsDetector numerics_;
  StragglerDetector stragglers_;
  SymptomSettler settler_;
  ChaosInjector chaos_;
  StepRecorder steps_;
  GoodputTracker goodput_;
  std::unique_ptr<Timer> start_timer_, teardown_timer_, hang_timer_;
  const CrashPoints crash_points_;

  Generation gen_;
  std::set<std::pair<int64_t, int64_t>> failed_saves_;  // (generation, step) already recorded
  // A restart (or fallback) whose checkpoint is being chosen: the plan's
  // first half, carried out, and what the second half needs.
  struct Planning {
    Detection detection;
    Decision decision;
    RecoveryPlan plan;
    int64_t event_id = 0;
    std::vector<int64_t> ids;         // the rows of the first half
    std::vector<CheckpointRow> late;  // saves committed meanwhile (a rollback's too)
  };
  std::optional<Planning> planning_;
  // A takeover waiting for the world's hosts to register again.
  struct Takeover {
    RunTakeover run;
    std::vector<std::string> hosts;  // by slot
    int64_t started_us = 0;
  };
  std::optional<Takeover> takeover_;
  // The restart under way: what caused it, and what the next generation
  // starts from and with (chosen once, when it was planned); it counts as
  // a restart (a fallback does not) when the next generation launches.
  struct PendingRestart {
    std::string kind;  // of its detection
    int64_t detected_at_us = 0;
    bool counts = false;
  };
  std::optional<PendingRestart> pending_restart_;
  std::optional<int64_t> pending_cause_;
  std::optional<CheckpointChoice> pending_checkpoint_;
  LaunchModifiers pending_modifiers_;
  bool pending_rolls_back_ = false;
  std::string optimizer_override_;  // a switch_optimizer stays in force
  // The failure being recovered from (for recovery time).
  std::optional<int64_t> failure_at_us_;
  std::string recovering_from_;
  // The detection being recovered from (a pause or a spare at launch
  // answers it) and the one a pause answers (the resume is linked to it).
  std::optional<int64_t> last_event_, paused_event_;
  int64_t metrics_updated_us_ = 0;
  int64_t final_tokens_ = 0;
  double final_loss_ = 0.0;
};

}  // namespace vigil::coordinator
