"""The coding exercises of the notebooks, each against lslm's own implementation.

Every exercise lists its cases (random tensors, and edge cases) and the usual mistakes it
recognises; ``tests/test_coding_exercises.py`` checks that the worked solution passes and
every listed mistake fails."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from lslm.checks.code import Case, code_exercise


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _randn(*shape: int, seed: int, scale: float = 1.0) -> torch.Tensor:
    return torch.randn(*shape, generator=_gen(seed)) * scale


# ----- notebook 02: attention ----------------------------------------------------------------
def _attention_reference(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    from lslm.attention import attention_weights

    return attention_weights(q, k, causal=True) @ v


def _no_scale(q, k, v):
    return _attention_reference(q * math.sqrt(q.size(-1)), k, v)


def _mask_after_softmax(q, k, v):
    t = q.size(-2)
    w = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(q.size(-1)), dim=-1)
    return (w * torch.ones(t, t).tril()) @ v


def _no_mask(q, k, v):
    return torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(q.size(-1)), dim=-1) @ v


def _softmax_over_queries(q, k, v):
    t = q.size(-2)
    s = (q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))).masked_fill(~torch.ones(t, t, dtype=torch.bool).tril(),
                                                                      float("-inf"))
    return torch.softmax(s, dim=-2).nan_to_num() @ v


@code_exercise(
    "causal_attention",
    "Write causal_attention(q, k, v) for (..., time, d_k) tensors: each position mixes the values of "
    "itself and the positions before it, weighted by softmax of the scaled scores.",
    _attention_reference,
    signature='def causal_attention(q, k, v):\n    """q, k, v: (..., time, d_k) float tensors. Returns (..., time, d_k): for each position,\n    the values of that position and the ones before it, mixed by attention weights."""',
    mistakes=(
        (_no_scale, "the weights are too sharp: look again at what the scores are divided by, and why"),
        (_mask_after_softmax, "the hidden positions were removed after the softmax, so each row no longer "
                              "sums to 1: hide them before it (a score of -inf gets weight 0)"),
        (_no_mask, "every position also read the future: hide the keys after each query"),
        (_softmax_over_queries, "the softmax ran over the wrong axis: each query's weights over the keys "
                                "must sum to 1"),
    ),
)
def _attention_cases() -> list[Case]:
    return [
        Case("one token", (_randn(1, 1, 4, seed=1), _randn(1, 1, 4, seed=2), _randn(1, 1, 4, seed=3)),
             "with one token there is nothing to mix: the output is that token's value"),
        Case("batch 2, 5 tokens, d_k 8", (_randn(2, 5, 8, seed=4), _randn(2, 5, 8, seed=5), _randn(2, 5, 8, seed=6)),
             "compare your weights with the formula step by step on this small case"),
        Case("4 heads, large scores, d_k 64", (_randn(2, 4, 6, 64, seed=7, scale=2.0), _randn(2, 4, 6, 64, seed=8, scale=2.0),
                                               _randn(2, 4, 6, 64, seed=9)),
             "with many dimensions the raw scores grow large; the softmax then picks almost one key"),
        Case("an empty batch", (torch.zeros(0, 3, 4), torch.zeros(0, 3, 4), torch.zeros(0, 3, 4)),
             "a batch of no sequences should give an output of the same (empty) shape"),
    ]


def _split_reference(x: torch.Tensor, n_head: int) -> torch.Tensor:
    from lslm.attention import MultiHeadAttention

    return MultiHeadAttention(x.size(-1), n_head).heads(x.contiguous())


def _split_without_transpose(x, n_head):
    b, t, c = x.shape
    return x.reshape(b, n_head, t, c // n_head)


@code_exercise(
    "split_heads",
    "Write split_heads(x, n_head): (batch, time, channels) -> (batch, n_head, time, channels // n_head), "
    "head h holding channels h*size to (h+1)*size - 1 of every position.",
    _split_reference,
    signature='def split_heads(x, n_head):\n    """x: (batch, time, channels). Returns (batch, n_head, time, channels // n_head)."""',
    mistakes=((_split_without_transpose,
               "the shape is right but the numbers are scrambled: reshape keeps the memory order, so split "
               "the channels first, then move the head axis in front of time"),),
)
def _split_cases() -> list[Case]:
    return [
        Case("1 position, 2 heads", (torch.arange(4.0).reshape(1, 1, 4), 2),
             "head 0 gets the first half of the channels, head 1 the second half"),
        Case("batch 2, 3 positions, 4 heads of 2", (torch.arange(48.0).reshape(2, 3, 8), 4),
             "print x[0, 1] and your result[0, :, 1]: the second should be the first cut into rows"),
        Case("random, 1 head", (_randn(3, 5, 6, seed=10), 1), "with one head nothing is cut, only an axis is added"),
    ]


