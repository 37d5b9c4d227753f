// vigil-train: one data-parallel rank. Launched by vigil-agent with its
// orders in the environment (VIGIL_RANK, VIGIL_WORLD_SIZE, ...; optional
// VIGIL_OPTIMIZER, VIGIL_LR_SCALE, VIGIL_SKIP_BATCHES and VIGIL_SKIP_AT_STEP
// for restart-time changes, VIGIL_BATCH_PER_RANK for a shrunk world). It bootstraps Gloo through
// vigild's store, runs the Trainer (trainer.h), checkpoints every checkpoint.every_steps, reports
// each step to its agent, and exits with a code of common/rank_contract.h
// (the launch environment's names are there too).
// Fault injection (chaos, delivered by the agent as real signals), only in a
// rank launched with VIGIL_CHAOS=1: SIGUSR1 poisons this rank's next
// gradient with a NaN, SIGUSR2 scrambles its next batch's targets, SIGURG
// makes the rank slow (each later step idles three times its own compute
// time: a throttled GPU, a busy host), SIGXFSZ fills its disk for its next
// checkpoint save (every write of that shard fails with ENOSPC; the disk has
// room again once the save is abandoned). A real SIGXFSZ (a write past
// RLIMIT_FSIZE) then fails that write with EFBIG anyway. Any other rank
// keeps the default dispositions, so a stray signal cannot poison a
// production run: SIGUSR1 and SIGUSR2 terminate it (vigild sees a crash),
// SIGURG is ignored, SIGXFSZ terminates it with a core dump.
#include <signal.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <thread>

#include <cblas.h>
#include <gloo/common/error.h>
#include <gloo/rendezvous/prefix_store.h>
#include <omp.h>

#include "checkpoint/checkpoint.h"
#include "checkpoint/fault_storage.h"
#include "common/framed_socket.h"
#include "common/job_spec.h"
#include "common/rank_contract.h"
#include "common/util.h"
#include "worker/trainer/coordinator_store.h"
#include "worker/trainer/data_source.h"
#include "worker/trainer/trainer.h"
#ifdef VIGIL_WITH_CUDA
#include "kernels/cuda/device.h"
#include "worker/trainer/nccl_collectives.h"
#include "worker/trainer/trainer_cuda.h"
#endif

namespace vigil::trainer {
namespace {

using rank_contract::kExitCheckpointCorrupt;
using rank_contract::kExitCollective;
using rank_contract::kExitConfig;
using rank_contract::kExitNonfinite;
using rank_contract::kExitSucceeded;

volatile sig_atomic_t g_inject_nan = 0, g_inject_bad_batch = 0, g_slow = 0, g_disk_full = 0;
void OnSigurg(int) { g_slow = 1; }
void OnSigxfsz(int) { g_disk_full = 1; }
void OnSigusr1(int) { g_inject_nan = 1; }
void OnSigusr2(int) { g_inject_bad_batch = 1; }

struct Orders {
  checkpoint::FillableStorage* disk = nullptr;  // options.storage: chaos can fill it
  int rank = 0, world = 1, local_rank = 0;
  uint64_t generation = 0;
  std::string store_addr, agent_socket, token_file, job_file, resume_from, bind_addr;
  int batch_per_rank = 0;  // a shrunk world's (0: the spec's)
  TrainerOptions options;  // checkpoint directory, restart-time changes (optimizer, LR scale)
};

std::string Env(std::string_view name, const char* fallback = nullptr) {
  const std::string key(name);
  const char* v = std::getenv(key.c_str());
  if (v) return v;
  if (fallback) return fallback;
  throw std::runtime_error("missing environment variable " + key);
}

// Sends rank reports to the agent. A lost agent is not fatal here: the agent
// set PR_SET_PDEATHSIG, so its death takes this process with it.
// It proves the job's token to the agent first, as the agent does to vigild.
class Reporter {
 public:
  explicit Reporter(const Orders& o) : orders_(o) {}
  // Ok without an agent socket (a rank started by hand reports to nobody).
  Status Connect() {
    if (orders_.agent_socket.empty()) return Status::Ok();
    auto token = ReadTokenFile(orders_.token_file);
    if (!token.ok()) return token.status();
    wire::Hello hello;
    hello.set_protocol_version(kProtocolVersion);
    hello.set_role(wire::Hello::RANK_REPORTER);
    hello.set_host("rank-" + std::to_string(orders_.rank));
    hello.set_pid(static_cast<uint32_t>(::getpid()));
    auto s = FramedSocket::ConnectAndHello("unix:" + orders_.agent_socket, hello, token.value(),
                                           std::chrono::seconds(10));
    if (!s.ok()) return s.status();
    sock_ = std::move(s.value());
    return Status::Ok();
  }
  void Send(wire::RankReport r) {
    if (!sock_.is_open()) return;
    r.set_generation(orders_.generation);
    r.set_rank(static_cast<uint32_t>(orders_.rank));
    r.set_at_us(NowMicros());
    wire::Envelope env;
    *env.mutable_rank_report() = std::move(r);
    (void)sock_.Send(env);
  }

