// Template definitions of DecoderModelT; included by the translation units
// that instantiate it (model.cc for the CPU, model_cuda.cc for CUDA).
#pragma once

#include "worker/trainer/model.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <stdexcept>

#include "worker/trainer/moe_block_impl.h"
#include "worker/trainer/rng.h"

namespace vigil::trainer {

template <class K>
int64_t DecoderModelT<K>::Add(const std::string& name, std::vector<int64_t> shape) {
  TensorInfo t{name, std::move(shape), 0};
  t.offset = tensors_.empty() ? 0 : tensors_.back().offset + tensors_.back().numel();
  tensors_.push_back(t);
  return t.offset;
}

template <class K>
template <typename AddFn>
void DecoderModelT<K>::AddExpertTensors(int e, AddFn add) const {
  const int64_t C = cfg_.d_model;
  for (int l = 0; l < cfg_.layers; ++l) {
    if (!cfg_.IsMoeLayer(l)) continue;
    const std::string p = "h." + std::to_string(l) + ".moe.expert." + std::to_string(e) + ".";
    add(l, 0, p + "fc.weight", std::vector<int64_t>{4 * C, C});
    add(l, 1, p + "fc.bias", std::vector<int64_t>{4 * C});
    add(l, 2, p + "proj.weight", std::vector<int64_t>{C, 4 * C});
    add(l, 3, p + "proj.bias", std::vector<int64_t>{C});
  }
}

template <class K>
DecoderModelT<K>::DecoderModelT(const ModelConfig& cfg, ExpertExchange* exchange) : cfg_(cfg) {
  const int64_t V = cfg.vocab, C = cfg.d_model, T = cfg.max_seq;
  const int E = cfg.experts;
  ExpertExchange* ep = (E > 0 && exchange && exchange->world() > 1) ? exchange : nullptr;
  if (ep && E % ep->world() != 0) {
    throw std::invalid_argument("expert parallelism needs the world (" +
                                std::to_string(ep->world()) + ") to divide the experts (" +
                                std::to_string(E) + ")");
  }
  local_experts_ = ep ? E / ep->world() : E;
  first_expert_ = ep ? ep->rank() * local_experts_ : 0;
  wte_ = Add("wte", {V, C});
  wpe_ = Add("wpe", {T, C});
  layers_.resize(cfg.layers);
  for (int l = 0; l < cfg.layers; ++l) {
    const std::string p = "h." + std::to_string(l) + ".";
    Layer& L = layers_[l];
    L.ln1w = Add(p + "ln1.weight", {C});
    L.ln1b = Add(p + "ln1.bias", {C});
    L.qkvw = Add(p + "attn.qkv.weight", {3 * C, C});
    L.qkvb = Add(p + "attn.qkv.bias", {3 * C});
    L.projw = Add(p + "attn.proj.weight", {C, C});
    L.projb = Add(p + "attn.proj.bias", {C});
    L.ln2w = Add(p + "ln2.weight", {C});
    L.ln2b = Add(p + "ln2.bias", {C});
    L.moe = cfg.IsMoeLayer(l);
    if (L.moe) {
      L.gate = Add(p + "moe.gate.weight", {E, C});
      L.block = std::make_unique<MoeBlockT<K>>(C, 4 * C, E, cfg.capacity_factor, cfg.relu, ep);
    } else {
      L.fcw = Add(p + "mlp.fc.weight", {4 * C, C});
      L.fcb = Add(p + "mlp.fc.bias", {4 * C});
      L.fcprojw = Add(p + "mlp.proj.weight", {C, 4 * C});
      L.fcprojb = Add(p + "mlp.proj.bias", {C});
    }
  }
  lnfw_ = Add("lnf.weight", {C});
  lnfb_ = Add("lnf.bias", {C});
  dense_count_ = tensors_.back().offset + tensors_.back().numel();
  // This rank's experts, each a contiguous block of per_expert_ floats.
  for (int j = 0; j < local_experts_; ++j) {
    AddExpertTensors(first_expert_ + j, [&](int l, int which, const std::string& name,
                                            std::vector<int64_t> shape) {
      const int64_t off = Add(name, std::move(shape));
      Layer& L = layers_[l];
      (which == 0 ? L.efcw : which == 1 ? L.efcb : which == 2 ? L.eprojw : L.eprojb).push_back(off);
    });
  }
  const int64_t total = tensors_.back().offset + tensors_.back().numel();
  per_expert_ = local_experts_ > 0 ? (total - dense_count_) / local_experts_ : 0;
  replicated_count_ = ep ? dense_count_ : total;
  global_count_ = dense_count_ + static_cast<int64_t>(E) * per_expert_;
  params_.assign(total, 0.0f);
  grads_.assign(total, 0.0f);
  for (Layer& L : layers_) {
    if (!L.moe) continue;
    L.weights.gate = params_.data() + L.gate;
    L.grads.gate = grads_.data() + L.gate;
    for (int j = 0; j < local_experts_; ++j) {
      L.weights.fc_w.push_back(params_.data() + L.efcw[j]);
      L.weights.fc_b.push_back(params_.data() + L.efcb[j]);
      L.weights.proj_w.push_back(params_.data() + L.eprojw[j]);
      L.weights.proj_b.push_back(params_.data() + L.eprojb[j]);
      L.grads.fc_w.push_back(grads_.data() + L.efcw[j]);
      L.grads.fc_b.push_back(grads_.data() + L.efcb[j]);
      L.grads.proj_w.push_back(grads_.data() + L.eprojw[j]);
      L.grads.proj_b.push_back(grads_.data() + L.eprojb[j]);
    }
  }
}

template <class K>
std::vector<TensorInfo> DecoderModelT<K>::GlobalTensors() const {
  std::vector<TensorInfo> out;
  for (const auto& t : tensors_)
    if (t.offset < dense_count_) out.push_back(t);
  int64_t next = dense_count_;
  for (int e = 0; e < cfg_.experts; ++e) {
    AddExpertTensors(e, [&](int, int, const std::string& name, std::vector<int64_t> shape) {
      TensorInfo t{name, std::move(shape), next};
      next += t.numel();
      out.push_back(std::move(t));
    });
  }
  return out;
}

template <class K>
int DecoderModelT<K>::dropped_choices() const {
  int n = 0;
  for (const auto& L : layers_)
    if (L.moe) n += L.block->dropped_choices();
  return n;
}

template <class K>
void DecoderModelT<K>::InitParameters(uint64_t seed, float std) {
  const float resid_std = std / std::sqrt(2.0f * cfg_.layers);
  Rng dense_rng(seed);
  Rng expert_rng(0);
  int64_t expert_block = -1;
  std::vector<float> host(params_.size());
  for (const auto& t : tensors_) {
    float* p = host.data() + t.offset;
    Rng* rng = &dense_rng;
    if (t.offset >= dense_count_) {
      // A fresh stream at the start of each expert's block, keyed by its global index.
      const int64_t block = (t.offset - dense_count_) / per_expert_;
      if (block != expert_block) {
        expert_block = block;
        expert_rng =
            Rng(seed ^ (0x9E3779B97F4A7C15ull * static_cast<uint64_t>(first_expert_ + block + 1)));
      }
      rng = &expert_rng;
    }
    const bool is_ln_weight =
        t.name.find("ln") != std::string::npos && t.name.find(".weight") != std::string::npos;
    const bool is_bias = t.name.find(".bias") != std::string::npos;
    const bool is_resid = t.name.find("proj.weight") != std::string::npos;
    for (int64_t i = 0; i < t.numel(); ++i) {
      if (is_ln_weight)
        p[i] = 1.0f;
      else if (is_bias)
        p[i] = 0.0f;
      else
        p[i] = static_cast<float>(rng->Normal()) * (is_resid ? resid_std : std);
    }
  }
  K::FromHost(params_.data(), host.data(), host.size());
}

template <class K>
void DecoderModelT<K>::EnsureActivations(int B, int T) {
  if (B == act_B_ && T == act_T_) return;
  act_B_ = B;
  act_T_ = T;
  const size_t BT = static_cast<size_t>(B) * T, C = cfg_.d_model, NH = cfg_.heads, V = cfg_.vocab;
  encoded_.assign(BT * C, 0);
  logits_.assign(BT * V, 0);
  dlogits_.assign(BT * V, 0);
  lnf_.assign(BT * C, 0);
  lnf_mean_.assign(BT, 0);
  lnf_rstd_.assign(BT, 0);
  dx_.assign(BT * C, 0);
  dln_.assign(BT * C, 0);
  dtmp_.assign(BT * C, 0);
  dfch_.assign(BT * 4 * C, 0);
  dfch_act_.assign(BT * 4 * C, 0);
  dqkv_.assign(BT * 3 * C, 0);
  datt_.assign(static_cast<size_t>(B) * NH * T * T, 0);
  acts_.clear();
  acts_.resize(cfg_.layers);
  for (auto& a : acts_) {
    a.residual_in.assign(BT * C, 0);
    a.ln1.assign(BT * C, 0);
    a.ln1_mean.assign(BT, 0);
    a.ln1_rstd.assign(BT, 0);
    a.qkv.assign(BT * 3 * C, 0);
    a.att.assign(static_cast<size_t>(B) * NH * T * T, 0);
    a.atty.assign(BT * C, 0);
    a.attproj.assign(BT * C, 0);
    a.residual_mid.assign(BT * C, 0);
    a.ln2.assign(BT * C, 0);
    a.ln2_mean.assign(BT, 0);
    a.ln2_rstd.assign(BT, 0);
    a.fch.assign(BT * 4 * C, 0);
    a.fch_act.assign(BT * 4 * C, 0);
    a.fcproj.assign(BT * C, 0);
  }
}

template <class K>
float DecoderModelT<K>::Loss(const int32_t* inputs, const int32_t* targets, int B, int T) {
  return Forward(inputs, targets, B, T, false);
}

template <class K>
float DecoderModelT<K>::ForwardBackward(const int32_t* inputs, const int32_t* targets, int B,
                                        int T) {
  return Forward(inputs, targets, B, T, true);
}

template <class K>
float DecoderModelT<K>::Forward(const int32_t* inputs, const int32_t* targets, int B, int T,
                                bool backward) {
  EnsureActivations(B, T);
  const int C = cfg_.d_model, NH = cfg_.heads, V = cfg_.vocab, BT = B * T;
  inputs = K::Stage(inputs_, inputs, static_cast<size_t>(BT));
  targets = K::Stage(targets_, targets, static_cast<size_t>(BT));
  const float* P = params_.data();
  const long BTC = static_cast<long>(BT) * C;

  K::EmbeddingForward(encoded_.data(), inputs, P + wte_, P + wpe_, B, T, C);
  const float* x = encoded_.data();
  float aux_sum = 0.0f;
  int moe_layers = 0;
  for (int l = 0; l < cfg_.layers; ++l) {
    const Layer& L = layers_[l];
    LayerActs& a = acts_[l];
    K::Copy(a.residual_in.data(), x, static_cast<size_t>(BTC));
    K::LayerNormForward(a.ln1.data(), a.ln1_mean.data(), a.ln1_rstd.data(), x, P + L.ln1w,
                        P + L.ln1b, BT, C);
    K::MatmulForward(a.qkv.data(), a.ln1.data(), P + L.qkvw, P + L.qkvb, BT, C, 3 * C);
    K::AttentionForward(a.atty.data(), a.att.data(), a.qkv.data(), B, T, C, NH);
    K::MatmulForward(a.attproj.data(), a.atty.data(), P + L.projw, P + L.projb, BT, C, C);
    K::ResidualForward(a.residual_mid.data(), x, a.attproj.data(), BTC);
    K::LayerNormForward(a.ln2.data(), a.ln2_mean.data(), a.ln2_rstd.data(), a.residual_mid.data(),
                        P + L.ln2w, P + L.ln2b, BT, C);
    if (L.moe) {
      aux_sum += L.block->Forward(a.fcproj.data(), a.ln2.data(), BT, L.weights);
      ++moe_layers;
    } else {
      K::MatmulForward(a.fch.data(), a.ln2.data(), P + L.fcw, P + L.fcb, BT, C, 4 * C);
      if (cfg_.relu)
        K::ReluForward(a.fch_act.data(), a.fch.data(), static_cast<long>(BT) * 4 * C);
      else
        K::GeluForward(a.fch_act.data(), a.fch.data(), static_cast<long>(BT) * 4 * C);
      K::MatmulForward(a.fcproj.data(), a.fch_act.data(), P + L.fcprojw, P + L.fcprojb, BT, 4 * C,
                       C);
    }
    // The block output overwrites fcproj in place: residual_mid + mlp.
    K::ResidualForward(a.fcproj.data(), a.fcproj.data(), a.residual_mid.data(), BTC);
    x = a.fcproj.data();
  }
  K::LayerNormForward(lnf_.data(), lnf_mean_.data(), lnf_rstd_.data(), x, P + lnfw_, P + lnfb_, BT,
                      C);
  K::MatmulForward(logits_.data(), lnf_.data(), P + wte_, nullptr, BT, C, V);
  const float loss = K::CrossEntropyForwardBackward(backward ? dlogits_.data() : nullptr,
                                                    logits_.data(), targets, BT, V);
  aux_loss_ = moe_layers ? aux_sum / static_cast<float>(moe_layers) : 0.0f;
  if (!backward) return loss;

  // Backward. Scratch buffers reuse the activation shapes.
  K::Zero(grads_.data(), grads_.size());
  float* G = grads_.data();
  Vec<float>&dx = dx_, &dln = dln_, &dtmp = dtmp_, &dfch = dfch_, &dfch_act = dfch_act_,
  &dqkv = dqkv_, &datt = datt_;
  K::Zero(dx.data(), dx.size());
  K::Zero(dln.data(), dln.size());

  K::MatmulBackward(dln.data(), G + wte_, nullptr, dlogits_.data(), lnf_.data(), P + wte_, BT, C,
                    V);
  const float* xf = cfg_.layers ? acts_.back().fcproj.data() : encoded_.data();
  K::LayerNormBackward(dx.data(), G + lnfw_, G + lnfb_, dln.data(), xf, P + lnfw_, lnf_mean_.data(),
                       lnf_rstd_.data(), BT, C);
  // dx now holds d(block output). Walk the layers backwards.
  for (int l = cfg_.layers - 1; l >= 0; --l) {
    const Layer& L = layers_[l];
    LayerActs& a = acts_[l];
    // MLP branch: out = residual_mid + proj(act(fc(ln2(residual_mid)))), or the MoE.
    K::Zero(dln.data(), dln.size());
    if (L.moe) {
      L.block->Backward(dln.data(), L.grads, dx.data(), a.ln2.data(), L.weights,
                        cfg_.aux_loss_weight);
    } else {
      K::Zero(dfch_act.data(), dfch_act.size());
      K::MatmulBackward(dfch_act.data(), G + L.fcprojw, G + L.fcprojb, dx.data(), a.fch_act.data(),
                        P + L.fcprojw, BT, 4 * C, C);
      K::Zero(dfch.data(), dfch.size());
      if (cfg_.relu)
        K::ReluBackward(dfch.data(), a.fch.data(), dfch_act.data(), static_cast<long>(BT) * 4 * C);
      else
        K::GeluBackward(dfch.data(), a.fch.data(), dfch_act.data(), static_cast<long>(BT) * 4 * C);
      K::MatmulBackward(dln.data(), G + L.fcw, G + L.fcb, dfch.data(), a.ln2.data(), P + L.fcw, BT,
                        C, 4 * C);
    }
    // d(residual_mid) = dx (skip) + LN2 backward; accumulate into dx.
    K::LayerNormBackward(dx.data(), G + L.ln2w, G + L.ln2b, dln.data(), a.residual_mid.data(),
                         P + L.ln2w, a.ln2_mean.data(), a.ln2_rstd.data(), BT, C);
    // Attention branch: residual_mid = residual_in + proj(attn(qkv(ln1(residual_in)))).
    K::Zero(dtmp.data(), dtmp.size());
    K::MatmulBackward(dtmp.data(), G + L.projw, G + L.projb, dx.data(), a.atty.data(), P + L.projw,
                      BT, C, C);
    K::Zero(dqkv.data(), dqkv.size());
    K::AttentionBackward(dqkv.data(), datt.data(), dtmp.data(), a.qkv.data(), a.att.data(), B, T, C,
                         NH);
    K::Zero(dln.data(), dln.size());
    K::MatmulBackward(dln.data(), G + L.qkvw, G + L.qkvb, dqkv.data(), a.ln1.data(), P + L.qkvw, BT,
                      C, 3 * C);
    K::LayerNormBackward(dx.data(), G + L.ln1w, G + L.ln1b, dln.data(), a.residual_in.data(),
                         P + L.ln1w, a.ln1_mean.data(), a.ln1_rstd.data(), BT, C);
  }
  K::EmbeddingBackward(G + wte_, G + wpe_, dx.data(), inputs, B, T, C);
  return loss;
}

template <class K>
double DecoderModelT<K>::FlopsPerToken(int T) const {
  // Matmul parameters a token meets: everything but the position lookup
  // (the tied output counts), and two experts per MoE block (top-2).
  int moe_layers = 0;
  for (const auto& L : layers_) moe_layers += L.moe ? 1 : 0;
  const double per_expert_layer = moe_layers ? static_cast<double>(per_expert_) / moe_layers : 0;
  const double N = static_cast<double>(dense_count_) -
                   static_cast<double>(cfg_.max_seq) * cfg_.d_model +
                   2.0 * moe_layers * per_expert_layer;
  const double attn = 6.0 * cfg_.layers * T * cfg_.d_model;  // QK^T and AV, fwd + bwd, causal half
  return 6.0 * N + attn;
}

}  // namespace vigil::trainer