# ----- notebook 05: the loss ------------------------------------------------------------------
def _ce_reference(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1))


def _ce_no_log_softmax(logits, targets):
    return -logits.gather(-1, targets.unsqueeze(-1)).mean()


def _ce_sum(logits, targets):
    return F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1), reduction="sum")


def _ce_prob(logits, targets):
    return -torch.softmax(logits, -1).gather(-1, targets.unsqueeze(-1)).mean()


@code_exercise(
    "cross_entropy",
    "Write cross_entropy(logits, targets): the mean over all positions of -log p(target), with p the "
    "softmax of the logits over the last axis.",
    _ce_reference,
    signature='def cross_entropy(logits, targets):\n    """logits: (..., vocab) floats; targets: (...) token ids. Returns a 0-d tensor: the mean\n    of -log p(target) over every position."""',
    mistakes=(
        (_ce_no_log_softmax, "raw logits are not log-probabilities: normalise them over the vocabulary first"),
        (_ce_sum, "the loss should not grow with the number of positions: average, don't add"),
        (_ce_prob, "that is minus a probability, not minus a log-probability"),
    ),
)
def _ce_cases() -> list[Case]:
    return [
        Case("one position, 3 tokens", (torch.tensor([[2.0, 0.0, -1.0]]), torch.tensor([0])),
             "work this one out with a calculator: softmax, then -log of the target's share"),
        Case("batch 2 x time 4, vocabulary 10", (_randn(2, 4, 10, seed=11), torch.randint(10, (2, 4), generator=_gen(12))),
             "the logits have a batch and a time axis; the vocabulary is the last axis"),
        Case("very large logits", (_randn(3, 5, seed=13, scale=200.0), torch.tensor([0, 1, 2])),
             "exp() of a large logit overflows to inf: subtract the largest logit first (logsumexp does it)"),
    ]


# ----- notebook 06: top-p --------------------------------------------------------------------
def _top_p_reference(probs: torch.Tensor, p: float) -> torch.Tensor:
    from lslm.model import next_token_probs

    return next_token_probs(probs.log(), top_p=p)


def _top_p_drops_the_crossing_token(probs, p):
    sorted_probs, order = probs.sort(dim=-1, descending=True)
    keep = sorted_probs.cumsum(-1) <= p
    keep[..., 0] = True
    kept = torch.zeros_like(probs).scatter(-1, order, sorted_probs * keep)
    return kept / kept.sum(-1, keepdim=True)


def _top_p_not_renormalised(probs, p):
    sorted_probs, order = probs.sort(dim=-1, descending=True)
    keep = sorted_probs.cumsum(-1) - sorted_probs < p
    return torch.zeros_like(probs).scatter(-1, order, sorted_probs * keep)


@code_exercise(
    "top_p_filter",
    "Write top_p_filter(probs, p): keep the likeliest tokens until together they reach p (the token "
    "that reaches it stays), zero the rest, and rescale the kept ones to sum to 1.",
    _top_p_reference,
    signature='def top_p_filter(probs, p):\n    """probs: (batch, vocab), each row summing to 1; p in (0, 1]. Returns the nucleus\n    distribution: same shape, the kept tokens rescaled to sum to 1, the others 0."""',
    mistakes=(
        (_top_p_drops_the_crossing_token, "you dropped the token that takes the total past p: it stays, "
                                          "so the kept tokens reach at least p"),
        (_top_p_not_renormalised, "the kept probabilities must be rescaled to sum to 1"),
    ),
)
def _top_p_cases() -> list[Case]:
    probs = torch.tensor([[0.5, 0.3, 0.15, 0.05]])
    return [
        Case("p = 0.6 of [0.5, 0.3, 0.15, 0.05]", (probs, 0.6),
             "0.5 alone is below 0.6, so the second token is needed too"),
        Case("p = 1.0 keeps everything", (probs, 1.0), "with p = 1 nothing is dropped"),
        Case("tokens in shuffled order, batch 3", (torch.softmax(_randn(3, 12, seed=14, scale=2.0), -1), 0.9),
             "sort by probability, but put each kept value back at its own token's place"),
        Case("a tiny p keeps the likeliest token", (torch.softmax(_randn(2, 6, seed=15), -1), 1e-6),
             "the likeliest token is always kept, however small p is"),
    ]


