// vigil's vocabulary, named once: the kinds of failure vigild detects
// (logbook events.kind, the playbook's `when.kind`, the metrics' `kind`
// label), the actions an intervention records (interventions.action, the
// playbook's actions, the metrics' `action` label) and the states of a job,
// a rank and a host. Metrics, playbook, logbook and CLI all use these names;
// a name that is not here is a typo.
#pragma once

#include <string_view>

namespace vigil {

// vigild's exit status when a newer vigild took its run over (it was
// fenced out of the logbook): the job goes on without it.
inline constexpr int kVigildExitFenced = 3;

namespace kind {
inline constexpr const char kProcessExit[] = "process_exit";
inline constexpr const char kCollectiveError[] = "collective_error";
inline constexpr const char kCheckpointCorrupt[] = "checkpoint_corrupt";
inline constexpr const char kCheckpointWriteFailed[] = "checkpoint_write_failed";
inline constexpr const char kHostLost[] = "host_lost";
inline constexpr const char kStartTimeout[] = "start_timeout";
inline constexpr const char kConfigError[] = "config_error";
inline constexpr const char kRankHang[] = "rank_hang";
inline constexpr const char kGpuFault[] = "gpu_fault";
inline constexpr const char kGpuThermal[] = "gpu_thermal";
inline constexpr const char kStraggler[] = "straggler";
inline constexpr const char kNonfinite[] = "nonfinite";
inline constexpr const char kLossSpike[] = "loss_spike";
inline constexpr const char kGradNormSpike[] = "grad_norm_spike";
// Not failures of training, but events all the same.
inline constexpr const char kCoordinatorStopped[] = "coordinator_stopped";
// vigild heard no agent for a while (cut off, or its loop stood still) and
// waited for them: how long, who came back, who was then declared lost.
inline constexpr const char kCoordinatorCutOff[] = "coordinator_cut_off";
// An agent could not see or write the job's storage: it never joined.
inline constexpr const char kHostRefused[] = "host_refused";
// Connections that failed to prove the job's token (coordinator/admission.h):
// one row per source per minute, with how many and why.
inline constexpr const char kAuthFailure[] = "auth_failure";
// A vigild took over a run whose vigild died: downtime, what it found, what it adopted.
inline constexpr const char kCoordinatorRestart[] = "coordinator_restart";
}  // namespace kind

// Every failure kind the detectors report, the most common first (the
// playbook's error messages list them in this order). The last,
// checkpoint_corrupt, is the checkpoint machinery's to answer, not a
// playbook's.
inline constexpr const char* kFailureKinds[] = {kind::kProcessExit,
                                                kind::kRankHang,
                                                kind::kHostLost,
                                                kind::kGpuFault,
                                                kind::kGpuThermal,
                                                kind::kCollectiveError,
                                                kind::kStraggler,
                                                kind::kNonfinite,
                                                kind::kLossSpike,
                                                kind::kGradNormSpike,
                                                kind::kStartTimeout,
                                                kind::kConfigError,
                                                kind::kCheckpointWriteFailed,
                                                kind::kCheckpointCorrupt};

// Why a connection failed to authenticate (vigil_auth_failures_total's
// `reason` label, an auth_failure event's detail.reasons).
namespace auth_reason {
inline constexpr const char kBadProof[] = "bad_proof";  // a Hello without the token's proof
inline constexpr const char kProtocol[] = "protocol";   // another protocol version
// Not a Hello first, an unparseable or oversized frame, or one cut short.
inline constexpr const char kMalformed[] = "malformed";
inline constexpr const char kTimeout[] = "handshake_timeout";   // no proof in time
inline constexpr const char kEvicted[] = "evicted";             // pushed out by newer handshakes
inline constexpr const char kOverCapacity[] = "over_capacity";  // proved, but no room
// An HTTP request for a path that needs the token, without it.
inline constexpr const char kHttpToken[] = "http_token";
}  // namespace auth_reason
inline constexpr const char* kAuthReasons[] = {auth_reason::kBadProof,  auth_reason::kProtocol,
                                               auth_reason::kMalformed, auth_reason::kTimeout,
                                               auth_reason::kEvicted,   auth_reason::kOverCapacity,
                                               auth_reason::kHttpToken};

namespace action {
// Outcomes: a playbook rule has exactly one.
inline constexpr const char kRestartFromLatest[] = "restart_from_latest";
inline constexpr const char kRollback[] = "rollback";
inline constexpr const char kContinue[] = "continue";  // the playbook's word
inline constexpr const char kPauseAndPage[] = "pause_and_page";
inline constexpr const char kFailJob[] = "fail_job";
// Modifiers of the next generation, and alongside.
inline constexpr const char kSkipBatches[] = "skip_batches";
inline constexpr const char kScaleLr[] = "scale_lr";
inline constexpr const char kSwitchOptimizer[] = "switch_optimizer";
inline constexpr const char kCordonHost[] = "cordon_host";
inline constexpr const char kUseSpare[] = "use_spare";
inline constexpr const char kShrinkWorld[] = "shrink_world";
inline constexpr const char kPage[] = "page";
// What vigild records of its own accord, or a person asks for.
inline constexpr const char kContinueTraining[] =
    "continue_training";  // the logbook's for kContinue
inline constexpr const char kFallbackToOlderCheckpoint[] = "fallback_to_older_checkpoint";
inline constexpr const char kResume[] = "resume";
inline constexpr const char kGrowWorld[] = "grow_world";
inline constexpr const char kDeleteCheckpoint[] = "delete_checkpoint";
inline constexpr const char kInjectFault[] = "inject_fault";
// A cordoned host drained in Slurm (coordinator/slurm_drainer.h).
inline constexpr const char kSlurmDrain[] = "slurm_drain";
inline constexpr const char kNone[] = "none";  // recorded, nothing done (and why)
}  // namespace action

// Every action an intervention records (interventions.action).
inline constexpr const char* kInterventionActions[] = {action::kRestartFromLatest,
                                                       action::kRollback,
                                                       action::kFallbackToOlderCheckpoint,
                                                       action::kContinueTraining,
                                                       action::kPauseAndPage,
                                                       action::kPage,
                                                       action::kResume,
                                                       action::kFailJob,
                                                       action::kSkipBatches,
                                                       action::kScaleLr,
                                                       action::kSwitchOptimizer,
                                                       action::kCordonHost,
                                                       action::kUseSpare,
                                                       action::kShrinkWorld,
                                                       action::kGrowWorld,
                                                       action::kDeleteCheckpoint,
                                                       action::kInjectFault,
                                                       action::kSlurmDrain,
                                                       action::kNone};

// Job states (runs.status, vigil_job_state and /api/v1/status's `state`).
namespace job_state {
inline constexpr const char kPending[] = "pending";
inline constexpr const char kRendezvous[] = "rendezvous";
inline constexpr const char kRunning[] = "running";
inline constexpr const char kRecovering[] = "recovering";
inline constexpr const char kSucceeded[] = "succeeded";
inline constexpr const char kFailed[] = "failed";
inline constexpr const char kPaused[] = "paused";
// Stopped by a signal to vigild: a person (Ctrl-C, `vigil stop`) or the scheduler (scancel).
inline constexpr const char kCancelled[] = "cancelled";
}  // namespace job_state

// Whether a run with this runs.status is over (nothing more will train it).
inline bool IsRunOver(std::string_view status) {
  return status != job_state::kRunning && status != job_state::kPaused;
}

// Every job state; rank states (vigil_ranks) and host states (vigil_hosts,
// vigil_host_state, /api/v1/hosts).
inline constexpr const char* kJobStates[] = {
    job_state::kPending,   job_state::kRendezvous, job_state::kRunning, job_state::kRecovering,
    job_state::kSucceeded, job_state::kFailed,     job_state::kPaused,  job_state::kCancelled};
inline constexpr const char* kRankStates[] = {"starting", "training", "saving", "down"};
inline constexpr const char* kHostStates[] = {"active", "spare", "cordoned", "lost"};

// Checkpoint states (checkpoints.state).
namespace checkpoint_state {
inline constexpr const char kCommitted[] = "committed";
inline constexpr const char kCorrupt[] = "corrupt";
inline constexpr const char kRolledBack[] = "rolled_back";
inline constexpr const char kDeleting[] = "deleting";  // in memory only: retention under way
inline constexpr const char kDeleted[] = "deleted";
inline constexpr const char kDeleteFailed[] = "delete_failed";
}  // namespace checkpoint_state

}  // namespace vigil
