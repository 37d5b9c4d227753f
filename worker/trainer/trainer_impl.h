// Template definitions of TrainerT; included by the translation units that
// instantiate it (trainer.cc for the CPU, trainer_cuda.cc for CUDA).
#pragma once

#include "worker/trainer/trainer.h"

#include <xxhash.h>

#include <spdlog/spdlog.h>
#include <algorithm>
#include <chrono>
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <limits>
#include <stdexcept>
#include <type_traits>

#include "checkpoint/checkpoint.h"
#include "checkpoint/layout.h"

namespace vigil::trainer {
namespace trainer_detail {

inline std::string Hex64(uint64_t v) {
  char buf[17];
  std::snprintf(buf, sizeof(buf), "%016" PRIx64, v);
  return buf;
}

template <class K>
ParamLayout LayoutOf(const DecoderModelT<K>& m) {
  ParamLayout l;
  l.total = static_cast<int64_t>(m.params().size());
  l.replicated = m.replicated_count();
  l.own_global_begin = m.GlobalIndex(l.replicated);
  l.global_total = m.global_param_count();
  return l;
}

inline OptimizerHyper HyperOf(const OptimizerSpec& o) {
  OptimizerHyper h;
  h.beta1 = static_cast<float>(o.beta1);
  h.beta2 = static_cast<float>(o.beta2);
  h.eps = static_cast<float>(o.eps);
  h.weight_decay = static_cast<float>(o.weight_decay);
  h.grad_clip = static_cast<float>(o.grad_clip);
  return h;
}

}  // namespace trainer_detail

template <class K>
TrainerT<K>::TrainerT(const JobSpec& spec, const TrainerOptions& options, const DataSource& data,
                      Collectives* coll, std::shared_ptr<spdlog::logger> log)
    : spec_(spec),
      options_(options),
      data_(data),
      coll_(coll),
      log_(std::move(log)),
      model_(ModelConfigFor(spec), UsesExpertParallelism(spec, coll->world()) ? coll : nullptr) {
  if (options_.optimizer.empty()) options_.optimizer = spec.optimizer.kind;
  if (!(options_.lr_scale > 0)) {
    inherit_lr_scale_ = true;
    options_.lr_scale = 1.0;
  }
  opt_ = std::make_unique<ShardedOptimizerT<K>>(trainer_detail::LayoutOf(model_), coll_,
                                                options_.optimizer, spec.optimizer.zero,
                                                trainer_detail::HyperOf(spec.optimizer));
  state_layout_.dense_params = model_.dense_count();
  state_layout_.experts = spec.model.moe.experts;
  state_layout_.params_per_expert = model_.params_per_expert();
  state_layout_.expert_placement = spec.model.moe.placement;
  state_layout_.device = spec.world.device;
  for (const auto& t : model_.GlobalTensors()) tensors_.push_back({t.name, t.shape, t.offset});
  std::sort(tensors_.begin(), tensors_.end(),
            [](const auto& a, const auto& b) { return a.offset < b.offset; });
  // The optimizer's ownership and the checkpoint's placement rule must agree,
  // or a resharded checkpoint would not be what this world writes.
  const auto mine = opt_->OwnedRanges();
  const auto rule = checkpoint::OwnedRanges(state_layout_, coll_->rank(), coll_->world());
  bool same = mine.size() == rule.size();
  for (size_t i = 0; same && i < mine.size(); ++i)
    same = mine[i].begin == rule[i].begin && mine[i].end == rule[i].end;
  if (!same)
    throw std::logic_error("the optimizer's shard differs from checkpoint/layout.h's rule");
}

template <class K>
void TrainerT<K>::Initialize() {
  model_.InitParameters(spec_.data.seed, static_cast<float>(spec_.model.init_std));
  step_ = 0;
  data_batch_ = 0;
  tokens_seen_ = 0;
}

template <class K>
Status TrainerT<K>::ReadState(checkpoint::CheckpointReader* reader) {
  const auto& m = reader->manifest();
  // Parameters: the replicated region, then this rank's experts, straight
  // into place on the CPU, through host staging elsewhere.
  const bool host = std::is_same_v<K, kernels::CpuKernels>;
  auto read = [&](int section, int64_t begin, int64_t end, float* dst) -> Status {
    if (host) return reader->Read(section, begin, end, dst);
    staging_.resize(static_cast<size_t>(end - begin));
    VIGIL_RETURN_IF_ERROR(reader->Read(section, begin, end, staging_.data()));
    K::FromHost(dst, staging_.data(), staging_.size());
    return Status::Ok();
  };
  const int pi = m.FindSection("params");
  if (pi < 0) return Status::Corruption(reader->dir() + ": no params section");
  float* params = model_.params().data();
  const int64_t R = model_.replicated_count(), total = static_cast<int64_t>(model_.params().size());
  VIGIL_RETURN_IF_ERROR(read(pi, 0, R, params));
  const int64_t g = model_.GlobalIndex(R);
  VIGIL_RETURN_IF_ERROR(read(pi, g, g + (total - R), params + R));

  const int mi = m.FindSection("adam_m"), vi = m.FindSection("adam_v");
  if (!opt_->has_moments() || mi < 0 || vi < 0) {
    opt_->LoadMoments(nullptr, nullptr, 0);
    return Status::Ok();
  }
  int64_t n = 0;
  for (const auto& r : opt_->MomentRanges()) n += r.size();
  std::vector<float> mv(static_cast<size_t>(2 * n));
  int64_t at = 0;
  for (const auto& r : opt_->MomentRanges()) {
    VIGIL_RETURN_IF_ERROR(reader->Read(mi, r.begin, r.end, mv.data() + at));
    VIGIL_RETURN_IF_ERROR(reader->Read(vi, r.begin, r.end, mv.data() + n + at));
    at += r.size();
  }
  opt_->LoadMoments(mv.data(), mv.data() + n, m.optimizer_step);
  return Status::Ok();
}

template <class K>
Status TrainerT<K>::Resume(const std::string& dir) {
  Status st;
  auto reader = checkpoint::CheckpointReader::Open(options_.storage, dir);
  if (!reader.ok()) st = reader.status();
  if (st.ok()) {
    const auto& m = reader.value()->manifest();
    if (m.config_hash != spec_.ConfigHash() || m.param_count != model_.global_param_count()) {
      st = Status::InvalidArgument(dir +
                                   " belongs to another model, data order or global batch "
                                   "(config " +
                                   m.config_hash + ", this job " + spec_.ConfigHash() + ")");
    }
  }
  if (st.ok()) st = ReadState(reader.value().get());
  // All ranks or none: a rank whose part failed verification takes the rest with it.
  const uint8_t mine = st.ok() ? 0 : st.code() == StatusCode::kInvalidArgument ? 1 : 2;
  std::vector<uint8_t> all(static_cast<size_t>(coll_->world()));
  coll_->AllgatherBytes(&mine, 1, all.data());
  for (int r = 0; st.ok() && r < coll_->world(); ++r) {
    if (all[r] == 1)
      st = Status::InvalidArgument(dir + " does not fit this job (rank " + std::to_string(r) + ")");
    if (all[r] == 2)
      st = Status::Corruption(dir + ": rank " + std::to_string(r) + " could not verify its part");
  }
  if (!st.ok()) return st;

  const auto& m = reader.value()->manifest();
  if (opt_->has_moments() && m.FindSection("adam_m") >= 0) {
    // Moments and their step count came with the state.
  } else if (m.optimizer != opt_->kind()) {
    notes_.push_back("optimizer switched from " + m.optimizer + " to " + opt_->kind() +
                     " at step " + std::to_string(m.step) +
                     (opt_->has_moments() ? ": moments start from zero"
                                          : ": the checkpoint's moments are dropped"));
  }
  if (m.world_size != coll_->world()) {
    notes_.push_back("resharded from " + std::to_string(m.world_size) + " to " +
                     std::to_string(coll_->world()) + " ranks at step " + std::to_string(m.step));
  }
  if (inherit_lr_scale_) {
    options_.lr_scale = m.lr_scale;
  } else if (m.lr_scale != options_.lr_scale) {
    char buf[96];
    std::snprintf(buf, sizeof(buf), "learning rate scale %.6g (was %.6g) from step %lld",
                  options_.lr_scale, m.lr_scale, static_cast<long long>(m.step));
    notes_.push_back(buf);
  }
  for (const auto& n : notes_) log_->warn("{}", n);
  step_ = m.step;
  tokens_seen_ = m.tokens_seen;
  if (m.data_loader.samples_per_step != spec_.global_batch() ||
      m.data_loader.next_sample % spec_.global_batch() != 0 ||
      m.data_loader.next_sample / spec_.global_batch() < m.step) {
    return Status::Corruption(dir + ": its data-loader state (next sample " +
                              std::to_string(m.data_loader.next_sample) + ", " +
                              std::to_string(m.data_loader.samples_per_step) +
                              " per step) does not fit step " + std::to_string(m.step));
  }
  data_batch_ = m.data_loader.next_sample / spec_.global_batch();
  if (data_batch_ != step_) {
    notes_.push_back(std::to_string(data_batch_ - step_) + " batches of data skipped before step " +
                     std::to_string(step_));
  }
  log_->info("resumed from {} at step {} ({} bytes read and verified here)", dir, step_,
             reader.value()->bytes_read());
  return Status::Ok();
}

template <class K>
float TrainerT<K>::LearningRate(int64_t step) const {
  const double lr = spec_.optimizer.lr * options_.lr_scale;
  const int w = spec_.schedule.warmup_steps;
  if (w > 0 && step < w) return static_cast<float>(lr * static_cast<double>(step + 1) / w);
  return static_cast<float>(lr);
}

template <class K>
StepStats TrainerT<K>::Step() {
  const int B = spec_.schedule.batch_per_rank, T = spec_.model.seq_len;
  const int W = coll_->world(), rank = coll_->rank();
  if (options_.skip_batches > 0 && step_ == options_.skip_at_step) {
    log_->warn("skipping {} batches of data at step {} (batches {} to {})", options_.skip_batches,
               step_, data_batch_, data_batch_ + options_.skip_batches - 1);
    data_batch_ += options_.skip_batches;
    options_.skip_batches = 0;
  }
  FillBatch(data_, static_cast<uint64_t>(data_batch_), rank, W, B, T, &inputs_, &targets_);
  bool poison = false;
  for (InjectedFault f : injected_) {
    if (f == InjectedFault::kBadBatch) {
      // A deterministic scramble: targets no model could predict.
      for (size_t i = 0; i < targets_.size(); ++i)
        targets_[i] = static_cast<int32_t>((static_cast<int64_t>(targets_[i]) * 7 + 13 + i) %
                                           spec_.model.vocab);
    }
    if (f == InjectedFault::kNanGradient) poison = true;
  }
  injected_.clear();
  const float mine[2] = {model_.ForwardBackward(inputs_.data(), targets_.data(), B, T),
                         model_.aux_loss()};
  if (poison) {
    const float nan = std::numeric_limits<float>::quiet_NaN();
    K::FromHost(model_.grads().data(), &nan, 1);
  }
  StepStats s;
  s.dropped_choices = model_.dropped_choices();
  s.lr = LearningRate(step_);
  // A save in flight has its own copy of the state before the optimizer changes it.
  if (writer_ && writer_->busy()) {
    ScopedSeconds timer(&save_stall_seconds_);
    writer_->WaitSnapshot();
  }
  s.grad_norm = opt_->Step(model_.params().data(), model_.grads().data(), s.lr);
  // The mean over ranks, added in rank order (host values whatever K is).
  std::vector<float> all(2 * W);
  coll_->AllgatherBytes(mine, sizeof(mine), all.data());
  float loss = 0.0f, aux = 0.0f;
  for (int r = 0; r < W; ++r) {
    loss += all[2 * r];
    aux += all[2 * r + 1];
  }
  s.loss = loss / static_cast<float>(W);
  s.aux_loss = aux / static_cast<float>(W);
  if (!std::isfinite(s.grad_norm) || !std::isfinite(s.loss)) {
    s.nonfinite = true;
    s.step = step_;
    return s;
  }
  ++step_;
  ++data_batch_;
  tokens_seen_ += static_cast<int64_t>(B) * T * W;
  s.step = step_;
  return s;
}

template <class K>
checkpoint::Manifest TrainerT<K>::ManifestHeader() const {
  checkpoint::Manifest m;
  const int64_t G = static_cast<int64_t>(spec_.schedule.batch_per_rank) * coll_->world();
  m.step = step_;
  m.tokens_seen = tokens_seen_;
  m.data_loader = {spec_.data.seed, data_batch_ * G, G};
  m.rng_seed = spec_.data.seed;
  m.optimizer = opt_->kind();
  m.optimizer_step = opt_->has_moments() ? opt_->step() : 0;
  m.lr_scale = options_.lr_scale;
  m.config_hash = spec_.ConfigHash();
  m.config_json = spec_.ConfigJson();
  m.world_size = coll_->world();
  m.layout = state_layout_;
  m.param_count = model_.global_param_count();
  m.sections = opt_->Sections();
  return m;
}

template <class K>
void TrainerT<K>::BeginSave() {
  ScopedSeconds timer(&save_stall_seconds_);
  if (pending_save_) throw std::logic_error("BeginSave with a save in flight");
  PendingSave p;
  p.began = std::chrono::steady_clock::now();
  p.header = ManifestHeader();
  p.tmp_dir = options_.checkpoint_dir + "/" + checkpoint::StepDirName(step_) + ".tmp";
  const std::string path = p.tmp_dir + "/" + checkpoint::ShardFileName(coll_->rank());
  auto plan = checkpoint::PlanShard(tensors_, static_cast<int>(p.header.sections.size()),
                                    opt_->OwnedRanges());
  auto pieces = opt_->Pieces(model_.params().data(), &save_staging_);
  if (options_.async_save) {
    if (!writer_) writer_ = std::make_unique<checkpoint::AsyncShardWriter>();
    writer_->Start(options_.storage, path, std::move(plan), std::move(pieces));
  } else {
    p.sums = checkpoint::WriteShard(options_.storage, path, plan, pieces);
  }
  pending_save_ = std::move(p);
}

template <class K>
std::optional<SaveOutcome> TrainerT<K>::FinishSave(bool wait) {
  if (!pending_save_) return std::nullopt;
  ScopedSeconds timer(&save_stall_seconds_);
  PendingSave& p = *pending_save_;
  if (p.committing) return CollectCommit(wait);
  if (!p.sums && (wait || writer_->written())) p.sums = writer_->Wait();
  const bool ready = p.sums.has_value(), ok = ready && p.sums->ok();
  if (ready && !ok) log_->error("checkpoint shard write failed: {}", p.sums->status().ToString());
  // Everyone learns whether every shard is written and good, then every
  // slice's checksum (padded to the longest list: the exchange takes equal sizes).
  const int W = coll_->world(), rank = coll_->rank();
  const uint64_t mine[3] = {ready ? 1u : 0u, ok ? 1u : 0u, ok ? p.sums->value().size() : 0};
  std::vector<uint64_t> status(3 * static_cast<size_t>(W));
  coll_->AllgatherBytes(mine, sizeof(mine), status.data());
  size_t longest = 0;
  int failed = -1;
  for (int r = 0; r < W; ++r) {
    if (status[3 * r] != 1) return std::nullopt;  // a shard is still being written
    if (status[3 * r + 1] != 1 && failed < 0) failed = r;
    longest = std::max<size_t>(longest, status[3 * r + 2]);
  }
  SaveOutcome out;
  out.step = p.header.step;
  Status st;
  if (failed >= 0) {
    st = ok ? Status::IoError("checkpoint at step " + std::to_string(out.step) +
                              " abandoned: rank " + std::to_string(failed) + " failed its shard")
            : p.sums->status();
    out.report = !ok;  // the ranks that failed say why; vigild records the save once
  } else {
    std::vector<uint64_t> padded(longest, 0), all(longest * static_cast<size_t>(W));
    std::copy(p.sums->value().begin(), p.sums->value().end(), padded.begin());
    if (longest > 0) coll_->AllgatherBytes(padded.data(), longest * sizeof(uint64_t), all.data());
    if (rank == 0) {
      checkpoint::Manifest m = p.header;
      std::vector<checkpoint::ShardReport> shards(static_cast<size_t>(W));
      for (int r = 0; r < W; ++r) {
        shards[r].ranges = checkpoint::OwnedRanges(state_layout_, r, W);
        const auto first = all.begin() + static_cast<long>(longest) * r;
        shards[r].checksums.assign(first, first + static_cast<long>(status[3 * r + 2]));
      }
      st = checkpoint::DescribeShards(&m, tensors_, shards);
      if (st.ok() && writer_) {
        // The commit's syncs and renames run on the writer thread: collected
        // now when waiting, by a later FinishSave otherwise.
        writer_->StartCommit(
            [storage = options_.storage, root = options_.checkpoint_dir, m = std::move(m)] {
              return checkpoint::CommitCheckpoint(storage, root, m);
            });
        p.committing = true;
        return CollectCommit(wait);
      }
      if (st.ok()) {
        auto dir = checkpoint::CommitCheckpoint(options_.storage, options_.checkpoint_dir, m);
        if (dir.ok()) out.dir = dir.value();
        st = dir.status();
      }
      out.report = true;
    }
  }
  // Rank 0 clears an abandoned save's files (every rank is done writing):
  // a full disk must not stay full of a checkpoint nobody will load.
  if (!st.ok() && rank == 0) (void)options_.storage->RemoveAll(p.tmp_dir);
  out.status = st;
  out.seconds = SecondsSince(p.began);
  pending_save_.reset();
  return out;
}

template <class K>
std::optional<SaveOutcome> TrainerT<K>::CollectCommit(bool wait) {
  // Rank 0 alone: no collective from here on.
  if (!wait && !writer_->committed()) return std::nullopt;
  auto dir = writer_->WaitCommit();
  SaveOutcome out;
  out.step = pending_save_->header.step;
  out.report = true;
  if (dir.ok()) out.dir = dir.value();
  out.status = dir.status();
  out.seconds = SecondsSince(pending_save_->began);
  if (!dir.ok()) (void)options_.storage->RemoveAll(pending_save_->tmp_dir);
  pending_save_.reset();
  return out;
}

template <class K>
Result<std::string> TrainerT<K>::Save() {
  if (pending_save_) (void)FinishSave(true);
  BeginSave();
  auto out = FinishSave(true);
  if (!out->status.ok()) return out->status;
  return out->dir;
}

template <class K>
std::string TrainerT<K>::ParamsDigest() {
  staging_.resize(model_.params().size());
  K::ToHost(staging_.data(), model_.params().data(), staging_.size());
  const auto& p = staging_;
  const int64_t R = model_.replicated_count();
  const uint64_t own = XXH3_64bits(p.data() + R, (p.size() - R) * sizeof(float));
  std::vector<uint64_t> all(coll_->world() + 1);
  coll_->AllgatherBytes(&own, sizeof(own), all.data() + 1);
  all[0] = XXH3_64bits(p.data(), R * sizeof(float));
  return trainer_detail::Hex64(XXH3_64bits(all.data(), all.size() * sizeof(uint64_t)));
}

template <class K>
int64_t TrainerT<K>::state_bytes() const {
  return static_cast<int64_t>(model_.params().size() * 2 * sizeof(float)) + opt_->state_bytes();
}

template <class K>
int64_t TrainerT<K>::checkpoint_bytes() const {
  return static_cast<int64_t>(opt_->Sections().size()) * model_.global_param_count() *
         static_cast<int64_t>(sizeof(float));
}

}  // namespace vigil::trainer