 private:
  const Orders& orders_;
  FramedSocket sock_;
};

// Connects to the generation's collectives through vigild's store: a Gloo
// TCP mesh for CPU ranks, an NCCL communicator (GPU = local rank) for CUDA.
class Mesh {
 public:
  Mesh(const Orders& o, const JobSpec& spec) {
    auto token = ReadTokenFile(o.token_file);
    if (!token.ok()) throw std::runtime_error(token.status().ToString());
    auto sock = FramedSocket::ConnectAndHello(o.store_addr, Hello(o), token.value(),
                                              std::chrono::seconds(10));
    if (!sock.ok()) throw gloo::IoException("cannot reach the store: " + sock.status().ToString());
    const auto timeout = std::chrono::milliseconds(spec.limits.rendezvous_timeout_ms);
    store_ = std::make_unique<CoordinatorStore>(std::move(sock.value()), timeout);
    prefix_store_ = std::make_unique<gloo::rendezvous::PrefixStore>(
        "gen-" + std::to_string(o.generation), *store_);
    if (spec.world.device == "cuda") {
#ifdef VIGIL_WITH_CUDA
      // A collective stuck past the timeout (a peer dead or stopped) ends this
      // rank as a collective error, as Gloo's timeout does on CPUs.
      const int rank = o.rank;
      collectives_ = std::make_unique<NcclCollectives>(
          *prefix_store_, "nccl-id", o.rank, o.world, o.local_rank,
          std::chrono::milliseconds(spec.limits.collective_timeout_ms),
          [rank](const std::string& why) {
            auto log = MakeLogger("train." + std::to_string(rank));
            log->error("collective failure: {}", why);
            log->flush();
            std::_Exit(kExitCollective);
          });
#endif
    } else {
      collectives_ = std::make_unique<GlooCollectives>(
          ConnectTcpMesh(*prefix_store_, o.rank, o.world, o.bind_addr,
                         std::chrono::milliseconds(spec.limits.collective_timeout_ms)));
    }
  }
  Collectives* collectives() { return collectives_.get(); }

 private:
  static wire::Hello Hello(const Orders& o) {
    wire::Hello h;
    h.set_protocol_version(kProtocolVersion);
    h.set_role(wire::Hello::STORE_CLIENT);
    h.set_host("rank-" + std::to_string(o.rank));
    h.set_pid(static_cast<uint32_t>(::getpid()));
    return h;
  }

