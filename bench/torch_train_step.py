#!/usr/bin/env python3
"""The PyTorch baseline for bench/gpu_train_step_bench: the same GPT-2-124M
shape and batch, trained with torch.compile, BF16 autocast and fused AdamW
on one GPU, reporting tokens/s and MFU with the same FLOP accounting
(6 * N * tokens + attention). For the GPU machine, which has PyTorch:

    python3 bench/torch_train_step.py [--batch 16] [--seq 1024] [--steps 10] [--peak-tflops 989]
"""
import argparse
import math
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class Block(nn.Module):
    def __init__(self, c, nh):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(c), nn.LayerNorm(c)
        self.qkv, self.proj = nn.Linear(c, 3 * c), nn.Linear(c, c)
        self.fc, self.fcproj = nn.Linear(c, 4 * c), nn.Linear(4 * c, c)
        self.nh = nh

    def forward(self, x):
        b, t, c = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(c, dim=2)
        q, k, v = (z.view(b, t, self.nh, c // self.nh).transpose(1, 2) for z in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.proj(y.transpose(1, 2).contiguous().view(b, t, c))
        return x + self.fcproj(F.gelu(self.fc(self.ln2(x)), approximate="tanh"))


class GPT(nn.Module):
    def __init__(self, vocab=50304, seq=1024, c=768, layers=12, nh=12):
        super().__init__()
        self.wte, self.wpe = nn.Embedding(vocab, c), nn.Embedding(seq, c)
        self.blocks = nn.ModuleList(Block(c, nh) for _ in range(layers))
        self.lnf = nn.LayerNorm(c)

    def forward(self, idx, targets):
        x = self.wte(idx) + self.wpe(torch.arange(idx.shape[1], device=idx.device))
        for blk in self.blocks:
            x = blk(x)
        logits = self.lnf(x) @ self.wte.weight.t()
        return F.cross_entropy(logits.float().view(-1, logits.shape[-1]), targets.view(-1))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seq", type=int, default=1024)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--peak-tflops", type=float, default=989.0)
    a = ap.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = True
    model = GPT(seq=a.seq).cuda()
    n = sum(p.numel() for p in model.parameters())
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)
    step = torch.compile(model)
    idx = torch.randint(0, 50304, (a.batch, a.seq), device="cuda")
    tgt = torch.randint(0, 50304, (a.batch, a.seq), device="cuda")
    best = math.inf
    for s in range(a.steps + 3):  # compile and warm up first
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = step(idx, tgt)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        torch.cuda.synchronize()
        dt = time.perf_counter() - t0
        if s >= 3:
            best = min(best, dt)
    tokens = a.batch * a.seq
    flops_per_token = 6 * (n - a.seq * 768) + 6 * 12 * a.seq * 768
    tflops = flops_per_token * tokens / best / 1e12
    print(f"torch.compile {torch.cuda.get_device_name()}: {n / 1e6:.1f}M parameters, "
          f"{tokens / best:.0f} tokens/s, {tflops:.1f} TFLOP/s, "
          f"MFU {100 * tflops / a.peak_tflops:.1f}% of {a.peak_tflops:.0f}")


if __name__ == "__main__":
    main()
