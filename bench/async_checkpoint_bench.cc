// Training stall per asynchronous checkpoint, beside a synchronous save of the
// same state measured in the same run.
//
//   build/bin/async_checkpoint_bench [--dir DIR] [--d-model 512] [--layers 8] [--vocab 32768]
//                                    [--steps 6] [--reps 3]
//
// One rank (one training thread, as vigil-train runs) trains an OPT-style
// decoder whose state (parameters and AdamW moments) is ~0.5 GB by default,
// and for each repetition runs:
//   baseline  `steps` steps, no checkpoint;
//   async     the same steps with a save started after the first: the shard
//             is copied during the next forward/backward and written by the
//             background thread while training goes on; polled every step,
//             collected at the end;
//   sync      one save of the same state, written before training resumes.
// It prints the training thread's blocked time per async save (the trainer
// measures every wait: starting the save, the snapshot, collecting the shard,
// the checksum exchange and the commit), the loop's slowdown over the
// baseline (which also counts the writer's competition for cores and memory
// bandwidth), and both as a share of the synchronous save's time. Best of
// `reps` for each figure. Target: stall <= 2% of the synchronous save.
#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>

#include "bench/bench_util.h"
#include "common/job_spec.h"
#include "common/util.h"
#include "worker/trainer/data_source.h"
#include "worker/trainer/trainer.h"

namespace {

using vigil::bench::Arg;
using vigil::bench::Clock;
using vigil::bench::Since;
using vigil::trainer::Trainer;

double RunSteps(Trainer& t, int steps) {
  const auto t0 = Clock::now();
  for (int i = 0; i < steps; ++i) t.Step();
  return Since(t0);
}

}  // namespace

int main(int argc, char** argv) {
  const std::string base = Arg(argc, argv, "--dir", "/tmp");
  const int d_model = std::atoi(Arg(argc, argv, "--d-model", "512"));
  const int layers = std::atoi(Arg(argc, argv, "--layers", "8"));
  const int vocab = std::atoi(Arg(argc, argv, "--vocab", "32768"));
  const int steps = std::atoi(Arg(argc, argv, "--steps", "6"));
  const int reps = std::atoi(Arg(argc, argv, "--reps", "3"));
  openblas_set_num_threads(1);
  omp_set_num_threads(1);
  const std::string yaml = "name: bench\nmodel: {vocab: " + std::to_string(vocab) +
                           ", d_model: " + std::to_string(d_model) +
                           ", layers: " + std::to_string(layers) +
                           ", heads: 8, seq_len: 128}\n"
                           "schedule: {steps: 1000000, batch_per_rank: 2}\n"
                           "world: {hosts: 1, ranks_per_host: 1}\n";
  auto spec = vigil::ParseJobSpec(yaml, "bench.yaml");
  if (!spec.ok()) {
    std::fprintf(stderr, "%s\n", spec.status().ToString().c_str());
    return 2;
  }
  auto data = vigil::trainer::MakeDataSource(spec.value());
  const std::string root = base + "/vigil-async-bench-" + std::to_string(::getpid());
  std::filesystem::create_directories(root);
  auto log = vigil::MakeLogger("bench");
  log->set_level(spdlog::level::warn);
  vigil::trainer::GlooCollectives single;

  double baseline = 1e30, async_blocked = 1e30, async_loop = 1e30, sync_save = 1e30;
  int64_t bytes = 0;
  {
    vigil::trainer::TrainerOptions opts;
    opts.checkpoint_dir = root;
    opts.async_save = true;
    Trainer t(spec.value(), opts, *data.value(), &single, log);
    t.Initialize();
    bytes = t.checkpoint_bytes();
    std::printf("state %.2f GB (%lld parameters), %d steps per phase, best of %d, under %s\n",
                static_cast<double>(bytes) / 1e9,
                static_cast<long long>(t.model().global_param_count()), steps, reps, root.c_str());
    RunSteps(t, 2);  // warm-up: touch everything once, grow the writer's buffer below
    t.BeginSave();
    (void)t.FinishSave(true);
    for (int r = 0; r < reps; ++r) {
      baseline = std::min(baseline, RunSteps(t, steps));
      const double before = t.save_stall_seconds();
      const auto t0 = Clock::now();
      t.BeginSave();
      for (int i = 0; i < steps; ++i) {
        t.Step();
        (void)t.FinishSave(false);
      }
      (void)t.FinishSave(true);
      async_loop = std::min(async_loop, Since(t0));
      async_blocked = std::min(async_blocked, t.save_stall_seconds() - before);
      std::filesystem::remove_all(root);
      std::filesystem::create_directories(root);
    }
  }
  {
    vigil::trainer::TrainerOptions opts;
    opts.checkpoint_dir = root;
    opts.async_save = false;
    Trainer t(spec.value(), opts, *data.value(), &single, log);
    t.Initialize();
    RunSteps(t, 1);
    for (int r = 0; r < reps; ++r) {
      const auto t0 = Clock::now();
      auto dir = t.Save();
      sync_save = std::min(sync_save, Since(t0));
      if (!dir.ok()) {
        std::fprintf(stderr, "%s\n", dir.status().ToString().c_str());
        return 1;
      }
      std::filesystem::remove_all(root);
      std::filesystem::create_directories(root);
    }
  }
  std::filesystem::remove_all(root);
  const double slowdown = async_loop - baseline;  // noise can make it negative
  std::printf("baseline      %6.3f s for %d steps (%.3f s/step)\n", baseline, steps,
              baseline / steps);
  std::printf("sync save     %6.3f s blocked (%.2f GB/s)\n", sync_save,
              static_cast<double>(bytes) / 1e9 / sync_save);
  std::printf("async save    %6.3f s blocked = %5.2f%% of the sync save (target <= 2%%)\n",
              async_blocked, 100.0 * async_blocked / sync_save);
  std::printf("async loop    %+6.3f s against the baseline = %+5.2f%% of the sync save\n", slowdown,
              100.0 * slowdown / sync_save);
  return 0;
}