  std::unique_ptr<CoordinatorStore> store_;
  std::unique_ptr<gloo::rendezvous::PrefixStore> prefix_store_;
  std::unique_ptr<Collectives> collectives_;
};

template <class TrainerType>
int Train(const Orders& o, const JobSpec& spec, const DataSource& data, Reporter* reporter) {
  auto log = MakeLogger("train." + std::to_string(o.rank));
  if (o.rank == 0) {
    Status st = checkpoint::RemoveIncomplete(o.options.storage, o.options.checkpoint_dir);
    if (!st.ok()) log->warn("cannot clear incomplete checkpoints: {}", st.ToString());
  }
  // The mesh comes first: the trainer's expert placement depends on the world.
  Mesh mesh(o, spec);
  TrainerType trainer(spec, o.options, data, mesh.collectives(), log);
  if (o.resume_from.empty()) {
    trainer.Initialize();
  } else if (Status st = trainer.Resume(o.resume_from); !st.ok()) {
    log->error("refusing checkpoint: {}", st.ToString());
    wire::RankReport r;
    r.set_kind(wire::RankReport::ERROR);
    r.set_checkpoint_path(o.resume_from);
    if (st.code() == StatusCode::kInvalidArgument) {
      r.set_message("checkpoint does not fit this job: " + st.message());
      reporter->Send(r);
      return kExitConfig;
    }
    r.set_message("corrupt checkpoint: " + st.message());
    reporter->Send(r);
    return kExitCheckpointCorrupt;
  }
  wire::RankReport started;
  started.set_kind(wire::RankReport::STARTED);
  started.set_step(static_cast<uint64_t>(trainer.step()));
  started.set_resumed_from_step(static_cast<uint64_t>(trainer.step()));
  std::string notes;
  for (const auto& n : trainer.resume_notes()) notes += (notes.empty() ? "" : "; ") + n;
  started.set_message(notes);
  reporter->Send(started);
  log->info(
      "rank {}/{} generation {}: training from step {} to {}; {} parameters ({} here), {} "
      "bytes of optimizer state here",
      o.rank, o.world, o.generation, trainer.step(), spec.schedule.steps,
      trainer.model().global_param_count(), trainer.model().params().size(),
      trainer.optimizer().state_bytes());

  const int64_t tokens_per_step =
      static_cast<int64_t>(spec.schedule.batch_per_rank) * spec.model.seq_len * o.world;
  // The step whose save chaos made fail: the disk is full until it is over.
  std::optional<int64_t> full_disk_save;
  auto report_save = [&](const std::optional<SaveOutcome>& out) {
    if (out && full_disk_save == out->step) {
      full_disk_save.reset();
      o.disk->set_full(false);
    }
    if (!out || !out->report) return;
    wire::RankReport c;
    c.set_step(static_cast<uint64_t>(out->step));
    if (out->status.ok()) {
      c.set_kind(wire::RankReport::CHECKPOINT);
      c.set_checkpoint_path(out->dir);
      c.set_checkpoint_bytes(static_cast<uint64_t>(trainer.checkpoint_bytes()));
      c.set_save_seconds(out->seconds);
    } else {
      log->error("{}", out->status.ToString());
      c.set_kind(wire::RankReport::CHECKPOINT_FAILED);
      c.set_message(out->status.message());
    }
    reporter->Send(c);
  };
  auto saving = [&] {
    wire::RankReport r;
    r.set_kind(wire::RankReport::SAVING);
    r.set_step(static_cast<uint64_t>(trainer.step()));
    reporter->Send(r);
  };
  StepStats last;
  while (!trainer.done()) {
    if (g_inject_nan) {
      g_inject_nan = 0;
      log->warn("chaos: poisoning this rank's next gradient with NaN");
      trainer.Inject(InjectedFault::kNanGradient);
    }
    if (g_inject_bad_batch) {
      g_inject_bad_batch = 0;
      log->warn("chaos: scrambling this rank's next batch");
      trainer.Inject(InjectedFault::kBadBatch);
    }
    const auto t0 = std::chrono::steady_clock::now();
    const double in_collectives = mesh.collectives()->seconds_in_collectives();
    last = trainer.Step();
    if (last.nonfinite) {
      char what[160];
      std::snprintf(what, sizeof(what),
                    "non-finite %s at step %lld (loss %g, gradient norm %g): the update was not "
                    "applied",
                    std::isfinite(last.grad_norm) ? "loss" : "gradient norm",
                    static_cast<long long>(trainer.step() + 1), last.loss, last.grad_norm);
      log->error("{}", what);
      wire::RankReport r;
      r.set_kind(wire::RankReport::NONFINITE);
      r.set_step(static_cast<uint64_t>(trainer.step() + 1));
      r.set_loss(last.loss);
      r.set_grad_norm(last.grad_norm);
      r.set_message(what);
      reporter->Send(r);
      return kExitNonfinite;
    }
    double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const double collective_s = mesh.collectives()->seconds_in_collectives() - in_collectives;
    if (g_slow) {
      // Idles outside the collectives, as a slow GPU computes: peers wait for it.
      const double compute = std::max(0.0, dt - collective_s);
      std::this_thread::sleep_for(std::chrono::duration<double>(3.0 * compute));
      dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    }
    wire::RankReport r;
    r.set_kind(wire::RankReport::STEP);
    r.set_step(static_cast<uint64_t>(last.step));
    r.set_loss(last.loss);
    r.set_aux_loss(last.aux_loss);
    r.set_dropped_choices(static_cast<uint32_t>(last.dropped_choices));
    r.set_grad_norm(last.grad_norm);
    r.set_lr(last.lr);
    r.set_step_seconds(dt);
    if (collective_s > 0) r.set_compute_seconds(std::max(0.0, dt - collective_s));
    r.set_tokens_per_second(static_cast<double>(tokens_per_step) / dt);
    r.set_tokens_seen(static_cast<uint64_t>(trainer.tokens_seen()));
    reporter->Send(r);
    // A save in flight completes when every rank's shard is written; a new
    // one waits for it (one in flight at most).
    const bool save_now = trainer.step() % spec.checkpoint.every_steps == 0 || trainer.done();
    if (save_now) saving();  // a blocking wait or write may follow
    report_save(trainer.FinishSave(/*wait=*/save_now));
    if (save_now && g_disk_full) {
      g_disk_full = 0;
      log->warn("chaos: the disk is full for the save of step {}", trainer.step());
      full_disk_save = trainer.step();
      o.disk->set_full(true);
    }
    if (save_now) trainer.BeginSave();
  }
  if (trainer.save_in_flight()) saving();
  report_save(trainer.FinishSave(/*wait=*/true));
  const std::string digest = trainer.ParamsDigest();
  wire::RankReport done;
  done.set_kind(wire::RankReport::FINISHED);
  done.set_step(static_cast<uint64_t>(trainer.step()));
  done.set_loss(last.loss);
  done.set_params_digest(digest);
  done.set_tokens_seen(static_cast<uint64_t>(trainer.tokens_seen()));
  reporter->Send(done);
  log->info("finished at step {} loss {:.4f} params_digest {}", trainer.step(), last.loss, digest);
  return kExitSucceeded;
}

}  // namespace
}  // namespace vigil::trainer

