// Template definitions of ShardedOptimizerT; included by the translation
// units that instantiate it.
#pragma once

#include "worker/trainer/sharded_optimizer.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include <stdexcept>
#include <type_traits>
#include "common/partition.h"

#include "kernels/cpu/optimizer.h"

namespace vigil::trainer {

template <class K>
ShardedOptimizerT<K>::ShardedOptimizerT(const ParamLayout& layout, Collectives* coll,
                                        std::string kind, bool shard, const OptimizerHyper& hyper)
    : layout_(layout), coll_(coll), kind_(std::move(kind)), shard_(shard), hyper_(hyper) {
  const bool device = !std::is_same_v<K, kernels::CpuKernels>;
  if (coll_->world() > 1 && coll_->device_memory() != device) {
    throw std::invalid_argument(std::string("the ") + K::kName +
                                " optimizer needs collectives over " +
                                (device ? "device" : "host") + " memory");
  }
  offsets_ = BalancedOffsets(layout_.replicated, coll_->world());
  lo_ = offsets_[coll_->rank()];
  hi_ = offsets_[coll_->rank() + 1];
  if (has_moments()) {
    const int64_t n = (update_end() - update_begin()) + own_count();
    m_.assign(n, 0.0f);
    v_.assign(n, 0.0f);
  }
}

template <class K>
float ShardedOptimizerT<K>::Step(float* params, float* grads, float lr) {
  const int W = coll_->world();
  const int64_t R = layout_.replicated, own = own_count();
  coll_->ReduceScatterSum(grads, offsets_);
  if (!shard_) coll_->Allgather(grads, offsets_);
  const int64_t ub = update_begin(), ue = update_end();
  const float inv_world = 1.0f / static_cast<float>(W);
  K::Scale(grads + ub, ue - ub, inv_world);
  K::Scale(grads + R, own, inv_world);

  // Global norm: this rank's slice and its experts, added in rank order.
  const double mine[2] = {K::SumOfSquares(grads + lo_, hi_ - lo_), K::SumOfSquares(grads + R, own)};
  std::vector<double> all(2 * W);
  coll_->AllgatherBytes(mine, sizeof(mine), all.data());
  double sq = 0.0;
  for (double part : all) sq += part;
  // NaN or Inf anywhere: no update (every rank computed the same sum).
  if (!std::isfinite(sq)) return std::numeric_limits<float>::quiet_NaN();
  const float clip = kernels::cpu::ClipScale(sq, hyper_.grad_clip);
  K::Scale(grads + ub, ue - ub, clip);
  K::Scale(grads + R, own, clip);

  ++step_;
  auto update = [&](int64_t begin, int64_t count) {
    if (count == 0) return;
    if (kind_ == "sgd") {
      K::SgdUpdate(params + begin, grads + begin, count, lr, hyper_.weight_decay);
    } else {
      const int64_t mi = MomentIndex(begin);
      K::AdamWUpdate(params + begin, grads + begin, m_.data() + mi, v_.data() + mi, count, lr,
                     hyper_.beta1, hyper_.beta2, hyper_.eps, hyper_.weight_decay, step_);
    }
  };
  update(ub, ue - ub);
  update(R, own);
  if (shard_) coll_->Allgather(params, offsets_);
  return static_cast<float>(std::sqrt(sq));
}

template <class K>
std::vector<checkpoint::IndexRange> ShardedOptimizerT<K>::OwnedRanges() const {
  std::vector<checkpoint::IndexRange> out;
  if (hi_ > lo_) out.push_back({lo_, hi_});
  if (own_count() > 0)
    out.push_back({layout_.own_global_begin, layout_.own_global_begin + own_count()});
  return out;
}

template <class K>
std::vector<std::string> ShardedOptimizerT<K>::Sections() const {
  if (has_moments()) return {"params", "adam_m", "adam_v"};
  return {"params"};
}

template <class K>
std::vector<checkpoint::ShardPiece> ShardedOptimizerT<K>::Pieces(
    const float* params, std::vector<float>* staging) const {
  const int64_t R = layout_.replicated, own = own_count();
  const int sections = has_moments() ? 3 : 1;
  const bool host = std::is_same_v<K, kernels::CpuKernels>;
  if (!host) staging->resize(static_cast<size_t>(sections) * ((hi_ - lo_) + own));
  size_t staged = 0;
  std::vector<checkpoint::ShardPiece> out;
  auto piece = [&](const float* src, int64_t n) {
    if (host) {
      out.push_back({src, n});
      return;
    }
    K::ToHost(staging->data() + staged, src, static_cast<size_t>(n));
    out.push_back({staging->data() + staged, n});
    staged += static_cast<size_t>(n);
  };
  auto add = [&](const float* base_slice, const float* base_own) {
    if (hi_ > lo_) piece(base_slice, hi_ - lo_);
    if (own > 0) piece(base_own, own);
  };
  add(params + lo_, params + R);
  if (has_moments()) {
    add(m_.data() + MomentIndex(lo_), m_.data() + MomentIndex(R));
    add(v_.data() + MomentIndex(lo_), v_.data() + MomentIndex(R));
  }
  return out;
}

template <class K>
std::vector<checkpoint::IndexRange> ShardedOptimizerT<K>::MomentRanges() const {
  std::vector<checkpoint::IndexRange> out;
  if (!has_moments()) return out;
  if (update_end() > update_begin()) out.push_back({update_begin(), update_end()});
  if (own_count() > 0)
    out.push_back({layout_.own_global_begin, layout_.own_global_begin + own_count()});
  return out;
}

template <class K>
void ShardedOptimizerT<K>::LoadMoments(const float* m, const float* v, int64_t step) {
  step_ = step;
  if (!has_moments()) return;
  if (!m || !v) {  // a fresh start of the moments (the checkpoint has none)
    K::Zero(m_.data(), m_.size());
    K::Zero(v_.data(), v_.size());
    return;
  }
  K::FromHost(m_.data(), m, m_.size());
  K::FromHost(v_.data(), v, v_.size());
}

}  // namespace vigil::trainer
