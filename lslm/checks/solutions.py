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


def softmax_with_temperature(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    scaled = logits / temperature
    scaled = scaled - scaled.max(dim=-1, keepdim=True).values  # exp of a large logit would overflow
    weights = torch.exp(scaled)
    return weights / weights.sum(dim=-1, keepdim=True)


def merge_pair(word: tuple, pair: tuple) -> tuple:
    out = []
    used = False  # True when this piece was already merged into the one before it
    for i, piece in enumerate(word):
        if used:
            used = False
            continue
        if i + 1 < len(word) and (piece, word[i + 1]) == tuple(pair):
            out.append(piece + word[i + 1])
            used = True
        else:
            out.append(piece)
    return tuple(out)


def bpe_encode(word: str, merges: list) -> list:
    pieces = list(word)
    for left, right in merges:
        joined, i = [], 0
        while i < len(pieces):
            if i + 1 < len(pieces) and pieces[i] == left and pieces[i + 1] == right:
                joined.append(left + right)
                i += 2
            else:
                joined.append(pieces[i])
                i += 1
        pieces = joined
    return pieces


def feed_forward(x: torch.Tensor, w_fc: torch.Tensor, b_fc: torch.Tensor, w_proj: torch.Tensor,
                 b_proj: torch.Tensor) -> torch.Tensor:
    hidden = x @ w_fc.T + b_fc
    hidden = 0.5 * hidden * (1 + torch.erf(hidden / math.sqrt(2)))  # GELU, exactly
    return hidden @ w_proj.T + b_proj


def next_token_blocks(data: torch.Tensor, starts: torch.Tensor, block_size: int) -> tuple:
    x = torch.stack([data[s : s + block_size] for s in starts.tolist()])
    y = torch.stack([data[s + 1 : s + 1 + block_size] for s in starts.tolist()])
    return x, y


def train_step(model, x: torch.Tensor, y: torch.Tensor, optimizer, max_norm: float) -> float:
    optimizer.zero_grad()
    _, loss = model(x, y)
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    total = torch.sqrt(sum((g ** 2).sum() for g in grads))
    if total > max_norm:
        for g in grads:
            g.mul_(max_norm / (total + 1e-6))
    optimizer.step()
    return loss.item()


def top_k_accuracy(logits: torch.Tensor, targets: torch.Tensor, k: int) -> float:
    k = min(k, logits.size(-1))
    best = logits.topk(k, dim=-1).indices
    hits = (best == targets.unsqueeze(-1)).any(dim=-1)
    return hits.float().mean().item()


def mean_pool(hidden: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    positions = torch.arange(hidden.size(1))
    real = (positions[None, :] < lengths[:, None]).float().unsqueeze(-1)  # (batch, time, 1)
    return (hidden * real).sum(dim=1) / lengths[:, None].float()


def brevity_penalty(hyp_length: int, ref_length: int) -> float:
    if hyp_length >= ref_length:
        return 1.0
    if hyp_length == 0:
        return 0.0
    return math.exp(1 - ref_length / hyp_length)


def token_f1(prediction: str, gold: str) -> float:
    import string
    from collections import Counter

    def words(text: str) -> list:
        text = "".join(ch for ch in text.lower() if ch not in string.punctuation)
        return [w for w in text.split() if w not in ("a", "an", "the")]

    p, g = words(prediction), words(gold)
    if not p or not g:
        return float(p == g)
    shared = sum((Counter(p) & Counter(g)).values())
    if shared == 0:
        return 0.0
    precision, recall = shared / len(p), shared / len(g)
    return 2 * precision * recall / (precision + recall)


def best_span(start: torch.Tensor, end: torch.Tensor, max_len: int) -> list:
    spans = []
    for row_start, row_end in zip(start.tolist(), end.tolist()):
        best, where = float("-inf"), (0, 0)
        for s in range(len(row_start)):
            for e in range(s, min(s + max_len, len(row_end))):
                if row_start[s] + row_end[e] > best:
                    best, where = row_start[s] + row_end[e], (s, e)
        spans.append(where)
    return spans


def gpt_params(vocab_size: int, block_size: int, n_layer: int, n_embd: int) -> int:
    c = n_embd
    layer_norm = 2 * c  # a scale and a shift
    attention = (c * 3 * c + 3 * c) + (c * c + c)  # q, k, v together, then the output projection
    mlp = (c * 4 * c + 4 * c) + (4 * c * c + c)
    block = 2 * layer_norm + attention + mlp
    embeddings = vocab_size * c + block_size * c  # the LM head reuses the token embedding
    return embeddings + n_layer * block + layer_norm


def induction_stripe(attention: torch.Tensor, n: int) -> torch.Tensor:
    queries = torch.arange(n, 2 * n)
    keys = queries - n + 1  # the token after the query's first occurrence
    return attention[..., queries, keys].mean(dim=-1)


def average_gradients(worker_grads: list) -> list:
    n = len(worker_grads)
    return [sum(grads) / n for grads in zip(*worker_grads)]


def rouge_n_f1(hypothesis: list, reference: list, n: int) -> float:
    from collections import Counter

    h = Counter(tuple(hypothesis[i : i + n]) for i in range(len(hypothesis) - n + 1))
    r = Counter(tuple(reference[i : i + n]) for i in range(len(reference) - n + 1))
    if not h or not r:
        return 0.0
    shared = sum((h & r).values())
    if shared == 0:
        return 0.0
    precision, recall = shared / sum(h.values()), shared / sum(r.values())
    return 2 * precision * recall / (precision + recall)


def exposure(secret_logprob: float, candidate_logprobs: torch.Tensor) -> float:
    rank = 1 + int((candidate_logprobs > secret_logprob).sum())
    return math.log2(len(candidate_logprobs)) - math.log2(rank)


def clip_per_example(per_example: dict, clip: float) -> dict:
    names = list(per_example)
    n = per_example[names[0]].size(0)
    clipped = {name: [] for name in names}
    for i in range(n):
        norm = math.sqrt(sum((per_example[name][i] ** 2).sum().item() for name in names))
        factor = min(1.0, clip / norm) if norm > 0 else 1.0
        for name in names:
            clipped[name].append(per_example[name][i] * factor)
    return {name: torch.stack(clipped[name]).mean(dim=0) for name in names}


def occlusion(prob_pos, text: str) -> list:
    from lslm.tasks.sentiment import without_word, word_spans

    words = [w for w, _, _ in word_spans(text)]
    before = float(prob_pos([text])[0])
    after = prob_pos([without_word(text, i) for i in range(len(words))])
    return [(w, float(after[i]) - before) for i, w in enumerate(words)]


def logit_lens(stream: torch.Tensor, ln_weight: torch.Tensor, ln_bias: torch.Tensor,
               head_weight: torch.Tensor) -> torch.Tensor:
    mean = stream.mean(dim=-1, keepdim=True)
    var = ((stream - mean) ** 2).mean(dim=-1, keepdim=True)
    normed = (stream - mean) / torch.sqrt(var + 1e-5) * ln_weight + ln_bias
    return torch.softmax(normed @ head_weight.T, dim=-1)


def answer_targets(prompt: list, answer: list) -> tuple:
    ids = torch.tensor(prompt + answer)
    targets = torch.full_like(ids, -100)
    start = len(prompt) - 1  # the prompt's last position predicts the answer's first token
    targets[start : start + len(answer)] = torch.tensor(answer)
    return ids, targets
