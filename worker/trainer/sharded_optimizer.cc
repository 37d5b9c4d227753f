#include "worker/trainer/sharded_optimizer.h"

#include <algorithm>
#include <cmath>

#include "common/partition.h"
#include "kernels/cpu/optimizer.h"

namespace vigil::trainer {

namespace k = vigil::kernels::cpu;

ShardedOptimizer::ShardedOptimizer(const ParamLayout& layout, Collectives* coll, std::string kind,
                                   bool shard, const OptimizerHyper& hyper)
    : layout_(layout), coll_(coll), kind_(std::move(kind)), shard_(shard), hyper_(hyper) {
  offsets_ = BalancedOffsets(layout_.replicated, coll_->world());
  lo_ = offsets_[coll_->rank()];
  hi_ = offsets_[coll_->rank() + 1];
  if (has_moments()) {
    const int64_t n = (update_end() - update_begin()) + own_count();
    m_.assign(n, 0.0f);
    v_.assign(n, 0.0f);
  }
}

float ShardedOptimizer::Step(float* params, float* grads, float lr) {
  const int W = coll_->world();
  const int64_t R = layout_.replicated, own = own_count();
  coll_->ReduceScatterSum(grads, offsets_);
  if (!shard_) coll_->Allgather(grads, offsets_);
  const int64_t ub = update_begin(), ue = update_end();
  const float inv_world = 1.0f / static_cast<float>(W);
  k::Scale(grads + ub, ue - ub, inv_world);
  k::Scale(grads + R, own, inv_world);

  // Global norm: this rank's slice and its experts, added in rank order.
  const double mine[2] = {k::SumOfSquares(grads + lo_, hi_ - lo_), k::SumOfSquares(grads + R, own)};
  std::vector<double> all(2 * W);
  coll_->AllgatherBytes(mine, sizeof(mine), all.data());
  double sq = 0.0;
  for (double part : all) sq += part;
  const float clip = k::ClipScale(sq, hyper_.grad_clip);
  k::Scale(grads + ub, ue - ub, clip);
  k::Scale(grads + R, own, clip);

  ++step_;
  auto update = [&](int64_t begin, int64_t count) {
    if (count == 0) return;
    if (kind_ == "sgd") {
      k::SgdUpdate(params + begin, grads + begin, count, lr, hyper_.weight_decay);
    } else {
      const int64_t mi = MomentIndex(begin);
      k::AdamWUpdate(params + begin, grads + begin, m_.data() + mi, v_.data() + mi, count, lr,
                     hyper_.beta1, hyper_.beta2, hyper_.eps, hyper_.weight_decay, step_);
    }
  };
  update(ub, ue - ub);
  update(R, own);
  if (shard_) coll_->Allgather(params, offsets_);
  return static_cast<float>(std::sqrt(sq));
}

std::vector<checkpoint::IndexRange> ShardedOptimizer::OwnedRanges() const {
  std::vector<checkpoint::IndexRange> out;
  if (hi_ > lo_) out.push_back({lo_, hi_});
  if (own_count() > 0)
    out.push_back({layout_.own_global_begin, layout_.own_global_begin + own_count()});
  return out;
}

std::vector<std::string> ShardedOptimizer::Sections() const {
  if (has_moments()) return {"params", "adam_m", "adam_v"};
  return {"params"};
}

std::vector<checkpoint::ShardPiece> ShardedOptimizer::Pieces(const float* params) const {
  const int64_t R = layout_.replicated, own = own_count();
  std::vector<checkpoint::ShardPiece> out;
  auto add = [&](const float* base_slice, const float* base_own) {
    if (hi_ > lo_) out.push_back({base_slice, hi_ - lo_});
    if (own > 0) out.push_back({base_own, own});
  };
  add(params + lo_, params + R);
  if (has_moments()) {
    add(m_.data() + MomentIndex(lo_), m_.data() + MomentIndex(R));
    add(v_.data() + MomentIndex(lo_), v_.data() + MomentIndex(R));
  }
  return out;
}

void ShardedOptimizer::LoadMoments(const float* m, const float* v, int64_t step) {
  step_ = step;
  if (!has_moments()) return;
  if (!m || !v) {  // a fresh start of the moments (the checkpoint has none)
    std::fill(m_.begin(), m_.end(), 0.0f);
    std::fill(v_.begin(), v_.end(), 0.0f);
    return;
  }
  const int64_t ub = update_begin(), ue = update_end(), R = layout_.replicated;
  std::copy(m + ub, m + ue, m_.begin() + MomentIndex(ub));
  std::copy(v + ub, v + ue, v_.begin() + MomentIndex(ub));
  const int64_t g = layout_.own_global_begin, own = own_count();
  std::copy(m + g, m + g + own, m_.begin() + MomentIndex(R));
  std::copy(v + g, v + g + own, v_.begin() + MomentIndex(R));
}

}  // namespace vigil::trainer
