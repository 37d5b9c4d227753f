// The contract between a vigil-train rank and the two processes that watch
// it: the agent that launches it and vigild that reads its exits.
//
// Launch: the agent starts each rank with exactly the environment below
// (every other VIGIL_* variable of the agent's own is dropped), built from
// vigild's LaunchRanks order. Exit: the rank's exit code says what ended it;
// vigild classifies the exit by this code alone (a signal is a crash).
#pragma once

#include <string_view>

namespace vigil::rank_contract {

// Exit codes of vigil-train.
enum ExitCode : int {
  kExitSucceeded = 0,          // trained every step of the schedule
  kExitError = 1,              // anything else: a crash the rank caught
  kExitConfig = 2,             // the job spec or launch environment is wrong: restarting won't help
  kExitCollective = 3,         // a collective failed or timed out (a peer died, NCCL aborted)
  kExitCheckpointCorrupt = 4,  // the checkpoint it was told to resume from fails verification
  kExitNonfinite = 5,          // the gradient (or loss) was NaN/Inf; the update was not applied
};

// The launch environment, one name per order field.
inline constexpr std::string_view kEnvPrefix = "VIGIL_";  // what the agent drops of its own
inline constexpr std::string_view kEnvRank = "VIGIL_RANK";
inline constexpr std::string_view kEnvWorldSize = "VIGIL_WORLD_SIZE";
inline constexpr std::string_view kEnvLocalRank = "VIGIL_LOCAL_RANK";
inline constexpr std::string_view kEnvGeneration = "VIGIL_GENERATION";
inline constexpr std::string_view kEnvStoreAddr = "VIGIL_STORE_ADDR";
inline constexpr std::string_view kEnvAgentSocket = "VIGIL_AGENT_SOCKET";
inline constexpr std::string_view kEnvTokenFile = "VIGIL_TOKEN_FILE";
inline constexpr std::string_view kEnvJobFile = "VIGIL_JOB_FILE";
inline constexpr std::string_view kEnvCheckpointDir = "VIGIL_CHECKPOINT_DIR";
inline constexpr std::string_view kEnvResumeFrom = "VIGIL_RESUME_FROM";
inline constexpr std::string_view kEnvBindAddr = "VIGIL_BIND_ADDR";
inline constexpr std::string_view kEnvHost = "VIGIL_HOST";
inline constexpr std::string_view kEnvLrScale = "VIGIL_LR_SCALE";
inline constexpr std::string_view kEnvOptimizer = "VIGIL_OPTIMIZER";
inline constexpr std::string_view kEnvBatchPerRank = "VIGIL_BATCH_PER_RANK";
inline constexpr std::string_view kEnvSkipBatches = "VIGIL_SKIP_BATCHES";
inline constexpr std::string_view kEnvSkipAtStep = "VIGIL_SKIP_AT_STEP";
// Set to 1 only in jobs started with chaos faults: the rank then installs
// the fault-injection signal handlers (SIGUSR1 poisons its next gradient,
// SIGUSR2 scrambles its next loss). A production rank never does.
inline constexpr std::string_view kEnvChaos = "VIGIL_CHAOS";

}  // namespace vigil::rank_contract
