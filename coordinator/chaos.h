// Injected faults, parsed from `--chaos` specs (or sent to a running job by
// `vigil chaos`). Each fires once, when the rank it names (rank 0 for
// checkpoints) first reports a step at or past STEP (at once without @STEP):
//   kill-rank:RANK[@STEP] — its agent delivers a real SIGKILL;
//   hang-rank:RANK[@STEP] — SIGSTOP: the rank stops, alive, and its peers
//     block in their next collective (a hang);
//   nan:RANK[@STEP] — SIGUSR1: vigil-train poisons its next gradient with a
//     NaN, which the real all-reduce carries to every rank;
//   spike:RANK[@STEP] — SIGUSR2: vigil-train scrambles its next batch's
//     targets, a real loss (and gradient) spike;
//   slow-rank:RANK[@STEP] — SIGURG: from then on vigil-train idles three
//     times its compute time each step (a straggler);
//   disk-full:RANK[@STEP] — SIGXFSZ: vigil-train's next checkpoint save
//     finds its disk full (every write of its shard fails with ENOSPC);
//     the save is abandoned, older checkpoints stay, training goes on;
//   kill-agent:RANK[@STEP] — the agent running RANK SIGKILLs itself (a host
//     lost: its ranks die with it);
//   xid:CODE:RANK[@STEP] — the GPU monitor of RANK's agent reads Xid CODE
//     for RANK's GPU, as if from the kernel log (gpu_fault);
//   corrupt-checkpoint:HOW@STEP (or corrupt-ckpt:HOW@STEP) — when rank 0 first reports a step at or
//     past STEP, vigild damages the newest committed checkpoint on disk:
//     flip (one byte of a shard: only the ranks' checksums can tell),
//     truncate (a shard cut in half), remove-shard, garble-manifest;
//   kill-vigild[@STEP] — when rank 0 first reports a step at or past STEP,
//     vigild SIGKILLs itself (once its intervention is committed, so the
//     vigild that takes the run over knows it fired);
//   hang-vigild[:MS][@STEP] — the same, but vigild is SIGSTOPped for MS
//     (default 10000) and continued: a wedged coordinator.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/job_spec.h"
#include "common/status.h"

namespace vigil::coordinator {

// vigild's own faults: kill-vigild, hang-vigild (no rank; rank 0's steps time them).
bool IsCoordinatorFault(const std::string& kind);
inline constexpr int kDefaultVigildHangMs = 10000;

struct ChaosFault {
  // kill-rank | hang-rank | nan | spike | slow-rank | disk-full | kill-agent | xid |
  // corrupt-checkpoint
  std::string kind;
  int rank = 0;
  int xid = 0;       // xid: the code
  int hang_ms = 0;   // hang-vigild: how long vigild is stopped
  std::string how;   // corrupt-checkpoint: flip | truncate | remove-shard | garble-manifest
  int64_t step = 0;  // 0: at the next report
  bool fired = false;
  std::string spec;       // as the user wrote it
  int random_index = -1;  // which fault of a random schedule (-1: named by the user)
};

// What a fault schedule is drawn for.
struct ChaosPlan {
  int world_size = 1;
  int64_t total_steps = 0;
  int every_steps = 1;  // checkpoint.every_steps
  int spares = 0;       // world.spares: how many hosts a schedule may take away
  // limits.heartbeat_timeout_ms: a random hang-vigild lasts a tenth of it.
  int heartbeat_timeout_ms = 5000;
  static ChaosPlan Of(const JobSpec& spec) {
    return {spec.world.world_size(), spec.schedule.steps, spec.checkpoint.every_steps,
            spec.world.spares, spec.limits.heartbeat_timeout_ms};
  }
};

// Steps a random schedule leaves between two faults, so that each is
// detected and recovered from (and the loss-spike baseline refilled)
// before the next.
inline constexpr int64_t kRandomChaosSpacing = 25;

// The kinds a random schedule draws from: kill-rank, hang-rank, nan,
// spike, xid, kill-agent, corrupt-checkpoint, disk-full.
const std::vector<std::string>& RandomChaosKinds();

// `random:COUNT[:KIND,KIND...]` (with --seed): COUNT faults, one after
// another from step max(60, 2 x every_steps), at a drawn rank, their kinds
// dealt from a shuffled deck of `kinds` (empty: RandomChaosKinds()), so
// that COUNT >= kinds.size() faults cover every kind. corrupt-checkpoint
// is flip or truncate, with rank 0 killed at the same step so that the
// damaged checkpoint is loaded; disk-full is timed so that the save it
// fails comes before the next fault (a slot with no such save takes the
// deck's next kind). Faults that take a host away (kill-agent, and Xids
// the default playbook cordons for: 48, 64, 79) are drawn at most `spares`
// times, a spare kept for a kill-agent still to come; other Xids are drawn
// from 13, 31, 43, 94. The same seed gives the same schedule.
Result<std::vector<ChaosFault>> RandomChaos(int count, uint64_t seed, const ChaosPlan& plan,
                                            std::vector<std::string> kinds = {});

Result<ChaosFault> ParseChaosFault(const std::string& spec);
// kill-vigild and hang-vigild on this process: SIGKILL, or SIGSTOP by a
// child that sends SIGCONT after hang_ms (and is reaped here, once this
// process runs again). Any thread.
void FaultThisProcess(const ChaosFault& f);
// The signal a rank fault delivers (0 for kinds that are not rank faults).
int ChaosSignal(const std::string& kind);
// Faults the rank's agent carries out on its host (kill-agent, xid).
bool IsHostFault(const std::string& kind);
// Damages the committed checkpoint `dir` the way `how` says (see above).
Status DamageCheckpoint(const std::string& dir, const std::string& how);

// Parses every spec (expanding random:COUNT[:KINDS] with `seed`) and checks each
// names a rank inside the world.
Result<std::vector<ChaosFault>> ParseChaosFaults(const std::vector<std::string>& specs,
                                                 const ChaosPlan& plan, uint64_t seed);

}  // namespace vigil::coordinator
