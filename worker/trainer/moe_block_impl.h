// Template definitions of MoeBlockT; included by the translation units that
// instantiate it (moe_block.cc for the CPU, model_cuda.cc for CUDA).
#pragma once

#include "worker/trainer/moe_block.h"

#include <algorithm>
#include <stdexcept>
#include <string>

#include <type_traits>

#include "kernels/cpu/top2_gating.h"

namespace vigil::trainer {

template <class K>
MoeBlockT<K>::MoeBlockT(int C, int hidden, int experts, double capacity_factor, bool relu,
                        ExpertExchange* exchange)
    : C_(C), H_(hidden), E_(experts), capacity_factor_(capacity_factor), relu_(relu) {
  exchange_ = (exchange && exchange->world() > 1) ? exchange : nullptr;
  if (exchange_ && !std::is_same_v<K, kernels::CpuKernels>) {
    throw std::invalid_argument(std::string("expert parallelism exchanges host memory; the ") +
                                K::kName + " kernels need a device exchange (NCCL), not built yet");
  }
  sources_ = exchange_ ? exchange_->world() : 1;
  if (E_ % sources_ != 0) {
    throw std::invalid_argument("expert parallelism needs the world (" + std::to_string(sources_) +
                                ") to divide the experts (" + std::to_string(E_) + ")");
  }
  local_experts_ = E_ / sources_;
}

template <class K>
void MoeBlockT<K>::Ensure(int N) {
  if (N == N_) return;
  N_ = N;
  capacity_ = kernels::cpu::Top2Capacity(N, E_, capacity_factor_);
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
  for (auto* v : {&dispatched_, &expert_out_, &dexpert_out_, &ddispatched_})
    v->assign(rows * C_, 0);
  // The experts' side of the exchange; replicated, it is the tokens' side itself.
  if (exchange_) {
    for (auto* v : {&expert_in_, &expert_y_, &dexpert_y_, &dexpert_in_}) v->assign(rows * C_, 0);
  }
  for (auto* v : {&h_pre_, &h_act_, &dh_act_, &dh_pre_}) v->assign(rows * H_, 0);
}

template <class K>
float MoeBlockT<K>::Forward(float* out, const float* x, int N, const Weights& w) {
  Ensure(N);
  K::MatmulForward(logits_.data(), x, w.gate, nullptr, N, C_, E_);
  const float aux = K::Top2GatingForward(probs_.data(), expert_.data(), slot_.data(), gate_.data(),
                                         logits_.data(), N, E_, capacity_);
  host_slot_.resize(slot_.size());
  K::ToHost(host_slot_.data(), slot_.data(), slot_.size());
  dropped_ = static_cast<int>(std::count(host_slot_.begin(), host_slot_.end(), -1));
  K::MoeDispatchForward(dispatched_.data(), x, expert_.data(), slot_.data(), N, C_, capacity_, E_);
  const int64_t block = static_cast<int64_t>(local_experts_) * capacity_ * C_;
  if (exchange_) exchange_->AllToAll(dispatched_.data(), expert_in_.data(), block);
  ExpertsForward(w);
  if (exchange_) exchange_->AllToAll(expert_y_.data(), expert_out_.data(), block);
  K::MoeCombineForward(out, expert_out_.data(), gate_.data(), expert_.data(), slot_.data(), N, C_,
                       capacity_);
  return aux;
}

template <class K>
void MoeBlockT<K>::ExpertsForward(const Weights& w) {
  const int cap = capacity_;
  for (int src = 0; src < sources_; ++src) {
    for (int j = 0; j < local_experts_; ++j) {
      const size_t row = (static_cast<size_t>(src) * local_experts_ + j) * cap;
      float* pre = h_pre_.data() + row * H_;
      float* act = h_act_.data() + row * H_;
      K::MatmulForward(pre, ExpertIn() + row * C_, w.fc_w[j], w.fc_b[j], cap, C_, H_);
      if (relu_)
        K::ReluForward(act, pre, static_cast<long>(cap) * H_);
      else
        K::GeluForward(act, pre, static_cast<long>(cap) * H_);
      K::MatmulForward(ExpertY() + row * C_, act, w.proj_w[j], w.proj_b[j], cap, H_, C_);
    }
  }
}

template <class K>
void MoeBlockT<K>::ExpertsBackward(const Grads& g, const Weights& w) {
  const int cap = capacity_;
  K::Zero(DExpertIn(), dispatched_.size());
  K::Zero(dh_act_.data(), dh_act_.size());
  K::Zero(dh_pre_.data(), dh_pre_.size());
  for (int src = 0; src < sources_; ++src) {
    for (int j = 0; j < local_experts_; ++j) {
      const size_t row = (static_cast<size_t>(src) * local_experts_ + j) * cap;
      float* dact = dh_act_.data() + row * H_;
      float* dpre = dh_pre_.data() + row * H_;
      K::MatmulBackward(dact, g.proj_w[j], g.proj_b[j], DExpertY() + row * C_,
                        h_act_.data() + row * H_, w.proj_w[j], cap, H_, C_);
      if (relu_)
        K::ReluBackward(dpre, h_pre_.data() + row * H_, dact, static_cast<long>(cap) * H_);
      else
        K::GeluBackward(dpre, h_pre_.data() + row * H_, dact, static_cast<long>(cap) * H_);
      K::MatmulBackward(DExpertIn() + row * C_, g.fc_w[j], g.fc_b[j], dpre, ExpertIn() + row * C_,
                        w.fc_w[j], cap, C_, H_);
    }
  }
}

template <class K>
void MoeBlockT<K>::Backward(float* dx, const Grads& g, const float* dout, const float* x,
                            const Weights& w, float aux_weight) {
  const int N = N_;
  K::MoeCombineBackward(dexpert_out_.data(), dgate_.data(), dout, expert_out_.data(), gate_.data(),
                        expert_.data(), slot_.data(), N, C_, capacity_, E_);
  const int64_t block = static_cast<int64_t>(local_experts_) * capacity_ * C_;
  if (exchange_) exchange_->AllToAll(dexpert_out_.data(), dexpert_y_.data(), block);
  ExpertsBackward(g, w);
  if (exchange_) exchange_->AllToAll(dexpert_in_.data(), ddispatched_.data(), block);
  K::MoeDispatchBackward(dx, ddispatched_.data(), expert_.data(), slot_.data(), N, C_, capacity_);
  K::Top2GatingBackward(dlogits_.data(), dgate_.data(), probs_.data(), expert_.data(), N, E_,
                        aux_weight);
  K::MatmulBackward(dx, g.gate, nullptr, dlogits_.data(), x, w.gate, N, C_, E_);
}

}  // namespace vigil::trainer
