// vigil-train: one data-parallel rank. Launched by vigil-agent with its
// orders in the environment (VIGIL_RANK, VIGIL_WORLD_SIZE, ...). It
// bootstraps Gloo through vigild's store, trains, checkpoints every
// checkpoint.every_steps, reports each step to its agent, and exits:
//   0 done · 2 bad configuration · 3 collective or store failure ·
//   4 the checkpoint it was told to resume from failed verification.
#include <sys/prctl.h>
#include <unistd.h>
#include <xxhash.h>

#include <chrono>
#include <cinttypes>
#include <cmath>
#include <cstdlib>
#include <memory>
#include <string>

#include <cblas.h>
#include <gloo/allgather.h>
#include <gloo/allreduce.h>
#include <gloo/common/error.h>
#include <gloo/math.h>
#include <gloo/rendezvous/context.h>
#include <gloo/rendezvous/prefix_store.h>
#include <gloo/transport/tcp/device.h>
#include <omp.h>

#include "checkpoint/checkpoint.h"
#include "common/framed_socket.h"
#include "common/job_spec.h"
#include "common/util.h"
#include "kernels/cpu/optimizer.h"
#include "worker/trainer/coordinator_store.h"
#include "worker/trainer/data_source.h"
#include "worker/trainer/model.h"

