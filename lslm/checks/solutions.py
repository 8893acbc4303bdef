"""Worked solutions of the coding exercises, written the way a learner would (by hand, from
torch operations), not by calling lslm. The notebooks' hidden solution cells check these, the
unit tests check that each passes its exercise, and ``lslm student-copy`` leaves them out."""

from __future__ import annotations

import math

import torch


def causal_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    d_k = q.size(-1)
    scores = q @ k.transpose(-2, -1) / math.sqrt(d_k)
    t = q.size(-2)
    future = torch.ones(t, t, dtype=torch.bool, device=q.device).triu(1)
    scores = scores.masked_fill(future, float("-inf"))
    return torch.softmax(scores, dim=-1) @ v


def split_heads(x: torch.Tensor, n_head: int) -> torch.Tensor:
    b, t, c = x.shape
    return x.reshape(b, t, n_head, c // n_head).transpose(1, 2)


def merge_heads(y: torch.Tensor) -> torch.Tensor:
    b, h, t, d = y.shape
    return y.transpose(1, 2).reshape(b, t, h * d)


def cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    log_probs = logits - torch.logsumexp(logits, dim=-1, keepdim=True)
    picked = log_probs.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    return -picked.mean()


def top_p_filter(probs: torch.Tensor, p: float) -> torch.Tensor:
    sorted_probs, order = probs.sort(dim=-1, descending=True)
    before = sorted_probs.cumsum(dim=-1) - sorted_probs  # probability of the tokens ranked above
    keep = before < p
    keep[..., 0] = True
    kept = torch.zeros_like(probs).scatter(-1, order, sorted_probs * keep)
    return kept / kept.sum(dim=-1, keepdim=True)


def dpo_loss(policy_chosen: torch.Tensor, policy_rejected: torch.Tensor, ref_chosen: torch.Tensor,
             ref_rejected: torch.Tensor, beta: float) -> torch.Tensor:
    margin = beta * ((policy_chosen - ref_chosen) - (policy_rejected - ref_rejected))
    return -torch.nn.functional.logsigmoid(margin).mean()


def patchify(images: torch.Tensor, patch: int) -> torch.Tensor:
    b, c, h, w = images.shape
    rows, cols = h // patch, w // patch
    x = images.reshape(b, c, rows, patch, cols, patch)
    x = x.permute(0, 2, 4, 3, 5, 1)  # batch, patch row, patch column, pixel row, pixel column, colour
    return x.reshape(b, rows * cols, patch * patch * c)


def clipped_precision(hypothesis: list, reference: list, n: int) -> float:
    def grams(words: list) -> dict:
        counts: dict = {}
        for i in range(len(words) - n + 1):
            gram = tuple(words[i:i + n])
            counts[gram] = counts.get(gram, 0) + 1
        return counts

    hyp, ref = grams(hypothesis), grams(reference)
    total = sum(hyp.values())
    if total == 0:
        return 0.0
    return sum(min(count, ref.get(gram, 0)) for gram, count in hyp.items()) / total


def rouge_l_f1(hypothesis: list, reference: list) -> float:
    if not hypothesis or not reference:
        return 0.0
    table = [[0] * (len(reference) + 1) for _ in range(len(hypothesis) + 1)]
    for i, h in enumerate(hypothesis, 1):
        for j, r in enumerate(reference, 1):
            table[i][j] = table[i - 1][j - 1] + 1 if h == r else max(table[i - 1][j], table[i][j - 1])
    lcs = table[-1][-1]
    if lcs == 0:
        return 0.0
    precision, recall = lcs / len(hypothesis), lcs / len(reference)
    return 2 * precision * recall / (precision + recall)


def rope(x: torch.Tensor, start: int) -> torch.Tensor:
    head_size = x.size(-1)
    half = head_size // 2
    positions = torch.arange(start, start + x.size(-2), dtype=torch.float32)
    speeds = 10000 ** (-torch.arange(0, head_size, 2, dtype=torch.float32) / head_size)
    angles = positions[:, None] * speeds[None, :]  # (time, half)
    cos, sin = angles.cos(), angles.sin()
    first, second = x[..., :half], x[..., half:]
    return torch.cat((first * cos - second * sin, first * sin + second * cos), dim=-1)


def pre_norm_block(x: torch.Tensor, ln_1, attn, ln_2, mlp) -> torch.Tensor:
    x = x + attn(ln_1(x))  # tokens talk
    return x + mlp(ln_2(x))  # each thinks alone


def clip_gradients(grads: list, max_norm: float) -> list:
    total = torch.sqrt(sum((g.double() ** 2).sum() for g in grads))
    factor = min(1.0, max_norm / (total.item() + 1e-6))
    return [g * factor for g in grads]


def kv_cache_step(q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor, k_new: torch.Tensor,
                  v_new: torch.Tensor) -> tuple:
    keys = torch.cat((k_cache, k_new), dim=-2)
    values = torch.cat((v_cache, v_new), dim=-2)
    weights = torch.softmax(q @ keys.transpose(-2, -1) / math.sqrt(q.size(-1)), dim=-1)
    return weights @ values, keys, values


def lora_forward(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, lora_A: torch.Tensor,
                 lora_B: torch.Tensor, alpha: float) -> torch.Tensor:
    r = lora_A.size(0)
    return x @ weight.T + bias + (alpha / r) * (x @ lora_A.T @ lora_B.T)


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    rms = torch.sqrt((x * x).mean(dim=-1, keepdim=True) + eps)
    return x / rms * weight


def swiglu(x: torch.Tensor, w_gate: torch.Tensor, w_up: torch.Tensor, w_down: torch.Tensor) -> torch.Tensor:
    gate = x @ w_gate.T
    return (gate * torch.sigmoid(gate) * (x @ w_up.T)) @ w_down.T
