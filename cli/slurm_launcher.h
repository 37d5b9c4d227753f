// `vigil run` under Slurm (`launcher: slurm`, or `--launcher slurm`;
// docs/slurm.md). Two halves:
//
//   Outside an allocation, SubmitToSlurm writes a batch script into the work
//   directory and submits it with sbatch: the job's hosts plus its spares,
//   one task per node, --no-kill (a node lost does not end the allocation).
//   It then follows the job as `vigil run` does locally (vigild's address
//   and the logbook are in the work directory, which every node shares):
//   the progress line, the summary, its exit status. Ctrl-C cancels the
//   Slurm job (scancel), which stops vigild: the run is recorded cancelled;
//   a Ctrl-C after that, or SIGTERM, stops following and leaves the job be.
//   One submit at a time per work directory (a lock), and none while the
//   Slurm job it last submitted is live.
//
//   Inside the allocation (SLURM_JOB_ID set: the batch script, or a person's
//   salloc), `vigil run` runs vigild on the batch node and starts each
//   agent as a job step of its own on its node (srun --kill-on-bad-exit=0: a
//   step that fails ends no other). The first world.hosts nodes are the
//   job's hosts; the allocation's other nodes are its spares. Each host is
//   named by its Slurm node name, which is what vigild drains.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "common/job_spec.h"
#include "common/status.h"

namespace vigil::cli {

struct SlurmAllocation {
  std::string job_id;
  std::vector<std::string> nodes;  // in the allocation's order (scontrol show hostnames)
};

// The allocation this process runs in; nullopt outside one. Slurm's
// commands are bounded by `command_timeout_ms` (slurm.command_timeout_ms).
Result<std::optional<SlurmAllocation>> CurrentSlurmAllocation(int command_timeout_ms);

// `argv` started on `node` as a job step of the current allocation, with
// its own name: one task with the node's CPUs (SLURM_CPUS_ON_NODE) and
// `gpus` GPUs, and no other step killed if it fails.
std::vector<std::string> SrunStep(const std::string& node, const std::string& step_name, int gpus,
                                  const std::vector<std::string>& argv);

// Submits the job (already validated) and follows it to its end; the exit
// status of `vigil run`.
int SubmitToSlurm(const RunArgs& args, const JobSpec& spec, const std::string& workdir,
                  std::optional<double> entropy_floor);

}  // namespace vigil::cli
