// An OPT/GPT-2-style decoder-only transformer on CPU: token + learned
// position embeddings, pre-LayerNorm blocks (causal multi-head attention,
// MLP with GELU or ReLU), final LayerNorm, output projection tied to the
// token embedding. With experts > 0 it is GLaM-style: the MLP of every
// moe_every-th block is a top-2 mixture of experts (see moe_block.h).
//
// Parameters and gradients live in one flat buffer each, so collectives,
// optimizers and checkpoints see a single contiguous tensor:
//   [ replicated: embeddings, attention, dense MLPs, routers, LayerNorms
//     (and all experts when they are replicated) | this rank's experts ]
// Every parameter also has a global index, the same on every rank and for
// every placement: [ non-expert | expert 0 | expert 1 | ... ], each expert's
// block holding its tensors for every MoE layer. Checkpoints use global
// indices, so any placement can read any checkpoint.
//
// The model is written once over a kernel set K (kernels/cpu/backend.h,
// kernels/cuda/backend.h): DecoderModel runs on the CPU, DecoderModelT<
// kernels::CudaKernels> keeps parameters, gradients and activations on a
// GPU (in VIGIL_KERNELS_ONLY builds and wherever nvcc is). Inputs and
// targets are host arrays either way.
//
// Deterministic: the same parameters and batch give bit-identical outputs.
// Not thread-safe; one model per rank.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "kernels/cpu/backend.h"
#include "worker/trainer/expert_exchange.h"
#include "worker/trainer/moe_block.h"

namespace vigil::trainer {

struct ModelConfig {
  int vocab = 256;
  int max_seq = 32;
  int d_model = 64;
  int layers = 2;
  int heads = 4;
  bool relu = false;  // OPT uses ReLU, GPT-2 GELU
  int experts = 0;    // 0: dense; else experts per MoE block
  int moe_every = 2;  // blocks moe_every-1, 2*moe_every-1, ... are MoE
  double capacity_factor = 1.25;
  float aux_loss_weight = 0.01f;
  bool IsMoeLayer(int l) const { return experts > 0 && l % moe_every == moe_every - 1; }
};

struct TensorInfo {
  std::string name;
  std::vector<int64_t> shape;
  int64_t offset = 0;  // in floats, within the flat parameter buffer
  int64_t numel() const;
};

template <class K>
class DecoderModelT {
 public:
  template <typename T>
  using Vec = typename K::template Vector<T>;

  // exchange: experts are sharded over its ranks (expert parallel) when it
  // spans more than one rank; nullptr replicates them. Throws
  // std::invalid_argument if the ranks do not divide the experts.
  explicit DecoderModelT(const ModelConfig& cfg, ExpertExchange* exchange = nullptr);

  // Fills the parameters from `seed` (normal(0, std); residual projections
  // scaled by 1/sqrt(2 * layers); LayerNorm weights 1, biases 0). Each
  // expert draws from its own stream, so a parameter's initial value does
  // not depend on where its expert lives.
  void InitParameters(uint64_t seed, float std);

  // Forward and backward over a batch of B sequences of T tokens (T <= max_seq).
  // Zeroes and fills grads() with the gradient of cross-entropy plus
  // aux_loss_weight times the MoE load-balancing losses; returns the mean
  // cross-entropy loss (aux_loss() has the rest).
  float ForwardBackward(const int32_t* inputs, const int32_t* targets, int B, int T);
  // Forward only: mean loss.
  float Loss(const int32_t* inputs, const int32_t* targets, int B, int T);

  Vec<float>& params() { return params_; }
  const Vec<float>& params() const { return params_; }
  Vec<float>& grads() { return grads_; }
  const std::vector<TensorInfo>& tensors() const { return tensors_; }
  const ModelConfig& config() const { return cfg_; }
  // The last forward's logits: B * T rows of vocab, sequence-major (row
  // b * T + t is position t of sequence b); on the model's device.
  const Vec<float>& logits() const { return logits_; }
  // Mean load-balancing loss over the MoE blocks in the last forward (0 if dense).
  float aux_loss() const { return aux_loss_; }
  // Expert choices dropped by capacity in the last forward, over all MoE blocks.
  int dropped_choices() const;

  // The flat buffer's regions (see the file comment).
  int64_t replicated_count() const { return replicated_count_; }
  int64_t global_param_count() const { return global_count_; }
  // Global index space: [dense | expert 0 | ... | expert E-1], each expert
  // params_per_expert() floats (its share of every MoE layer).
  int64_t dense_count() const { return dense_count_; }
  int64_t params_per_expert() const { return per_expert_; }
  // Global index of local index i.
  int64_t GlobalIndex(int64_t i) const {
    return i < dense_count_ ? i : i + first_expert_ * per_expert_;
  }
  // Every tensor of the model with its global offset, including the experts
  // other ranks hold.
  std::vector<TensorInfo> GlobalTensors() const;
  // 6 * N FLOPs per token for the matmuls plus the attention scores, forward and backward.
  double FlopsPerToken(int T) const;

 private:
  struct Layer {
    int64_t ln1w, ln1b, qkvw, qkvb, projw, projb, ln2w, ln2b, fcw, fcb, fcprojw, fcprojb;
    bool moe = false;
    int64_t gate = 0;
    std::vector<int64_t> efcw, efcb, eprojw, eprojb;  // per local expert
    std::unique_ptr<MoeBlockT<K>> block;
    typename MoeBlockT<K>::Weights weights;
    typename MoeBlockT<K>::Grads grads;
  };
  int64_t Add(const std::string& name, std::vector<int64_t> shape);
  // Appends expert e's tensors for every MoE layer via `add`.
  template <typename AddFn>
  void AddExpertTensors(int e, AddFn add) const;
  void EnsureActivations(int B, int T);
  float Forward(const int32_t* inputs, const int32_t* targets, int B, int T, bool backward);

  ModelConfig cfg_;
  std::vector<TensorInfo> tensors_;
  Vec<float> params_, grads_;
  int64_t wte_ = 0, wpe_ = 0, lnfw_ = 0, lnfb_ = 0;
  std::vector<Layer> layers_;
  int64_t dense_count_ = 0, replicated_count_ = 0, global_count_ = 0, per_expert_ = 0;
  int first_expert_ = 0, local_experts_ = 0;
  float aux_loss_ = 0.0f;

  // Activations for the current batch shape, per layer where it matters.
  int act_B_ = 0, act_T_ = 0;
  Vec<float> encoded_, logits_, dlogits_, lnf_, lnf_mean_, lnf_rstd_;
  Vec<int32_t> inputs_, targets_;  // staged for the kernels
  struct LayerActs {
    Vec<float> residual_in, ln1, ln1_mean, ln1_rstd, qkv, att, atty, attproj, residual_mid, ln2,
        ln2_mean, ln2_rstd, fch, fch_act, fcproj;
  };
  std::vector<LayerActs> acts_;
  // Backward scratch, kept between steps (no allocation, no page faults per step).
  Vec<float> dx_, dln_, dtmp_, dfch_, dfch_act_, dqkv_, datt_;
};

using DecoderModel = DecoderModelT<kernels::CpuKernels>;
extern template class DecoderModelT<kernels::CpuKernels>;

}  // namespace vigil::trainer