namespace vigil::trainer {
namespace {

constexpr int kExitConfig = 2;
constexpr int kExitCollective = 3;
constexpr int kExitBadCheckpoint = 4;

struct Orders {
  int rank = 0, world = 1;
  uint64_t generation = 0;
  std::string store_addr, agent_socket, token_file, job_file, checkpoint_dir, resume_from,
      bind_addr;
};

std::string Env(const char* name, const char* fallback = nullptr) {
  const char* v = std::getenv(name);
  if (v) return v;
  if (fallback) return fallback;
  throw std::runtime_error(std::string("missing environment variable ") + name);
}

// Sends rank reports to the agent. A lost agent is not fatal here: the agent
// set PR_SET_PDEATHSIG, so its death takes this process with it.
class Reporter {
 public:
  Reporter(const Orders& o) : orders_(o) {
    if (o.agent_socket.empty()) return;
    auto s = FramedSocket::Connect("unix:" + o.agent_socket, std::chrono::seconds(10));
    if (s.ok()) sock_ = std::move(s.value());
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

std::string Hex64(uint64_t v) {
  char buf[17];
  std::snprintf(buf, sizeof(buf), "%016" PRIx64, v);
  return buf;
}

class Trainer {
 public:
  Trainer(const Orders& orders, const JobSpec& spec, const DataSource& data, Reporter* reporter)
      : o_(orders),
        spec_(spec),
        reporter_(reporter),
        log_(MakeLogger("train." + std::to_string(orders.rank))),
        model_(ModelConfig{spec.model.vocab, spec.model.seq_len, spec.model.d_model,
                           spec.model.layers, spec.model.heads, spec.model.activation == "relu"}),
        data_(data) {}

  int Run() {
    const int64_t n = static_cast<int64_t>(model_.params().size());
    m_.assign(n, 0.0f);
    v_.assign(n, 0.0f);
    if (o_.rank == 0) {
      Status st = checkpoint::RemoveIncomplete(o_.checkpoint_dir);
      if (!st.ok()) log_->warn("cannot clear incomplete checkpoints: {}", st.ToString());
    }
    if (o_.resume_from.empty()) {
      model_.InitParameters(spec_.data.seed, static_cast<float>(spec_.model.init_std));
    } else if (int rc = Resume(); rc != 0) {
      return rc;
    }
    wire::RankReport started;
    started.set_kind(wire::RankReport::STARTED);
    started.set_step(static_cast<uint64_t>(step_));
    started.set_resumed_from_step(static_cast<uint64_t>(step_));
    reporter_->Send(started);

    Connect();
    log_->info("rank {}/{} generation {} connected; training from step {} to {}", o_.rank, o_.world,
               o_.generation, step_, spec_.schedule.steps);
    const int B = spec_.schedule.batch_per_rank, T = spec_.model.seq_len;
    const float inv_world = 1.0f / static_cast<float>(o_.world);
    float loss_buf[1];
    while (step_ < spec_.schedule.steps) {
      const auto t0 = std::chrono::steady_clock::now();
      FillBatch(data_, static_cast<uint64_t>(step_), o_.rank, o_.world, B, T, &inputs_, &targets_);
      loss_buf[0] = model_.ForwardBackward(inputs_.data(), targets_.data(), B, T);
      AllreduceSum(model_.grads().data(), model_.grads().size());
      AllreduceSum(loss_buf, 1);
      float* g = model_.grads().data();
      for (int64_t i = 0; i < n; ++i) g[i] *= inv_world;
      const float loss = loss_buf[0] * inv_world;
      const float gnorm =
          kernels::cpu::ClipGradNorm(g, n, static_cast<float>(spec_.optimizer.grad_clip));
      const float lr = LearningRate(step_);
      ApplyUpdate(lr);
      ++step_;
      tokens_seen_ += static_cast<int64_t>(B) * T * o_.world;
      const double dt =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      wire::RankReport r;
      r.set_kind(wire::RankReport::STEP);
      r.set_step(static_cast<uint64_t>(step_));
      r.set_loss(loss);
      r.set_grad_norm(gnorm);
      r.set_lr(lr);
      r.set_step_seconds(dt);
      r.set_tokens_per_second(static_cast<double>(B) * T * o_.world / dt);
      r.set_tokens_seen(static_cast<uint64_t>(tokens_seen_));
      reporter_->Send(r);
      if (step_ % spec_.checkpoint.every_steps == 0 || step_ == spec_.schedule.steps) Save();
      last_loss_ = loss;
    }
    const auto& p = model_.params();
    const std::string digest = Hex64(XXH3_64bits(p.data(), p.size() * sizeof(float)));
    wire::RankReport done;
    done.set_kind(wire::RankReport::FINISHED);
    done.set_step(static_cast<uint64_t>(step_));
    done.set_loss(last_loss_);
    done.set_params_digest(digest);
    done.set_tokens_seen(static_cast<uint64_t>(tokens_seen_));
    reporter_->Send(done);
    log_->info("finished at step {} loss {:.4f} params_digest {}", step_, last_loss_, digest);
    return 0;
  }

 private:
  float LearningRate(int64_t step) const {
    const double lr = spec_.optimizer.lr;
    const int w = spec_.schedule.warmup_steps;
    if (w > 0 && step < w) return static_cast<float>(lr * static_cast<double>(step + 1) / w);
    return static_cast<float>(lr);
  }

  void ApplyUpdate(float lr) {
    const auto& opt = spec_.optimizer;
    const long n = static_cast<long>(model_.params().size());
    if (opt.kind == "sgd") {
      kernels::cpu::SgdUpdate(model_.params().data(), model_.grads().data(), n, lr,
                              static_cast<float>(opt.weight_decay));
    } else {
      kernels::cpu::AdamWUpdate(model_.params().data(), model_.grads().data(), m_.data(), v_.data(),
                                n, lr, static_cast<float>(opt.beta1), static_cast<float>(opt.beta2),
                                static_cast<float>(opt.eps), static_cast<float>(opt.weight_decay),
                                step_ + 1);
    }
  }

  int Resume() {
    auto loaded = checkpoint::LoadCheckpoint(o_.resume_from);
    if (!loaded.ok()) {
      log_->error("refusing checkpoint: {}", loaded.status().ToString());
      wire::RankReport r;
      r.set_kind(wire::RankReport::ERROR);
      r.set_checkpoint_path(o_.resume_from);
      r.set_message("corrupt checkpoint: " + loaded.status().message());
      reporter_->Send(r);
      return kExitBadCheckpoint;
    }
    const auto& m = loaded->manifest;
    const int64_t n = static_cast<int64_t>(model_.params().size());
    if (m.config_hash != spec_.ConfigHash() || m.param_count != n || m.sections.size() != 3) {
      log_->error("checkpoint {} does not match this job (config {} vs {})", o_.resume_from,
                  m.config_hash, spec_.ConfigHash());
      return kExitConfig;
    }
    const float* s = loaded->state.data();
    std::copy(s, s + n, model_.params().begin());
    std::copy(s + n, s + 2 * n, m_.begin());
    std::copy(s + 2 * n, s + 3 * n, v_.begin());
    step_ = m.step;
    tokens_seen_ = m.tokens_seen;
    log_->info("resumed from {} at step {} ({} bytes verified)", o_.resume_from, step_,
               loaded->bytes);
    return 0;
  }

  void Connect() {
    auto sock = FramedSocket::ConnectAndHello(o_.store_addr, Hello(), std::chrono::seconds(10));
    if (!sock.ok()) throw gloo::IoException("cannot reach the store: " + sock.status().ToString());
    const auto timeout = std::chrono::milliseconds(spec_.limits.rendezvous_timeout_ms);
    store_ = std::make_unique<CoordinatorStore>(std::move(sock.value()), timeout);
    prefix_store_ = std::make_unique<gloo::rendezvous::PrefixStore>(
        "gen-" + std::to_string(o_.generation), *store_);
    gloo::transport::tcp::attr attr;
    attr.hostname = o_.bind_addr;
    device_ = gloo::transport::tcp::CreateDevice(attr);
    context_ = std::make_shared<gloo::rendezvous::Context>(o_.rank, o_.world);
    context_->setTimeout(std::chrono::milliseconds(spec_.limits.collective_timeout_ms));
    context_->connectFullMesh(*prefix_store_, device_);
  }

  wire::Hello Hello() const {
    wire::Hello h;
    h.set_protocol_version(kProtocolVersion);
    auto token = ReadTokenFile(o_.token_file);
    if (!token.ok()) throw std::runtime_error(token.status().ToString());
    h.set_auth_token(token.value());
    h.set_role(wire::Hello::STORE_CLIENT);
    h.set_host("rank-" + std::to_string(o_.rank));
    h.set_pid(static_cast<uint32_t>(::getpid()));
    return h;
  }

  void AllreduceSum(float* data, size_t n) {
    if (o_.world == 1) return;
    gloo::AllreduceOptions opts(context_);
    opts.setOutput(data, n);
    opts.setReduceFunction(
        static_cast<void (*)(void*, const void*, const void*, size_t)>(&gloo::sum<float>));
    gloo::allreduce(opts);
  }

  // Shard write, exchange of (ok, checksum), commit by rank 0. A failed write
  // on any rank abandons this save on every rank and training goes on.
  void Save() {
    const int64_t n = static_cast<int64_t>(model_.params().size());
    state_.resize(3 * n);
    std::copy(model_.params().begin(), model_.params().end(), state_.begin());
    std::copy(m_.begin(), m_.end(), state_.begin() + n);
    std::copy(v_.begin(), v_.end(), state_.begin() + 2 * n);
    int64_t begin = 0, end = 0;
    checkpoint::ShardRange(3 * n, o_.rank, o_.world, &begin, &end);
    const std::string tmp = o_.checkpoint_dir + "/" + checkpoint::StepDirName(step_) + ".tmp";
    auto shard = checkpoint::WriteShard(tmp, o_.rank, state_.data(), begin, end);
    uint64_t mine[2] = {shard.ok() ? 1u : 0u, shard.ok() ? shard->xxh3 : 0};
    if (!shard.ok()) log_->error("checkpoint shard write failed: {}", shard.status().ToString());
    std::vector<uint64_t> all(2 * o_.world);
    if (o_.world > 1) {
      gloo::AllgatherOptions opts(context_);
      opts.setInput(mine, 2);
      opts.setOutput(all.data(), all.size());
      gloo::allgather(opts);
    } else {
      all[0] = mine[0];
      all[1] = mine[1];
    }
    if (o_.rank != 0) return;
    checkpoint::Manifest m;
    m.step = step_;
    m.tokens_seen = tokens_seen_;
    m.data_position = step_ * static_cast<int64_t>(spec_.schedule.batch_per_rank) * o_.world;
    m.seed = spec_.data.seed;
    m.optimizer = spec_.optimizer.kind;
    m.config_hash = spec_.ConfigHash();
    m.world_size = o_.world;
    m.param_count = n;
    m.sections = {"params", "adam_m", "adam_v"};
    for (const auto& t : model_.tensors()) m.tensors.push_back({t.name, t.shape, t.offset});
    for (int r = 0; r < o_.world; ++r) {
      if (all[2 * r] != 1) {
        log_->error("checkpoint at step {} abandoned: rank {} failed its shard", step_, r);
        return;
      }
      checkpoint::ShardEntry e;
      e.rank = r;
      e.file = "shard-" + std::to_string(r) + ".bin";
      checkpoint::ShardRange(3 * n, r, o_.world, &e.begin, &e.end);
      e.xxh3 = all[2 * r + 1];
      m.shards.push_back(e);
    }
    auto dir = checkpoint::CommitCheckpoint(o_.checkpoint_dir, m);
    if (!dir.ok()) {
      log_->error("checkpoint commit failed: {}", dir.status().ToString());
      return;
    }
    wire::RankReport r;
    r.set_kind(wire::RankReport::CHECKPOINT);
    r.set_step(static_cast<uint64_t>(step_));
    r.set_checkpoint_path(dir.value());
    r.set_checkpoint_bytes(static_cast<uint64_t>(3 * n * sizeof(float)));
    reporter_->Send(r);
  }

  const Orders& o_;
  const JobSpec& spec_;
  Reporter* reporter_;
  std::shared_ptr<spdlog::logger> log_;
  DecoderModel model_;
  const DataSource& data_;
  std::vector<float> m_, v_, state_;
  std::vector<int32_t> inputs_, targets_;
  int64_t step_ = 0, tokens_seen_ = 0;
  float last_loss_ = 0.0f;
  std::unique_ptr<CoordinatorStore> store_;
  std::unique_ptr<gloo::rendezvous::PrefixStore> prefix_store_;
  std::shared_ptr<gloo::transport::Device> device_;
  std::shared_ptr<gloo::rendezvous::Context> context_;
};

}  // namespace
}  // namespace vigil::trainer

int main() {
  using namespace vigil;
  using namespace vigil::trainer;
  // Ranks are the parallelism on a host: one BLAS and one OpenMP thread each
  // (results do not depend on it; the kernels are thread-count invariant).
  openblas_set_num_threads(1);
  omp_set_num_threads(1);
  Orders o;
  try {
    o.rank = std::stoi(Env("VIGIL_RANK"));
    o.world = std::stoi(Env("VIGIL_WORLD_SIZE"));
    o.generation = std::stoull(Env("VIGIL_GENERATION", "0"));
    o.store_addr = Env("VIGIL_STORE_ADDR");
    o.agent_socket = Env("VIGIL_AGENT_SOCKET", "");
    o.token_file = Env("VIGIL_TOKEN_FILE");
    o.job_file = Env("VIGIL_JOB_FILE");
    o.checkpoint_dir = Env("VIGIL_CHECKPOINT_DIR");
    o.resume_from = Env("VIGIL_RESUME_FROM", "");
    o.bind_addr = Env("VIGIL_BIND_ADDR", "127.0.0.1");
  } catch (const std::exception& e) {
    std::fprintf(stderr, "vigil-train: %s (vigil-train is started by vigil-agent)\n", e.what());
    return kExitConfig;
  }
  auto spec = LoadJobSpec(o.job_file);
  if (!spec.ok()) {
    std::fprintf(stderr, "vigil-train: %s\n", spec.status().ToString().c_str());
    return kExitConfig;
  }
  auto data = MakeDataSource(spec.value());
  if (!data.ok()) {
    std::fprintf(stderr, "vigil-train: %s\n", data.status().ToString().c_str());
    return kExitConfig;
  }
  Reporter reporter(o);
  try {
    Trainer trainer(o, spec.value(), *data.value(), &reporter);
    return trainer.Run();
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