# ----- notebook 14: DPO ----------------------------------------------------------------------
def _dpo_reference(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta):
    from lslm.dpo import dpo_loss

    return dpo_loss(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta)[0]


def _dpo_no_reference(pc, pr, rc, rr, beta):
    return -F.logsigmoid(beta * (pc - pr)).mean()


def _dpo_sign(pc, pr, rc, rr, beta):
    return -F.logsigmoid(beta * ((pr - rr) - (pc - rc))).mean()


@code_exercise(
    "dpo_loss",
    "Write dpo_loss(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta): the mean over pairs "
    "of the DPO loss, from summed log-probabilities of shape (batch,).",
    _dpo_reference,
    signature='def dpo_loss(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta):\n    """Each tensor: (batch,) summed log-probabilities of an answer. Returns a 0-d tensor:\n    the DPO loss averaged over the pairs."""',
    mistakes=(
        (_dpo_no_reference, "the reference model's log-probabilities are missing: DPO rewards the change "
                            "from the reference, not the policy's own preference"),
        (_dpo_sign, "the sign is flipped: the loss must fall as the chosen answer gains on the rejected one"),
    ),
)
def _dpo_cases() -> list[Case]:
    z = torch.zeros(1)
    return [
        Case("policy equal to the reference", (z - 3.0, z - 5.0, z - 3.0, z - 5.0, 0.1),
             "when the policy has not moved, every pair's loss is log 2"),
        Case("4 random pairs, beta 0.1", tuple(_randn(4, seed=s, scale=5.0) for s in (16, 17, 18, 19)) + (0.1,),
             "compute one pair by hand: the two reward changes, their difference, then the loss"),
        Case("beta 0.5", tuple(_randn(3, seed=s, scale=5.0) for s in (20, 21, 22, 23)) + (0.5,),
             "beta scales the margin before the sigmoid"),
    ]


# ----- notebook 17: patches -------------------------------------------------------------------
def _patchify_reference(images: torch.Tensor, patch: int) -> torch.Tensor:
    from lslm.vision import patchify

    return patchify(images, patch)


def _patchify_columns_first(images, patch):
    from lslm.vision import patchify

    return patchify(images.transpose(-1, -2), patch)


def _patchify_channels_first(images, patch):
    b, c, h, w = images.shape
    x = images.reshape(b, c, h // patch, patch, w // patch, patch).permute(0, 2, 4, 1, 3, 5)
    return x.reshape(b, (h // patch) * (w // patch), c * patch * patch)


@code_exercise(
    "patchify",
    "Write patchify(images, patch): (batch, 3, H, W) -> (batch, patches, patch*patch*3), patches in "
    "reading order (left to right, then down), each flattened row by row with its 3 colours together.",
    _patchify_reference,
    signature='def patchify(images, patch):\n    """images: (batch, 3, H, W). Returns (batch, (H // patch) * (W // patch), patch * patch * 3)."""',
    mistakes=(
        (_patchify_columns_first, "your patches come column by column (or are transposed): read them left "
                                  "to right, then down"),
        (_patchify_channels_first, "within a patch, keep each pixel's 3 colour values together "
                                   "(red, green, blue of pixel 1, then of pixel 2, ...)"),
    ),
)
def _patchify_cases() -> list[Case]:
    return [
        Case("one 4x4 picture, patch 2", (torch.arange(48, dtype=torch.uint8).reshape(1, 3, 4, 4), 2),
             "patch 0 is the top-left 2x2 block; print it next to images[0, :, :2, :2]"),
        Case("batch 2 of 8x8, patch 4", (torch.randint(256, (2, 3, 8, 8), generator=_gen(24), dtype=torch.uint8), 4),
             "each picture of the batch is cut the same way"),
        Case("patch = the whole picture", (_randn(1, 3, 6, 6, seed=25), 6), "one patch holds every pixel"),
    ]
