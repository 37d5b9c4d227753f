// An OPT/GPT-2-style decoder-only transformer on CPU: token + learned
// position embeddings, pre-LayerNorm blocks (causal multi-head attention,
// MLP with GELU or ReLU), final LayerNorm, output projection tied to the
// token embedding. Parameters and gradients live in one flat buffer each, so
// collectives, optimizers and checkpoints see a single contiguous tensor.
//
// Deterministic: the same parameters and batch give bit-identical outputs.
// Not thread-safe; one model per rank.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace vigil::trainer {

struct ModelConfig {
  int vocab = 256;
  int max_seq = 32;
  int d_model = 64;
  int layers = 2;
  int heads = 4;
  bool relu = false;  // OPT uses ReLU, GPT-2 GELU
};

struct TensorInfo {
  std::string name;
  std::vector<int64_t> shape;
  int64_t offset = 0;  // in floats, within the flat parameter buffer
  int64_t numel() const;
};

class DecoderModel {
 public:
  explicit DecoderModel(const ModelConfig& cfg);

  // Fills the parameters from `seed` (normal(0, std); residual projections
  // scaled by 1/sqrt(2 * layers); LayerNorm weights 1, biases 0).
  void InitParameters(uint64_t seed, float std);

  // Forward and backward over a batch of B sequences of T tokens (T <= max_seq).
  // Zeroes and fills grads(); returns the mean cross-entropy loss.
  float ForwardBackward(const int32_t* inputs, const int32_t* targets, int B, int T);
  // Forward only: mean loss.
  float Loss(const int32_t* inputs, const int32_t* targets, int B, int T);

  std::vector<float>& params() { return params_; }
  const std::vector<float>& params() const { return params_; }
  std::vector<float>& grads() { return grads_; }
  const std::vector<TensorInfo>& tensors() const { return tensors_; }
  const ModelConfig& config() const { return cfg_; }
  // 6 * N FLOPs per token for the matmuls plus the attention scores, forward and backward.
  double FlopsPerToken(int T) const;

 private:
  struct Layer {
    int64_t ln1w, ln1b, qkvw, qkvb, projw, projb, ln2w, ln2b, fcw, fcb, fcprojw, fcprojb;
  };
  int64_t Add(const std::string& name, std::vector<int64_t> shape);
  void EnsureActivations(int B, int T);
  float Forward(const int32_t* inputs, const int32_t* targets, int B, int T, bool backward);

  ModelConfig cfg_;
  std::vector<TensorInfo> tensors_;
  std::vector<float> params_, grads_;
  int64_t wte_ = 0, wpe_ = 0, lnfw_ = 0, lnfb_ = 0;
  std::vector<Layer> layers_;

  // Activations for the current batch shape, per layer where it matters.
  int act_B_ = 0, act_T_ = 0;
  std::vector<float> encoded_, logits_, dlogits_, lnf_, lnf_mean_, lnf_rstd_;
  struct LayerActs {
    std::vector<float> residual_in, ln1, ln1_mean, ln1_rstd, qkv, att, atty, attproj, residual_mid,
        ln2, ln2_mean, ln2_rstd, fch, fch_act, fcproj;
  };
  std::vector<LayerActs> acts_;
  // Backward scratch, kept between steps (no allocation, no page faults per step).
  std::vector<float> dx_, dln_, dtmp_, dfch_, dfch_act_, dqkv_, datt_;
};

}  // namespace vigil::trainer