int main() {
  using namespace vigil;
  using namespace vigil::trainer;
  using namespace vigil::rank_contract;
  // Ranks are the parallelism on a host: one BLAS and one OpenMP thread each
  // (results do not depend on it; the kernels are thread-count invariant).
  openblas_set_num_threads(1);
  omp_set_num_threads(1);
  // A peer that dies mid-collective must fail this rank's write with EPIPE
  // (a collective failure, exit 3: collateral), not kill it with SIGPIPE,
  // which vigild would count as this rank's own crash.
  ::signal(SIGPIPE, SIG_IGN);
  if (Env(kEnvChaos, "") == "1") {
    ::signal(SIGUSR1, OnSigusr1);
    ::signal(SIGUSR2, OnSigusr2);
    ::signal(SIGURG, OnSigurg);
    ::signal(SIGXFSZ, OnSigxfsz);
  }
  checkpoint::FillableStorage disk;
  Orders o;
  o.disk = &disk;
  o.options.storage = &disk;
  try {
    o.rank = std::stoi(Env(kEnvRank));
    o.world = std::stoi(Env(kEnvWorldSize));
    o.local_rank = std::stoi(Env(kEnvLocalRank, "0"));
    o.generation = std::stoull(Env(kEnvGeneration, "0"));
    o.store_addr = Env(kEnvStoreAddr);
    o.agent_socket = Env(kEnvAgentSocket, "");
    o.token_file = Env(kEnvTokenFile);
    o.job_file = Env(kEnvJobFile);
    o.options.checkpoint_dir = Env(kEnvCheckpointDir);
    o.options.optimizer = Env(kEnvOptimizer, "");
    const std::string scale = Env(kEnvLrScale, "");
    if (!scale.empty()) {
      o.options.lr_scale = std::stod(scale);
      if (!(o.options.lr_scale > 0))
        throw std::runtime_error(std::string(kEnvLrScale) + " must be positive");
    }
    if (!o.options.optimizer.empty() && o.options.optimizer != "adamw" &&
        o.options.optimizer != "sgd") {
      throw std::runtime_error(std::string(kEnvOptimizer) + " must be adamw or sgd");
    }
    o.resume_from = Env(kEnvResumeFrom, "");
    o.options.skip_batches = std::stoll(Env(kEnvSkipBatches, "0"));
    o.options.skip_at_step = std::stoll(Env(kEnvSkipAtStep, "0"));
    if (o.options.skip_batches < 0 || o.options.skip_at_step < 0)
      throw std::runtime_error(std::string(kEnvSkipBatches) + " and " +
                               std::string(kEnvSkipAtStep) + " must be >= 0");
    o.bind_addr = Env(kEnvBindAddr, "127.0.0.1");
    o.batch_per_rank = std::stoi(Env(kEnvBatchPerRank, "0"));
    if (o.batch_per_rank < 0)
      throw std::runtime_error(std::string(kEnvBatchPerRank) + " must be >= 0");
  } catch (const std::exception& e) {
    std::fprintf(stderr, "vigil-train: %s (vigil-train is started by vigil-agent)\n", e.what());
    return kExitConfig;
  }
  auto spec = LoadJobSpec(o.job_file);
  if (!spec.ok()) {
    std::fprintf(stderr, "vigil-train: %s\n", spec.status().ToString().c_str());
    return kExitConfig;
  }
  o.options.async_save = spec->checkpoint.async;
  if (o.batch_per_rank > 0) {
    // A shrunk world: fewer hosts, more sequences per rank, the same global
    // batch (which a checkpoint's configuration hash covers).
    const int64_t global = spec->global_batch();
    spec->world.hosts = o.world / spec->world.ranks_per_host;
    spec->schedule.batch_per_rank = o.batch_per_rank;
    if (spec->global_batch() != global || o.world % spec->world.ranks_per_host != 0) {
      std::fprintf(stderr,
                   "vigil-train: %d ranks x %d sequences do not keep the global batch of %lld\n",
                   o.world, o.batch_per_rank, static_cast<long long>(global));
      return kExitConfig;
    }
  }
  auto data = MakeDataSource(spec.value());
  if (!data.ok()) {
    std::fprintf(stderr, "vigil-train: %s\n", data.status().ToString().c_str());
    return kExitConfig;
  }
  Reporter reporter(o);
  if (Status st = reporter.Connect(); !st.ok()) {
    std::fprintf(stderr, "vigil-train: cannot report to the agent at %s: %s\n",
                 o.agent_socket.c_str(), st.ToString().c_str());
    return rank_contract::kExitError;
  }
  try {
    if (spec->world.device == "cuda") {
#ifdef VIGIL_WITH_CUDA
      // One GPU per rank, chosen by local rank; a host without one is a
      // configuration error (exit 2 fails the job rather than restarting it).
      std::string why;
      if (!kernels::cuda::DeviceAvailable(&why)) {
        std::fprintf(stderr, "vigil-train: world.device is 'cuda' but %s\n", why.c_str());
        return kExitConfig;
      }
      return Train<CudaTrainer>(o, spec.value(), *data.value(), &reporter);
#else
      // The CUDA build of this program sits beside it; it takes over this process.
      std::error_code ec;
      const auto self = std::filesystem::read_symlink("/proc/self/exe", ec);
      const std::string cuda_binary = (self.parent_path() / "vigil-train-cuda").string();
      if (!ec && ::access(cuda_binary.c_str(), X_OK) == 0) {
        char* args[] = {const_cast<char*>(cuda_binary.c_str()), nullptr};
        ::execv(cuda_binary.c_str(), args);
      }
      std::fprintf(stderr,
                   "vigil-train: world.device is 'cuda' but %s is missing (built "
                   "without CUDA or NCCL)\n",
                   cuda_binary.c_str());
      return kExitConfig;
#endif
    }
    return Train<Trainer>(o, spec.value(), *data.value(), &reporter);
  } catch (const std::invalid_argument& e) {
    // The model cannot be placed on this world (checked by the spec too).
    std::fprintf(stderr, "vigil-train: %s\n", e.what());
    return kExitConfig;
  } catch (const std::exception& e) {
    // Gloo and the store throw on peer loss and timeouts: report, then exit.
    MakeLogger("train." + std::to_string(o.rank))->error("collective failure: {}", e.what());
    wire::RankReport r;
    r.set_kind(wire::RankReport::ERROR);
    r.set_message(std::string("collective failure: ") + e.what());
    reporter.Send(r);
    return kExitCollective;
  }
}
