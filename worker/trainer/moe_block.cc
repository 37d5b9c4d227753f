#include "worker/trainer/moe_block.h"

#include <algorithm>
#include <stdexcept>
#include <string>

#include "kernels/cpu/activation.h"
#include "kernels/cpu/matmul.h"
#include "kernels/cpu/top2_gating.h"

namespace vigil::trainer {

namespace k = vigil::kernels::cpu;

MoeBlock::MoeBlock(int C, int hidden, int experts, double capacity_factor, bool relu,
                   ExpertExchange* exchange)
    : C_(C), H_(hidden), E_(experts), capacity_factor_(capacity_factor), relu_(relu) {
  exchange_ = (exchange && exchange->world() > 1) ? exchange : nullptr;
  sources_ = exchange_ ? exchange_->world() : 1;
  if (E_ % sources_ != 0) {
    throw std::invalid_argument("expert parallelism needs the world (" + std::to_string(sources_) +
                                ") to divide the experts (" + std::to_string(E_) + ")");
  }
  local_experts_ = E_ / sources_;
}

void MoeBlock::Ensure(int N) {
  if (N == N_) return;
  N_ = N;
  capacity_ = k::Top2Capacity(N, E_, capacity_factor_);
  // Every buffer holds E * capacity rows: all experts' slots for this rank's
  // tokens, or (expert parallel) this rank's experts' slots for every source.
  const size_t rows = static_cast<size_t>(E_) * capacity_;
  logits_.assign(static_cast<size_t>(N) * E_, 0);
  probs_.assign(static_cast<size_t>(N) * E_, 0);
  dlogits_.assign(static_cast<size_t>(N) * E_, 0);
  gate_.assign(2 * static_cast<size_t>(N), 0);
  dgate_.assign(2 * static_cast<size_t>(N), 0);
  expert_.assign(2 * static_cast<size_t>(N), 0);
  slot_.assign(2 * static_cast<size_t>(N), 0);
  for (auto* v : {&dispatched_, &expert_in_, &expert_y_, &expert_out_, &dexpert_out_, &dexpert_y_,
                  &dexpert_in_, &ddispatched_})
    v->assign(rows * C_, 0);
  for (auto* v : {&h_pre_, &h_act_, &dh_act_, &dh_pre_}) v->assign(rows * H_, 0);
}

float MoeBlock::Forward(float* out, const float* x, int N, const Weights& w) {
  Ensure(N);
  k::MatmulForward(logits_.data(), x, w.gate, nullptr, N, C_, E_);
  const float aux = k::Top2GatingForward(probs_.data(), expert_.data(), slot_.data(), gate_.data(),
                                         logits_.data(), N, E_, capacity_);
  dropped_ = static_cast<int>(std::count(slot_.begin(), slot_.end(), -1));
  k::MoeDispatchForward(dispatched_.data(), x, expert_.data(), slot_.data(), N, C_, capacity_, E_);
  const int64_t block = static_cast<int64_t>(local_experts_) * capacity_ * C_;
  if (exchange_)
    exchange_->AllToAll(dispatched_.data(), expert_in_.data(), block);
  else
    expert_in_ = dispatched_;
  ExpertsForward(w);
  if (exchange_)
    exchange_->AllToAll(expert_y_.data(), expert_out_.data(), block);
  else
    expert_out_ = expert_y_;
  k::MoeCombineForward(out, expert_out_.data(), gate_.data(), expert_.data(), slot_.data(), N, C_,
                       capacity_);
  return aux;
}

void MoeBlock::ExpertsForward(const Weights& w) {
  const int cap = capacity_;
  for (int src = 0; src < sources_; ++src) {
    for (int j = 0; j < local_experts_; ++j) {
      const size_t row = (static_cast<size_t>(src) * local_experts_ + j) * cap;
      float* pre = h_pre_.data() + row * H_;
      float* act = h_act_.data() + row * H_;
      k::MatmulForward(pre, expert_in_.data() + row * C_, w.fc_w[j], w.fc_b[j], cap, C_, H_);
      if (relu_)
        k::ReluForward(act, pre, static_cast<long>(cap) * H_);
      else
        k::GeluForward(act, pre, static_cast<long>(cap) * H_);
      k::MatmulForward(expert_y_.data() + row * C_, act, w.proj_w[j], w.proj_b[j], cap, H_, C_);
    }
  }
}

void MoeBlock::ExpertsBackward(const Grads& g, const Weights& w) {
  const int cap = capacity_;
  std::fill(dexpert_in_.begin(), dexpert_in_.end(), 0.0f);
  std::fill(dh_act_.begin(), dh_act_.end(), 0.0f);
  std::fill(dh_pre_.begin(), dh_pre_.end(), 0.0f);
  for (int src = 0; src < sources_; ++src) {
    for (int j = 0; j < local_experts_; ++j) {
      const size_t row = (static_cast<size_t>(src) * local_experts_ + j) * cap;
      float* dact = dh_act_.data() + row * H_;
      float* dpre = dh_pre_.data() + row * H_;
      k::MatmulBackward(dact, g.proj_w[j], g.proj_b[j], dexpert_y_.data() + row * C_,
                        h_act_.data() + row * H_, w.proj_w[j], cap, H_, C_);
      if (relu_)
        k::ReluBackward(dpre, h_pre_.data() + row * H_, dact, static_cast<long>(cap) * H_);
      else
        k::GeluBackward(dpre, h_pre_.data() + row * H_, dact, static_cast<long>(cap) * H_);
      k::MatmulBackward(dexpert_in_.data() + row * C_, g.fc_w[j], g.fc_b[j], dpre,
                        expert_in_.data() + row * C_, w.fc_w[j], cap, C_, H_);
    }
  }
}

void MoeBlock::Backward(float* dx, const Grads& g, const float* dout, const float* x,
                        const Weights& w, float aux_weight) {
  const int N = N_;
  k::MoeCombineBackward(dexpert_out_.data(), dgate_.data(), dout, expert_out_.data(), gate_.data(),
                        expert_.data(), slot_.data(), N, C_, capacity_, E_);
  const int64_t block = static_cast<int64_t>(local_experts_) * capacity_ * C_;
  if (exchange_)
    exchange_->AllToAll(dexpert_out_.data(), dexpert_y_.data(), block);
  else
    dexpert_y_ = dexpert_out_;
  ExpertsBackward(g, w);
  if (exchange_)
    exchange_->AllToAll(dexpert_in_.data(), ddispatched_.data(), block);
  else
    ddispatched_ = dexpert_in_;
  k::MoeDispatchBackward(dx, ddispatched_.data(), expert_.data(), slot_.data(), N, C_, capacity_);
  k::Top2GatingBackward(dlogits_.data(), dgate_.data(), probs_.data(), expert_.data(), N, E_,
                        aux_weight);
  k::MatmulBackward(dx, g.gate, nullptr, dlogits_.data(), x, w.gate, N, C_, E_);
}

}  // namespace vigil::trainer
