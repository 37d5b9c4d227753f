// The mixture-of-experts half of a GLaM block: a router (gate weight [E, C],
// no bias), top-2 dispatch into fixed-capacity expert buffers, E expert MLPs
// (fc [H, C] + bias, activation, proj [C, H] + bias), and the weighted
// combine. See kernels/cpu/top2_gating.h for the routing rules and the
// load-balancing loss.
//
// Placement. Replicated: every rank holds all E experts and runs them on its
// own tokens. Expert parallel: rank r of W holds experts [r*E/W, (r+1)*E/W);
// an all-to-all sends each expert's buffer to its owner, the owner runs its
// experts on every rank's buffer (one matmul per source rank, so each token
// sees exactly the arithmetic it would see replicated), and a second
// all-to-all brings the outputs home. The backward mirrors both exchanges.
// Either way the forward gives the same bits for the same tokens.
//
// Holds the activations of its last forward for the backward. Written over
// a kernel set K like the model; expert parallelism exchanges host memory
// (Gloo), so it is CPU-only until an NCCL exchange exists.
#pragma once

#include <cstdint>
#include <vector>

#include "kernels/cpu/backend.h"
#include "worker/trainer/expert_exchange.h"

namespace vigil::trainer {

template <class K>
class MoeBlockT {
 public:
  template <typename T>
  using Vec = typename K::template Vector<T>;

  struct Weights {  // of the experts this rank holds, in order
    const float* gate = nullptr;
    std::vector<const float*> fc_w, fc_b, proj_w, proj_b;
  };
  struct Grads {  // accumulated (+=)
    float* gate = nullptr;
    std::vector<float*> fc_w, fc_b, proj_w, proj_b;
  };

  // exchange: nullptr (or a world of one) for replicated placement.
  MoeBlockT(int C, int hidden, int experts, double capacity_factor, bool relu,
            ExpertExchange* exchange);

  int local_experts() const { return local_experts_; }
  int capacity() const { return capacity_; }
  // Tokens dropped from a choice by capacity in the last forward.
  int dropped_choices() const { return dropped_; }

  // out[N,C] overwritten; returns the load-balancing loss (unweighted).
  float Forward(float* out, const float* x, int N, const Weights& w);
  // dx[N,C] += the gradient through the block; weight gradients accumulate.
  void Backward(float* dx, const Grads& g, const float* dout, const float* x, const Weights& w,
                float aux_weight);

 private:
  void Ensure(int N);
  // Runs (or back-propagates) every local expert over the buffers of every source.
  void ExpertsForward(const Weights& w);
  void ExpertsBackward(const Grads& g, const Weights& w);

  // The buffers the experts read and write: the exchange's when tokens
  // travel, otherwise the tokens' own (no copies).
  float* ExpertIn() { return (exchange_ ? expert_in_ : dispatched_).data(); }
  float* ExpertY() { return (exchange_ ? expert_y_ : expert_out_).data(); }
  float* DExpertY() { return (exchange_ ? dexpert_y_ : dexpert_out_).data(); }
  float* DExpertIn() { return (exchange_ ? dexpert_in_ : ddispatched_).data(); }

  const int C_, H_, E_;
  const double capacity_factor_;
  const bool relu_;
  ExpertExchange* exchange_;
  int sources_ = 1, local_experts_ = 0, capacity_ = 0, N_ = -1, dropped_ = 0;
  Vec<float> logits_, probs_, gate_, dispatched_, expert_in_, h_pre_, h_act_, expert_y_,
      expert_out_;
  Vec<int32_t> expert_, slot_;
  std::vector<int32_t> host_slot_;
  Vec<float> dlogits_, dgate_, dexpert_out_, dexpert_y_, dh_act_, dh_pre_, dexpert_in_,
      ddispatched_;
};

using MoeBlock = MoeBlockT<kernels::CpuKernels>;
extern template class MoeBlockT<kernels::CpuKernels>;

}  // namespace vigil::trainer
