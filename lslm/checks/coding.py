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


# ----- notebook 08: BLEU ---------------------------------------------------------------------
def _clipped_reference(hypothesis: list, reference: list, n: int) -> float:
    from lslm.tasks.metrics import bleu_stats

    return float(bleu_stats([" ".join(hypothesis)], [" ".join(reference)], max_n=n).precisions[n - 1])


def _grams(words: list, n: int) -> list:
    return [tuple(words[i:i + n]) for i in range(len(words) - n + 1)]


def _unclipped(hypothesis, reference, n):
    h, r = _grams(hypothesis, n), set(_grams(reference, n))
    return sum(g in r for g in h) / len(h) if h else 0.0


def _over_reference(hypothesis, reference, n):
    h, r = _grams(hypothesis, n), _grams(reference, n)
    return sum(min(h.count(g), r.count(g)) for g in set(h)) / len(r) if r else 0.0


@code_exercise(
    "clipped_precision",
    "Write clipped_precision(hypothesis, reference, n) for two lists of words: the share of the "
    "hypothesis's n-grams found in the reference, each n-gram credited at most as often as the "
    "reference has it.",
    _clipped_reference,
    signature='''def clipped_precision(hypothesis, reference, n):
    """hypothesis, reference: lists of words; n: 1 for words, 2 for pairs, ... Returns a
    float from 0 to 1 (0.0 when the hypothesis has no n-grams)."""''',
    mistakes=(
        (_unclipped, "a repeated n-gram earned credit every time: credit each at most as often as the "
                     "reference has it"),
        (_over_reference, "that divides by the reference's n-grams (a recall): precision divides by the "
                          "hypothesis's"),
    ),
)
def _clipped_cases() -> list[Case]:
    return [
        Case("'the the the the' against 'the cat is on the mat', n = 1",
             ("the the the the".split(), "the cat is on the mat".split(), 1),
             "the reference has 'the' twice: the hypothesis cannot earn more than 2 for it"),
        Case("pairs, n = 2", ("the cat sat on the mat".split(), "the cat is on the mat".split(), 2),
             "list the hypothesis's word pairs, then look each up in the reference's"),
        Case("a hypothesis shorter than n", (["hello"], "hello world".split(), 2),
             "one word has no pairs: there is nothing to score, so the precision is 0.0"),
    ]


# ----- notebook 13: ROUGE-L ------------------------------------------------------------------
def _rouge_l_reference(hypothesis: list, reference: list) -> float:
    from lslm.tasks.metrics import rouge_l

    return float(rouge_l(" ".join(hypothesis), " ".join(reference)).fmeasure)


def _longest_substring_f1(hypothesis, reference):
    best = 0
    for i in range(len(hypothesis)):
        for j in range(len(reference)):
            k = 0
            while i + k < len(hypothesis) and j + k < len(reference) and hypothesis[i + k] == reference[j + k]:
                k += 1
            best = max(best, k)
    if not best:
        return 0.0
    p, r = best / len(hypothesis), best / len(reference)
    return 2 * p * r / (p + r)


def _lcs_precision(hypothesis, reference):
    from lslm.tasks.metrics import lcs_length

    return lcs_length(hypothesis, reference) / len(hypothesis) if hypothesis and reference else 0.0


@code_exercise(
    "rouge_l_f1",
    "Write rouge_l_f1(hypothesis, reference) for two lists of words: the F1 of the precision and "
    "recall of their longest common subsequence.",
    _rouge_l_reference,
    signature='''def rouge_l_f1(hypothesis, reference):
    """hypothesis, reference: lists of lower-case words. Returns a float from 0 to 1
    (0.0 when either list is empty)."""''',
    mistakes=(
        (_longest_substring_f1, "that is the longest common run of neighbouring words; a subsequence may "
                                "skip words in between"),
        (_lcs_precision, "that is the precision alone: combine it with the recall"),
    ),
)
def _rouge_l_cases() -> list[Case]:
    return [
        Case("a summary that skips words", ("tom found the key".split(), "tom quickly found the old key".split()),
             "'tom found the key' appears in the reference in order, with words in between"),
        Case("reordered words", ("the key tom found".split(), "tom found the key".split()),
             "order matters: only words in the same order count"),
        Case("an empty hypothesis", ([], "tom found the key".split()), "no words, no overlap: 0.0"),
    ]


# ----- notebook 16: RoPE ---------------------------------------------------------------------
def _rope_reference(x: torch.Tensor, start: int) -> torch.Tensor:
    from lslm.attention import apply_rope

    return apply_rope(x, start)


def _rope_interleaved(x, start):
    half = x.size(-1) // 2
    pairs = x.reshape(*x.shape[:-1], half, 2)
    swapped = torch.cat((pairs[..., 0], pairs[..., 1]), dim=-1)
    out = _rope_reference(swapped, start)
    return torch.stack((out[..., :half], out[..., half:]), dim=-1).reshape(x.shape)


def _rope_backwards(x, start):
    half = x.size(-1) // 2
    y = _rope_reference(torch.cat((x[..., :half], -x[..., half:]), -1), start)
    return torch.cat((y[..., :half], -y[..., half:]), -1)


@code_exercise(
    "rope",
    "Write rope(x, start) for (batch, heads, time, head_size) queries or keys: turn each pair of "
    "dimensions (i, i + head_size/2) of the position start + t by its angle.",
    _rope_reference,
    signature='''def rope(x, start):
    """x: (batch, heads, time, head_size) with an even head_size; the first row is position
    start. Pair i is dimensions i and i + head_size // 2; it turns by
    position * 10000 ** (-2 * i / head_size) radians. Returns the same shape."""''',
    mistakes=(
        (_rope_interleaved, "you paired neighbouring dimensions (0 with 1, 2 with 3); here dimension i "
                            "pairs with i + head_size/2, as in Hugging Face's Llama"),
        (_rope_backwards, "the rotation turns the wrong way: check the sign of the sine in each half"),
    ),
)
def _rope_cases() -> list[Case]:
    return [
        Case("position 0 turns nothing", (_randn(1, 1, 1, 8, seed=26), 0), "an angle of 0 leaves a vector as it is"),
        Case("position 1, head size 2", (torch.tensor([[[[1.0, 0.0]]]]), 1),
             "one pair turning by 1 radian: the result is (cos 1, sin 1)"),
        Case("batch 2, 3 heads, 5 positions from 7, head size 16", (_randn(2, 3, 5, 16, seed=27), 7),
             "each position turns by its own angle, and the first row is position start, not 0"),
    ]


# ----- notebook 03: a pre-norm block ---------------------------------------------------------
def _block(seed: int, n_embd: int = 16, n_head: int = 2):
    from lslm.model import Block, GPTConfig
    from lslm.utils import seeded

    with seeded(seed):
        block = Block(GPTConfig(vocab_size=8, block_size=16, n_layer=1, n_head=n_head, n_embd=n_embd)).eval()
    for p in block.parameters():
        p.requires_grad_(False)
    return block


def _parts(block) -> tuple:
    return block.ln_1, lambda h: block.attn(h)[0], block.ln_2, block.mlp


def _block_reference(x, ln_1, attn, ln_2, mlp):
    h = x + attn(ln_1(x))
    return h + mlp(ln_2(h))


def _post_norm(x, ln_1, attn, ln_2, mlp):
    h = ln_1(x + attn(x))
    return ln_2(h + mlp(h))


def _no_residual(x, ln_1, attn, ln_2, mlp):
    return mlp(ln_2(attn(ln_1(x))))


def _parallel(x, ln_1, attn, ln_2, mlp):
    return x + attn(ln_1(x)) + mlp(ln_2(x))


@code_exercise(
    "pre_norm_block",
    "Write pre_norm_block(x, ln_1, attn, ln_2, mlp): one GPT block, attention then MLP, each as a "
    "pre-norm residual sublayer.",
    _block_reference,
    signature='''def pre_norm_block(x, ln_1, attn, ln_2, mlp):
    """x: (batch, time, n_embd). ln_1, attn, ln_2, mlp: functions from (batch, time, n_embd)
    to the same shape. Returns the block's output, the same shape as x."""''',
    mistakes=(
        (_post_norm, "that normalises after adding (the original Transformer's post-norm): GPT-2 "
                     "normalises the sublayer's input and leaves the residual stream raw"),
        (_no_residual, "the residual connections are missing: each sublayer adds to its input"),
        (_parallel, "the MLP must read the stream after attention has added to it, not the block's input"),
    ),
)
def _block_cases() -> list[Case]:
    cases = []
    for label, seed, shape in (("one token", 30, (1, 1, 16)), ("batch 2, 5 tokens", 31, (2, 5, 16)),
                               ("a longer sequence", 32, (1, 12, 16))):
        block = _block(seed)
        # a trained block's layers are not the identity: give the norms some gain and shift
        with torch.no_grad():
            for ln in (block.ln_1, block.ln_2):
                ln.weight.copy_(1 + 0.5 * _randn(16, seed=seed + 100))
                ln.bias.copy_(0.3 * _randn(16, seed=seed + 200))
        cases.append(Case(label, (_randn(*shape, seed=seed + 300, scale=2.0), *_parts(block)),
                          "write the two sublayers one after the other: norm, sublayer, add"))
    return cases


# ----- notebook 04: gradient clipping --------------------------------------------------------
def _clip_reference(grads: list, max_norm: float) -> list:
    params = [torch.nn.Parameter(torch.zeros_like(g)) for g in grads]
    for p, g in zip(params, grads):
        p.grad = g.clone()
    torch.nn.utils.clip_grad_norm_(params, max_norm)
    return [p.grad for p in params]


def _clip_each(grads, max_norm):
    return [g * min(1.0, max_norm / (g.norm().item() + 1e-6)) for g in grads]


def _clip_always(grads, max_norm):
    total = torch.sqrt(sum((g ** 2).sum() for g in grads))
    return [g * (max_norm / (total + 1e-6)) for g in grads]


@code_exercise(
    "clip_gradients",
    "Write clip_gradients(grads, max_norm): if the norm of all the gradients together is above "
    "max_norm, scale every gradient by the same factor so that it becomes max_norm.",
    _clip_reference,
    signature='''def clip_gradients(grads, max_norm):
    """grads: a list of tensors (one per parameter); max_norm: a positive number.
    Returns a new list of tensors of the same shapes."""''',
    mistakes=(
        (_clip_each, "each tensor was clipped on its own: the norm is of all the gradients together, and "
                     "one factor scales them all (the direction of the update must not change)"),
        (_clip_always, "small gradients were scaled up: clipping only ever shrinks"),
    ),
)
def _clip_cases() -> list[Case]:
    return [
        Case("one gradient of norm 5, max 1", ([torch.tensor([3.0, 4.0])], 1.0), "3-4-5: the result is (0.6, 0.8)"),
        Case("already small: left alone", ([torch.tensor([0.3, 0.4]), torch.tensor([[0.1]])], 1.0),
             "a norm below max_norm means no change"),
        Case("three tensors, together too large", ([_randn(4, 4, seed=33, scale=3.0), _randn(4, seed=34),
                                                   _randn(2, 3, seed=35, scale=0.1)], 0.5),
             "square every number of every tensor, add them all up, take the square root: that is the norm"),
    ]


# ----- notebook 06: one step with a KV cache -------------------------------------------------
def _cache_reference(q, k_cache, v_cache, k_new, v_new):
    from lslm.attention import attend

    k, v = torch.cat((k_cache, k_new), dim=-2), torch.cat((v_cache, v_new), dim=-2)
    out, _ = attend(q, k, v, causal=True, return_weights=True)
    return out, k, v


def _cache_forgets_new(q, k_cache, v_cache, k_new, v_new):
    from lslm.attention import attend

    out, _ = attend(q, k_cache, v_cache, causal=False, return_weights=True)
    return out, torch.cat((k_cache, k_new), -2), torch.cat((v_cache, v_new), -2)


def _cache_only_new(q, k_cache, v_cache, k_new, v_new):
    return v_new, torch.cat((k_cache, k_new), -2), torch.cat((v_cache, v_new), -2)


@code_exercise(
    "kv_cache_step",
    "Write kv_cache_step(q, k_cache, v_cache, k_new, v_new) for one new token: add its key and value "
    "to the cache, let its query attend to every cached position, and return (output, keys, values).",
    _cache_reference,
    signature='''def kv_cache_step(q, k_cache, v_cache, k_new, v_new):
    """q, k_new, v_new: (batch, heads, 1, head_size) for the new token; k_cache, v_cache:
    (batch, heads, past, head_size). Returns (output (batch, heads, 1, head_size),
    keys and values (batch, heads, past + 1, head_size))."""''',
    mistakes=(
        (_cache_forgets_new, "the new token did not attend to itself: add its key and value to the cache "
                             "before attending"),
        (_cache_only_new, "the output is just the new token's value: it must mix every cached value"),
    ),
)
def _cache_cases() -> list[Case]:
    def case(label, past, seed, hint):
        b, h, d = 2, 2, 8
        return Case(label, (_randn(b, h, 1, d, seed=seed), _randn(b, h, past, d, seed=seed + 1),
                            _randn(b, h, past, d, seed=seed + 2), _randn(b, h, 1, d, seed=seed + 3),
                            _randn(b, h, 1, d, seed=seed + 4)), hint)

    return [
        case("an empty cache", 0, 40, "with nothing cached the token can only attend to itself"),
        case("3 cached tokens", 3, 50, "the cache grows by one position along the time axis (-2)"),
        case("10 cached tokens", 10, 60, "the new query may look at every cached key: nothing is in its future"),
    ]


# ----- notebook 14: a LoRA layer -------------------------------------------------------------
def _lora_reference(x, weight, bias, lora_A, lora_B, alpha):
    from lslm.lora import LoRALinear

    base = torch.nn.Linear(weight.size(1), weight.size(0))
    with torch.no_grad():
        base.weight.copy_(weight)
        base.bias.copy_(bias)
    layer = LoRALinear(base, r=lora_A.size(0), alpha=alpha)
    with torch.no_grad():
        layer.lora_A.copy_(lora_A)
        layer.lora_B.copy_(lora_B)
        return layer(x)


def _lora_unscaled(x, weight, bias, lora_A, lora_B, alpha):
    return x @ weight.T + bias + x @ lora_A.T @ lora_B.T


def _lora_scale_alpha(x, weight, bias, lora_A, lora_B, alpha):
    return x @ weight.T + bias + alpha * (x @ lora_A.T @ lora_B.T)


@code_exercise(
    "lora_forward",
    "Write lora_forward(x, weight, bias, lora_A, lora_B, alpha): the frozen linear layer's output "
    "plus LoRA's low-rank change, scaled by alpha / r.",
    _lora_reference,
    signature='''def lora_forward(x, weight, bias, lora_A, lora_B, alpha):
    """x: (..., n_in); weight: (n_out, n_in); bias: (n_out,); lora_A: (r, n_in);
    lora_B: (n_out, r); alpha: a number. Returns (..., n_out)."""''',
    mistakes=(
        (_lora_unscaled, "the low-rank change is not scaled: LoRA multiplies it by alpha / r"),
        (_lora_scale_alpha, "the scale is alpha / r, not alpha: dividing by the rank keeps a change of the "
                            "same size when you try another r"),
    ),
)
def _lora_cases() -> list[Case]:
    def case(label, n_in, n_out, r, alpha, seed, hint, batch=(3,)):
        return Case(label, (_randn(*batch, n_in, seed=seed), _randn(n_out, n_in, seed=seed + 1),
                            _randn(n_out, seed=seed + 2), _randn(r, n_in, seed=seed + 3),
                            _randn(n_out, r, seed=seed + 4), alpha), hint)

    start = case("B = 0 at the start", 6, 4, 2, 16.0, 70, "the base layer is x @ weight.T + bias", batch=(1,))
    start = Case(start.label, start.args[:4] + (torch.zeros_like(start.args[4]), start.args[5]), start.hint)
    return [
        start,
        case("rank 2, alpha 16", 8, 5, 2, 16.0, 80, "the change is x @ A.T @ B.T, times a scale"),
        case("a batch of sequences, rank 4, alpha 4", 8, 8, 4, 4.0, 90, "x may have several leading axes",
             batch=(2, 3)),
    ]


# ----- notebook 02: merging the heads back -----------------------------------------------------
def _merge_reference(y: torch.Tensor) -> torch.Tensor:
    from lslm.attention import SelfAttention

    b, h, t, d = y.shape
    attention = SelfAttention(h * d, h)
    with torch.no_grad():  # an output projection that changes nothing: merge() is then the merge alone
        attention.c_proj.weight.copy_(torch.eye(h * d))
        attention.c_proj.bias.zero_()
        return attention.merge(y)


def _merge_without_transpose(y):
    b, h, t, d = y.shape
    return y.reshape(b, t, h * d)


@code_exercise(
    "merge_heads",
    "Write merge_heads(y): (batch, heads, time, head_size) -> (batch, time, heads * head_size), "
    "each position's heads side by side, head 0 first: the inverse of split_heads.",
    _merge_reference,
    signature='''def merge_heads(y):
    """y: (batch, heads, time, head_size). Returns (batch, time, heads * head_size)."""''',
    mistakes=((_merge_without_transpose,
               "the shape is right but positions and heads are mixed up: move the time axis in front "
               "of the heads before joining them"),),
)
def _merge_cases() -> list[Case]:
    return [
        Case("2 heads, 1 position", (torch.arange(4.0).reshape(1, 2, 1, 2),), "[[0, 1]] and [[2, 3]] become [0, 1, 2, 3]"),
        Case("batch 2, 4 heads, 3 positions", (_randn(2, 4, 3, 2, seed=100),),
             "merge_heads(split_heads(x, 4)) must give x back: try it"),
    ]


# ----- notebook 16: RMSNorm and SwiGLU -------------------------------------------------------
def _rms_reference(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    from lslm.model import RMSNorm

    norm = RMSNorm(x.size(-1), eps)
    with torch.no_grad():
        norm.weight.copy_(weight)
        return norm(x)


def _rms_centred(x, weight, eps):
    x = x - x.mean(-1, keepdim=True)
    return x / torch.sqrt((x * x).mean(-1, keepdim=True) + eps) * weight


def _rms_eps_outside(x, weight, eps):
    return x / (torch.sqrt((x * x).mean(-1, keepdim=True)) + eps) * weight


@code_exercise(
    "rms_norm",
    "Write rms_norm(x, weight, eps): each vector of the last axis divided by its root mean square "
    "(with eps inside the root), then scaled feature by feature by weight.",
    _rms_reference,
    signature='''def rms_norm(x, weight, eps):
    """x: (..., n); weight: (n,); eps: a small number. Returns the same shape as x."""''',
    mistakes=(
        (_rms_centred, "that subtracts the mean first, as LayerNorm does: RMSNorm only rescales"),
        (_rms_eps_outside, "eps goes inside the square root, next to the mean of the squares"),
    ),
)
def _rms_cases() -> list[Case]:
    return [
        Case("one vector (3, 4)", (torch.tensor([3.0, 4.0]), torch.ones(2), 0.0),
             "the root mean square of (3, 4) is sqrt((9 + 16) / 2)"),
        Case("a batch, a weight", (_randn(2, 5, 8, seed=101, scale=3.0) + 2.0, _randn(8, seed=102), 1e-5),
             "the mean runs over the last axis only, one vector at a time"),
        Case("tiny values, large eps", (_randn(3, 4, seed=103, scale=1e-3), torch.ones(4), 1e-2),
             "with values this small, eps dominates: where it sits changes the result"),
    ]


def _swiglu_reference(x, w_gate, w_up, w_down):
    from lslm.model import SwiGLU

    layer = SwiGLU(w_gate.size(1), w_gate.size(0))
    with torch.no_grad():
        layer.w_gate.weight.copy_(w_gate)
        layer.w_up.weight.copy_(w_up)
        layer.c_proj.weight.copy_(w_down)
        return layer(x)


def _swiglu_gelu(x, w_gate, w_up, w_down):
    return (F.gelu(x @ w_gate.T) * (x @ w_up.T)) @ w_down.T


def _swiglu_swapped(x, w_gate, w_up, w_down):
    return (F.silu(x @ w_up.T) * (x @ w_gate.T)) @ w_down.T


@code_exercise(
    "swiglu",
    "Write swiglu(x, w_gate, w_up, w_down): Llama's feed-forward layer, SiLU of the gate branch "
    "times the up branch, then down to the model's width (no biases).",
    _swiglu_reference,
    signature='''def swiglu(x, w_gate, w_up, w_down):
    """x: (..., n_embd); w_gate, w_up: (hidden, n_embd); w_down: (n_embd, hidden).
    Returns (..., n_embd)."""''',
    mistakes=(
        (_swiglu_gelu, "that gate uses GELU: SwiGLU's gate is SiLU (x * sigmoid(x))"),
        (_swiglu_swapped, "the SiLU went on the up branch: it belongs on the gate branch"),
    ),
)
def _swiglu_cases() -> list[Case]:
    def case(label, n, hidden, seed, hint, batch=(2,)):
        return Case(label, (_randn(*batch, n, seed=seed), _randn(hidden, n, seed=seed + 1),
                            _randn(hidden, n, seed=seed + 2), _randn(n, hidden, seed=seed + 3)), hint)

    return [
        case("width 4, hidden 8", 4, 8, 110, "three matrix products: two up, one down"),
        case("a batch of sequences", 6, 16, 120, "x may have several leading axes", batch=(2, 3)),
    ]


# ----- notebook 00: temperature ---------------------------------------------------------------
def _temperature_reference(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    from lslm.model import next_token_probs  # what GPT.generate samples from

    return next_token_probs(logits, temperature)


def _temperature_times(logits, temperature):
    return torch.softmax(logits * temperature, dim=-1)


def _temperature_after(logits, temperature):
    return torch.softmax(logits, dim=-1) / temperature


def _temperature_wrong_axis(logits, temperature):
    return torch.softmax(logits / temperature, dim=0)


@code_exercise(
    "softmax_with_temperature",
    "Write softmax_with_temperature(logits, temperature): the next-token probabilities after "
    "dividing the logits by the temperature (below 1: sharper, above 1: flatter).",
    _temperature_reference,
    signature='''def softmax_with_temperature(logits, temperature):
    """logits: (..., vocab) floats; temperature: a positive number. Returns probabilities of
    the same shape, each row summing to 1."""''',
    mistakes=(
        (_temperature_times, "a low temperature must make the distribution sharper: look at whether you "
                             "multiplied or divided"),
        (_temperature_after, "the temperature goes in before the softmax; after it, the rows no longer "
                             "sum to 1"),
        (_temperature_wrong_axis, "each row (one position) is one distribution over the vocabulary: "
                                  "normalise over the last axis"),
    ),
)
def _temperature_cases() -> list[Case]:
    return [
        Case("temperature 1 on [2, 1, 0]", (torch.tensor([2.0, 1.0, 0.0]), 1.0),
             "at temperature 1 this is the plain softmax"),
        Case("temperature 0.5, batch 3 of 6 tokens", (_randn(3, 6, seed=40), 0.5),
             "halving the temperature doubles every gap between logits"),
        Case("large logits (about 1000)", (torch.tensor([[1000.0, 999.0, 990.0]]), 1.0),
             "exp(1000) overflows: subtract each row's largest logit first (that does not change "
             "the softmax)"),
        Case("temperature 3 on a (2, 4, 5) tensor", (_randn(2, 4, 5, seed=41, scale=3.0), 3.0),
             "every position's row is its own distribution"),
    ]


# ----- notebook 01: a BPE merge step, and encoding with the learned merges --------------------
def _bpe_merge_reference(word, pair):
    from lslm.tokenizers.bpe import merge_pair

    return merge_pair(word, pair)


def _bpe_merge_first_only(word, pair):
    for i in range(len(word) - 1):
        if (word[i], word[i + 1]) == tuple(pair):
            return tuple(word[:i]) + (word[i] + word[i + 1],) + tuple(word[i + 2 :])
    return tuple(word)


def _bpe_merge_right_to_left(word, pair):
    out, i = list(word), len(word) - 2
    while i >= 0:
        if i + 1 < len(out) and (out[i], out[i + 1]) == tuple(pair):
            out[i : i + 2] = [out[i] + out[i + 1]]
            i -= 2
        else:
            i -= 1
    return tuple(out)


@code_exercise(
    "merge_pair",
    "Write merge_pair(word, pair): the word (a tuple of pieces) with every occurrence of the two "
    "pieces of pair, side by side, replaced by one piece; scan left to right.",
    _bpe_merge_reference,
    signature='''def merge_pair(word, pair):
    """word: a tuple of pieces, e.g. ("▁", "t", "h", "e"); pair: two pieces, e.g. ("t", "h").
    Returns a tuple of pieces: ("▁", "th", "e")."""''',
    mistakes=(
        (_bpe_merge_first_only, "only the first occurrence was merged: merge every one"),
        (_bpe_merge_right_to_left, "scan from the left: in ('a', 'a', 'a') the first two pieces are merged, "
                               "giving ('aa', 'a')"),
    ),
)
def _bpe_merge_cases() -> list[Case]:
    return [
        Case("('▁', 't', 'h', 'e') with ('t', 'h')", (("▁", "t", "h", "e"), ("t", "h")),
             "the two pieces become one string, and the pieces around them stay"),
        Case("two occurrences", (("▁", "t", "h", "a", "t", "h"), ("t", "h")), "every occurrence is merged"),
        Case("('a', 'a', 'a') with ('a', 'a')", (("a", "a", "a"), ("a", "a")),
             "a piece can be used by one merge only; going left to right, the first two pieces win"),
        Case("a pair that is not there", (("▁", "c", "a", "t"), ("a", "c")), "nothing to merge: the same pieces"),
        Case("merged pieces merge again", (("▁t", "h", "e", "▁th", "e"), ("▁th", "e")),
             "compare whole pieces, not letters: '▁t' followed by 'h' is not the piece '▁th'"),
        Case("a one-piece word", ((".",), (".", ".")), "a word of one piece has no pairs"),
        Case("an empty word", ((), ("a", "b")), "no pieces in, no pieces out (an empty tuple)"),
    ]


def _encode_reference(word, merges):
    from lslm.tokenizers.bpe import encode_word

    return encode_word(word, merges)


def _encode_reversed(word, merges):
    from lslm.tokenizers.bpe import encode_word

    return encode_word(word, list(reversed(merges)))


def _encode_one_pass(word, merges):
    pieces = tuple(word)
    for pair in merges:
        for i in range(len(pieces) - 1):
            if (pieces[i], pieces[i + 1]) == tuple(pair):
                pieces = pieces[:i] + (pieces[i] + pieces[i + 1],) + pieces[i + 2 :]
                break
    return list(pieces)


@code_exercise(
    "bpe_encode",
    "Write bpe_encode(word, merges): start from the word's characters and apply the learned merges "
    "one after another, in the order they were learned; return the list of pieces.",
    _encode_reference,
    signature='''def bpe_encode(word, merges):
    """word: a string, e.g. "▁the"; merges: a list of pairs in the order BPE learned them,
    e.g. [("▁", "t"), ("▁t", "h")]. Returns the word's pieces as a list of strings."""''',
    mistakes=(
        (_encode_reversed, "the order matters: replay the merges in the order they were learned, first one first"),
        (_encode_one_pass, "each merge applies to every occurrence in the word, not only the first"),
    ),
)
def _encode_cases() -> list[Case]:
    built = [("▁", "t"), ("▁t", "h"), ("▁th", "e")]
    return [
        Case("'▁the' with merges that build it", ("▁the", built), "each merge can use a piece an earlier one made"),
        Case("no merges", ("▁cat", []), "with no merges a word is its characters"),
        Case("'abc' with [('a', 'b'), ('b', 'c')]", ("abc", [("a", "b"), ("b", "c")]),
             "once 'a' and 'b' are one piece, 'b' is no longer free to join 'c'"),
        Case("'▁tatat' with [('a', 't'), ('▁', 't')]", ("▁tatat", [("a", "t"), ("▁", "t")]),
             "'at' occurs twice in '▁tatat'"),
        Case("a word the merges never touch", ("xyz", built), "merges of other letters change nothing"),
    ]


# ----- notebook 03: the feed-forward layer -------------------------------------------------------
def _mlp_reference(x, w_fc, b_fc, w_proj, b_proj):
    from lslm.model import MLP

    mlp = MLP(w_fc.size(1), w_fc.size(0))
    with torch.no_grad():
        for param, value in zip((mlp.c_fc.weight, mlp.c_fc.bias, mlp.c_proj.weight, mlp.c_proj.bias),
                                (w_fc, b_fc, w_proj, b_proj)):
            param.copy_(value)
        return mlp(x)


def _mlp_relu(x, w_fc, b_fc, w_proj, b_proj):
    return torch.relu(x @ w_fc.T + b_fc) @ w_proj.T + b_proj


def _mlp_tanh_gelu(x, w_fc, b_fc, w_proj, b_proj):
    return F.gelu(x @ w_fc.T + b_fc, approximate="tanh") @ w_proj.T + b_proj


def _mlp_no_activation(x, w_fc, b_fc, w_proj, b_proj):
    return (x @ w_fc.T + b_fc) @ w_proj.T + b_proj


def _mlp_no_bias(x, w_fc, b_fc, w_proj, b_proj):
    return F.gelu(x @ w_fc.T) @ w_proj.T


@code_exercise(
    "feed_forward",
    "Write feed_forward(x, w_fc, b_fc, w_proj, b_proj): widen each position with the first linear "
    "layer, apply GELU, and project back with the second.",
    _mlp_reference,
    signature='''def feed_forward(x, w_fc, b_fc, w_proj, b_proj):
    """x: (..., n_embd). w_fc: (n_hidden, n_embd) and b_fc: (n_hidden,), the widening layer;
    w_proj: (n_embd, n_hidden) and b_proj: (n_embd,), the way back. Weights are stored as
    nn.Linear stores them: (out, in). Returns (..., n_embd)."""''',
    mistakes=(
        (_mlp_relu, "close, but that is ReLU: GPT-2's activation is GELU, which lets small negative values through"),
        (_mlp_tanh_gelu, "that is GELU's tanh approximation; lslm's MLP uses the exact GELU (torch's default)"),
        (_mlp_no_activation, "without a non-linearity in between, two linear layers are just one linear layer"),
        (_mlp_no_bias, "each linear layer adds its bias"),
    ),
)
def _mlp_cases() -> list[Case]:
    def weights(c: int, h: int, seed: int) -> tuple:
        return (_randn(h, c, seed=seed, scale=0.5), _randn(h, seed=seed + 1, scale=0.1),
                _randn(c, h, seed=seed + 2, scale=0.5), _randn(c, seed=seed + 3, scale=0.1))

    return [
        Case("one position, 4 channels, 16 hidden", (_randn(1, 1, 4, seed=42), *weights(4, 16, 43)),
             "a Linear layer stored as (out, in) computes x @ weight.T + bias"),
        Case("batch 2, 5 positions, 8 channels, 32 hidden", (_randn(2, 5, 8, seed=47), *weights(8, 32, 48)),
             "every position goes through the same two layers on its own"),
        Case("an all-zero input", (torch.zeros(1, 3, 6), *weights(6, 24, 52)),
             "with x = 0 only the biases (and the activation between them) are left"),
    ]


# ----- notebook 04: the targets, and one training step --------------------------------------
def _blocks_reference(data, starts, block_size):
    from lslm.data import blocks_at

    return blocks_at(data, starts, block_size)


def _blocks_no_shift(data, starts, block_size):
    x = torch.stack([data[s : s + block_size] for s in starts.tolist()])
    return x, x.clone()


def _blocks_backwards(data, starts, block_size):
    x = torch.stack([data[s : s + block_size] for s in starts.tolist()])
    y = torch.stack([data[max(s - 1, 0) : max(s - 1, 0) + block_size] for s in starts.tolist()])
    return x, y


def _blocks_too_long(data, starts, block_size):
    x = torch.stack([data[s : s + block_size + 1] for s in starts.tolist()])
    return x, torch.stack([data[s + 1 : s + block_size + 2] for s in starts.tolist()])


@code_exercise(
    "next_token_blocks",
    "Write next_token_blocks(data, starts, block_size): for each start, the block of block_size "
    "tokens that begins there (x), and the block of what comes next at every position (y).",
    _blocks_reference,
    signature='''def next_token_blocks(data, starts, block_size):
    """data: a 1-D tensor of token ids; starts: a 1-D tensor of start positions. Returns
    (x, y), each (len(starts), block_size): y[b, t] is the token that follows x[b, t]."""''',
    mistakes=(
        (_blocks_no_shift, "y equals x: the target at each position is the *next* token"),
        (_blocks_backwards, "y is shifted the wrong way: it should be one token later in the text, not earlier"),
        (_blocks_too_long, "each block holds exactly block_size tokens"),
    ),
)
def _blocks_cases() -> list[Case]:
    counting = torch.arange(20)
    return [
        Case("data 0..19, starts [0, 5], block 4", (counting, torch.tensor([0, 5]), 4),
             "with data 0, 1, 2, ... the token after t is t + 1: check your y row by row"),
        Case("the last possible start", (counting, torch.tensor([15]), 4),
             "a block starting at 15 reads tokens 15-18, and its targets reach the last token, 19"),
        Case("block size 1", (counting, torch.tensor([3, 7, 0]), 1), "one input token, one target each"),
        Case("random ids", (torch.randint(0, 50, (40,), generator=_gen(55)), torch.tensor([2, 30, 11]), 8),
             "x[b] is data[start : start + block_size]; y[b] starts one token later"),
    ]


def _tiny_gpt(seed: int):
    from lslm.model import GPT, GPTConfig

    return GPT(GPTConfig(vocab_size=11, block_size=8, n_layer=1, n_head=2, n_embd=16), seed=seed)


def _step_reference(model, x, y, optimizer, max_norm):
    optimizer.zero_grad(set_to_none=True)
    _, loss = model(x, y)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)
    optimizer.step()
    return loss.item()


def _step_no_zero_grad(model, x, y, optimizer, max_norm):
    _, loss = model(x, y)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)
    optimizer.step()
    return loss.item()


def _step_no_clip(model, x, y, optimizer, max_norm):
    optimizer.zero_grad()
    _, loss = model(x, y)
    loss.backward()
    optimizer.step()
    return loss.item()


def _step_clip_values(model, x, y, optimizer, max_norm):
    optimizer.zero_grad()
    _, loss = model(x, y)
    loss.backward()
    torch.nn.utils.clip_grad_value_(model.parameters(), max_norm)
    optimizer.step()
    return loss.item()


def _parameters_after(model, x, y, optimizer, max_norm):
    return [p.detach().clone() for p in model.parameters()]


@code_exercise(
    "train_step",
    "Write train_step(model, x, y, optimizer, max_norm): one update. Clear the old gradients, "
    "compute the loss and its gradients, clip their total norm to max_norm, take the optimizer's "
    "step, and return the loss as a number.",
    _step_reference,
    signature='''def train_step(model, x, y, optimizer, max_norm):
    """model: an lslm GPT (model(x, y) returns (logits, loss)); x, y: (batch, time) token ids;
    optimizer: a torch optimizer over the model's parameters; max_norm: the largest gradient
    norm allowed. Changes the model; returns the loss before the update, as a float."""''',
    mistakes=(
        (_step_no_zero_grad, "the gradients from before were still there and were added to: clear them "
                             "before the backward pass"),
        (_step_no_clip, "the update used unclipped gradients: clip them after backward() and before "
                        "optimizer.step() (clipping after the step is too late)"),
        (_step_clip_values, "that clips each number on its own: clip the norm of all the gradients together, "
                            "which keeps their direction"),
    ),
    after=_parameters_after,
    after_label="the model's parameters after your step",
)
def _step_cases() -> list[Case]:
    def case(seed: int, lr: float, max_norm: float, stale: bool, adam: bool = False) -> tuple:
        model = _tiny_gpt(seed)
        gen = _gen(seed)
        x = torch.randint(0, 11, (4, 8), generator=gen)
        y = torch.randint(0, 11, (4, 8), generator=gen)
        if stale:  # what the last step left behind
            for p in model.parameters():
                p.grad = torch.randn(p.shape, generator=gen)
        opt = torch.optim.AdamW(model.parameters(), lr=lr) if adam else torch.optim.SGD(model.parameters(), lr=lr)
        return model, x, y, opt, max_norm

    return [
        Case("SGD, a norm far above max_norm", case(60, 0.5, 0.1, stale=False),
             "the update of plain SGD is lr times the (clipped) gradient: check the clipping"),
        Case("old gradients left on the parameters", case(61, 0.5, 1.0, stale=True),
             "backward() adds to whatever .grad already holds"),
        Case("max_norm so large that clipping changes nothing", case(62, 0.1, 1e6, stale=False),
             "forward, backward and one optimizer step, in that order"),
        Case("AdamW, old gradients left", case(63, 0.01, 1.0, stale=True, adam=True),
             "any torch optimizer: call its step(), don't update the weights by hand"),
    ]


# ----- notebook 05: top-k accuracy -------------------------------------------------------------
def _topk_reference(logits, targets, k):
    from lslm.evaluate import top_k_hits

    return top_k_hits(logits, targets, k).float().mean().item()


def _topk_top1(logits, targets, k):
    return (logits.argmax(-1) == targets).float().mean().item()


def _topk_smallest(logits, targets, k):
    best = logits.topk(min(k, logits.size(-1)), dim=-1, largest=False).indices
    return (best == targets.unsqueeze(-1)).any(-1).float().mean().item()


def _topk_one_fewer(logits, targets, k):
    if k <= 1:
        return 0.0
    best = logits.topk(min(k - 1, logits.size(-1)), dim=-1).indices
    return (best == targets.unsqueeze(-1)).any(-1).float().mean().item()


@code_exercise(
    "top_k_accuracy",
    "Write top_k_accuracy(logits, targets, k): the share of positions whose true next token is "
    "among the k tokens with the highest logits.",
    _topk_reference,
    signature='''def top_k_accuracy(logits, targets, k):
    """logits: (..., vocab) floats; targets: (...) token ids; k: a whole number of at least 1.
    Returns a float from 0 to 1."""''',
    mistakes=(
        (_topk_top1, "that only counts the single best token: any of the k best counts as a hit"),
        (_topk_smallest, "those are the k *lowest* logits"),
        (_topk_one_fewer, "you looked at k - 1 tokens: the top k includes the best one"),
    ),
)
def _topk_cases() -> list[Case]:
    logits = torch.tensor([[3.0, 1.0, 2.0, 0.0]])
    return [
        Case("5 positions, vocabulary of 4, k = 3", (logits.repeat(5, 1), torch.tensor([0, 0, 0, 2, 1]), 3),
             "the three highest logits are tokens 0, 2 and 1: every target here is among them"),
        Case("target ranked second, k = 1", (logits, torch.tensor([2]), 1),
             "with k = 1 only the highest logit counts"),
        Case("target ranked second, k = 2", (logits, torch.tensor([2]), 2), "the two highest are tokens 0 and 2"),
        Case("batch 2 x 6 positions, vocab 10, k = 5",
             (_randn(2, 6, 10, seed=70), torch.randint(0, 10, (2, 6), generator=_gen(71)), 5),
             "count every position of every row, then divide by how many positions there are"),
        Case("k = 20 with a vocabulary of 10", (_randn(3, 10, seed=72), torch.tensor([1, 5, 9]), 20),
             "when k is at least the vocabulary size, every target is in the top k"),
    ]


# ----- notebook 07: pooling a padded batch ---------------------------------------------------
def _pool_reference(hidden, lengths):
    from lslm.tasks.sentiment import pool_hidden

    return pool_hidden(hidden, lengths, "mean")


def _pool_all(hidden, lengths):
    return hidden.mean(dim=1)


def _pool_last(hidden, lengths):
    return hidden[torch.arange(hidden.size(0)), lengths - 1]


def _pool_sum_over_time(hidden, lengths):
    real = (torch.arange(hidden.size(1)) < lengths[:, None]).unsqueeze(-1)
    return (hidden * real).sum(1) / hidden.size(1)


@code_exercise(
    "mean_pool",
    "Write mean_pool(hidden, lengths): one vector per text, the mean of its real positions' "
    "features; the padding after each text's length must not count.",
    _pool_reference,
    signature='''def mean_pool(hidden, lengths):
    """hidden: (batch, time, channels) features; lengths: (batch,) how many positions of each
    row are real (the rest is padding). Returns (batch, channels)."""''',
    mistakes=(
        (_pool_all, "the padding was averaged in: leave out the positions after each text's length"),
        (_pool_last, "that is the last real position's features (the 'last' pooling): average all the real ones"),
        (_pool_sum_over_time, "the sum is right, but divide by the number of real positions, not by the padded length"),
    ),
)
def _pool_cases() -> list[Case]:
    return [
        Case("no padding", (_randn(2, 3, 4, seed=80), torch.tensor([3, 3])), "with no padding this is a plain mean over time"),
        Case("lengths [1, 3] of 4", (_randn(2, 4, 5, seed=81), torch.tensor([1, 3])),
             "row 0 has one real position: its mean is that position's features"),
        Case("padding filled with large numbers", (torch.cat((_randn(3, 5, 6, seed=82), torch.full((3, 2, 6), 100.0)), 1),
                                                  torch.tensor([5, 2, 4])),
             "padding holds numbers too (here 100s): a mask keeps them out of the sum and the count"),
    ]


# ----- notebook 08: BLEU's brevity penalty ---------------------------------------------------
def _bp_reference(hyp_length, ref_length):
    from lslm.tasks.metrics import brevity_penalty

    return float(brevity_penalty(hyp_length, ref_length))


def _bp_inverted(hyp_length, ref_length):
    return 1.0 if hyp_length >= ref_length else math.exp(1 - hyp_length / ref_length)


def _bp_always(hyp_length, ref_length):
    return math.exp(1 - ref_length / hyp_length) if hyp_length else 0.0


@code_exercise(
    "brevity_penalty",
    "Write brevity_penalty(hyp_length, ref_length): BLEU's factor for an output shorter than its "
    "reference (the formula is in this notebook's check-yourself section): 1 when the output is at "
    "least as long, smaller the shorter it is, and 0 for an empty output.",
    _bp_reference,
    signature='''def brevity_penalty(hyp_length, ref_length):
    """hyp_length: words in the output(s); ref_length: words in the reference(s). Returns a
    float from 0 to 1."""''',
    mistakes=(
        (_bp_inverted, "the ratio is upside down: a short output must be punished more, the shorter it is"),
        (_bp_always, "an output longer than the reference is not penalised (precision already punishes padding)"),
    ),
)
def _bp_cases() -> list[Case]:
    return [
        Case("the same length", (10, 10), "equal lengths: no penalty"),
        Case("longer than the reference", (12, 10), "longer: no penalty, the factor is 1"),
        Case("half the reference's length", (5, 10), "ref_length / hyp_length is 2 here"),
        Case("an empty output", (0, 7), "an empty output gets 0 (and mind the division by zero)"),
    ]


# ----- notebook 09: token F1, and the best span ----------------------------------------------
def _f1_reference(prediction, gold):
    from lslm.tasks.qa import f1

    return float(f1(prediction, gold))


def _f1_raw_words(prediction, gold):
    from collections import Counter

    p, g = prediction.split(), gold.split()
    shared = sum((Counter(p) & Counter(g)).values())
    if not p or not g:
        return float(p == g)
    return 0.0 if not shared else 2 * (shared / len(p)) * (shared / len(g)) / (shared / len(p) + shared / len(g))


def _f1_sets(prediction, gold):
    from lslm.tasks.qa import normalize_answer

    p, g = normalize_answer(prediction).split(), normalize_answer(gold).split()
    if not p or not g:
        return float(p == g)
    shared = len(set(p) & set(g))
    return 0.0 if not shared else 2 * (shared / len(p)) * (shared / len(g)) / (shared / len(p) + shared / len(g))


@code_exercise(
    "token_f1",
    "Write token_f1(prediction, gold): normalise both answers (lower case, no punctuation, no "
    "a/an/the), then the F1 of the precision and recall of the words they share.",
    _f1_reference,
    signature='''def token_f1(prediction, gold):
    """prediction, gold: answer strings. Returns a float from 0 to 1 (two empty answers
    agree: 1.0)."""''',
    mistakes=(
        (_f1_raw_words, "normalise first: 'The Tower.' and 'tower' are the same answer"),
        (_f1_sets, "count shared words with their multiplicity: a word the gold has once is shared at most once"),
    ),
)
def _f1_cases() -> list[Case]:
    return [
        Case("'in Paris, France' against 'Paris'", ("in Paris, France", "Paris"),
             "one of three predicted words is right (precision 1/3), and all of the gold is found (recall 1)"),
        Case("'The Eiffel Tower.' against 'eiffel tower'", ("The Eiffel Tower.", "eiffel tower"),
             "after normalising, these are the same words"),
        Case("'red red car' against 'red car'", ("red red car", "red car"),
             "the gold has 'red' once, so only one predicted 'red' is shared"),
        Case("'red red car' against 'red red bus'", ("red red car", "red red bus"),
             "both have 'red' twice, so both copies are shared"),
        Case("nothing shared", ("blue boat", "red car"), "no shared word: F1 is 0"),
        Case("'the' against 'a'", ("the", "a"), "both normalise to nothing: two empty answers agree"),
    ]


def _span_reference(start, end, max_len):
    from lslm.tasks.qa import best_spans

    return best_spans(start, end, max_len)


def _span_independent(start, end, max_len):
    return [(int(s), int(e)) for s, e in zip(start.argmax(-1), end.argmax(-1))]


def _span_one_longer(start, end, max_len):
    from lslm.tasks.qa import best_spans

    return best_spans(start, end, max_len + 1)


@code_exercise(
    "best_span",
    "Write best_span(start, end, max_len): for each row, the (s, e) with s <= e < s + max_len "
    "that maximises start[s] + end[e].",
    _span_reference,
    signature='''def best_span(start, end, max_len):
    """start, end: (batch, time) scores for where the answer starts and ends; max_len: the
    longest answer in tokens. Returns a list of (s, e) pairs of ints, one per row."""''',
    mistakes=(
        (_span_independent, "the best start and the best end were picked on their own: the end must not come "
                            "before the start, nor too far after it"),
        (_span_one_longer, "an answer of max_len tokens ends at s + max_len - 1: yours allows one more"),
    ),
)
def _span_cases() -> list[Case]:
    return [
        Case("the best end lies before the best start", (torch.tensor([[0.0, 0.0, 5.0, 0.0]]),
                                                         torch.tensor([[4.0, 0.0, 0.0, 1.0]]), 3),
             "score every allowed pair (s, e) and take the best"),
        Case("the best pair is too long", (torch.tensor([[3.0, 0.0, 0.0, 0.0, 0.0]]),
                                           torch.tensor([[0.0, 0.0, 1.0, 0.0, 4.0]]), 3),
             "with max_len 3, a span starting at 0 ends at 2 at the latest"),
        Case("batch 3, random scores", (_randn(3, 9, seed=90), _randn(3, 9, seed=91), 4),
             "each row is its own question"),
        Case("one-token answers only", (_randn(2, 6, seed=92), _randn(2, 6, seed=93), 1),
             "with max_len 1 the answer starts and ends at the same position"),
    ]


# ----- notebook 10: counting parameters -------------------------------------------------------
def _params_reference(vocab_size, block_size, n_layer, n_embd):
    from lslm.model import GPTConfig, count_params

    return count_params(GPTConfig(vocab_size=vocab_size, block_size=block_size, n_layer=n_layer, n_head=1,
                                  n_embd=n_embd))


def _params_untied(vocab_size, block_size, n_layer, n_embd):
    return _params_reference(vocab_size, block_size, n_layer, n_embd) + vocab_size * n_embd


def _params_no_positions(vocab_size, block_size, n_layer, n_embd):
    return _params_reference(vocab_size, block_size, n_layer, n_embd) - block_size * n_embd


def _params_matrices_only(vocab_size, block_size, n_layer, n_embd):
    return vocab_size * n_embd + block_size * n_embd + 12 * n_layer * n_embd * n_embd


@code_exercise(
    "gpt_params",
    "Write gpt_params(vocab_size, block_size, n_layer, n_embd): the exact number of parameters "
    "of a GPT-2-shaped model (biases, LayerNorms with bias, learned positions, MLP 4x wide, LM "
    "head tied to the token embedding).",
    _params_reference,
    signature='''def gpt_params(vocab_size, block_size, n_layer, n_embd):
    """The parameters of GPT(GPTConfig(vocab_size=..., block_size=..., n_layer=..., n_embd=...)),
    counted on paper. Returns an int (GPT-2 small: 124,439,808)."""''',
    mistakes=(
        (_params_untied, "the LM head is tied to the token embedding: the same matrix, counted once"),
        (_params_no_positions, "the learned position embedding has block_size x n_embd parameters too"),
        (_params_matrices_only, "12 x n_layer x n_embd² counts the weight matrices only: add the biases and "
                                "the LayerNorms' scales and shifts"),
    ),
)
def _params_cases() -> list[Case]:
    return [
        Case("notebook 04's model: 65 tokens, context 64, 4 layers, width 128", (65, 64, 4, 128),
             "per block: two LayerNorms, attention (qkv and out, with biases), the MLP (two layers, with biases)"),
        Case("GPT-2 small", (50257, 1024, 12, 768), "GPT-2 small has 124,439,808 parameters"),
        Case("one layer, width 8", (10, 4, 1, 8), "work it out by hand for this small one first"),
    ]


# ----- notebook 11: the induction stripe -----------------------------------------------------
def _stripe_reference(attention, n):
    from lslm.interpret import induction_stripe

    return induction_stripe(attention, n)


def _stripe_previous_copy(attention, n):
    t = torch.arange(n, 2 * n)
    return attention[..., t, t - n].mean(-1)


def _stripe_previous_token(attention, n):
    t = torch.arange(n, 2 * n)
    return attention[..., t, t - 1].mean(-1)


@code_exercise(
    "induction_stripe",
    "Write induction_stripe(attention, n): on a sequence of n random tokens repeated twice, the "
    "mean attention that the positions of the second half give to the token just after their "
    "token's first occurrence.",
    _stripe_reference,
    signature='''def induction_stripe(attention, n):
    """attention: (..., 2n, 2n) weights (row = query, column = key) on n tokens repeated twice.
    Returns (...): the mean, over the second half's positions t, of attention[..., t, t - n + 1]."""''',
    mistakes=(
        (_stripe_previous_copy, "that is the token's own earlier copy (t - n): an induction head looks one "
                                "further, at what came *next* last time"),
        (_stripe_previous_token, "that is the previous-token stripe (t - 1)"),
    ),
)
def _stripe_cases() -> list[Case]:
    n = 4
    perfect = torch.zeros(2 * n, 2 * n)
    t = torch.arange(n, 2 * n)
    perfect[t, t - n + 1] = 1.0
    perfect[torch.arange(n), 0] = 1.0
    return [
        Case("random maps, batch 2 x 3 heads, n = 5",
             (torch.softmax(_randn(2, 3, 10, 10, seed=95), -1), 5),
             "index every leading axis with ... and pick the (t, t - n + 1) cells"),
        Case("a perfect induction head, n = 4", (perfect, n), "this head does nothing but induction: the answer is 1"),
        Case("n = 1", (torch.softmax(_randn(2, 2, seed=96), -1), 1), "with n = 1 the stripe is the single cell (1, 1)"),
    ]


# ----- notebook 12: data parallelism -----------------------------------------------------------
def _average_reference(worker_grads):
    # What DistributedDataParallel's all-reduce leaves on every worker: the mean over workers.
    return [torch.stack(per_param).mean(dim=0) for per_param in zip(*worker_grads)]


def _average_sum(worker_grads):
    return [torch.stack(per_param).sum(dim=0) for per_param in zip(*worker_grads)]


def _average_first(worker_grads):
    return [g.clone() for g in worker_grads[0]]


@code_exercise(
    "average_gradients",
    "Write average_gradients(worker_grads): what data parallelism's all-reduce gives every worker: "
    "for each parameter, the mean of the workers' gradients.",
    _average_reference,
    signature='''def average_gradients(worker_grads):
    """worker_grads: a list (one item per worker) of lists of gradient tensors (one per
    parameter, in the same order for every worker). Returns one list of tensors: the
    gradient every worker applies."""''',
    mistakes=(
        (_average_sum, "the sum of the workers' gradients is as large as if the batch were that many times "
                       "bigger: average them"),
        (_average_first, "every worker must apply the same gradient, from all the workers' data"),
    ),
)
def _average_cases() -> list[Case]:
    def grads(workers: int, seed: int) -> list:
        return [[_randn(3, 4, seed=seed + 10 * w), _randn(4, seed=seed + 10 * w + 1)] for w in range(workers)]

    return [
        Case("two workers", (grads(2, 100),), "for each parameter, add the workers' gradients and divide by 2"),
        Case("four workers", (grads(4, 200),), "divide by the number of workers"),
        Case("one worker", (grads(1, 300),), "with one worker, its gradient is the answer"),
    ]


# ----- notebook 13: ROUGE-n --------------------------------------------------------------------
def _rouge_n_reference(hypothesis, reference, n):
    from lslm.tasks.metrics import rouge_n

    return float(rouge_n(" ".join(hypothesis), " ".join(reference), n).fmeasure)


def _rouge_n_unclipped(hypothesis, reference, n):
    h, r = _grams(hypothesis, n), _grams(reference, n)
    if not h or not r:
        return 0.0
    overlap = sum(g in r for g in h)
    p, rec = overlap / len(h), min(1.0, overlap / len(r))
    return 2 * p * rec / (p + rec) if overlap else 0.0


def _rouge_n_recall(hypothesis, reference, n):
    from lslm.tasks.metrics import rouge_n

    return float(rouge_n(" ".join(hypothesis), " ".join(reference), n).recall)


@code_exercise(
    "rouge_n_f1",
    "Write rouge_n_f1(hypothesis, reference, n) for two lists of words: the F1 of precision and "
    "recall of their shared n-grams, each n-gram shared at most as often as the side with fewer "
    "copies has it.",
    _rouge_n_reference,
    signature='''def rouge_n_f1(hypothesis, reference, n):
    """hypothesis, reference: lists of lower-case words; n: 1 for ROUGE-1, 2 for ROUGE-2.
    Returns a float from 0 to 1 (0.0 when either side has no n-grams)."""''',
    mistakes=(
        (_rouge_n_unclipped, "a repeated n-gram was credited every time: clip each at the smaller count"),
        (_rouge_n_recall, "that is the recall only: ROUGE's F1 combines it with the precision"),
    ),
)
def _rouge_n_cases() -> list[Case]:
    return [
        Case("ROUGE-1, 'the cat sat' against 'the cat ran'", ("the cat sat".split(), "the cat ran".split(), 1),
             "two of three words are shared on each side"),
        Case("a repeated word", ("the the the cat".split(), "the cat sat".split(), 1),
             "the reference has 'the' once: it is shared once"),
        Case("ROUGE-2 of a longer summary", ("mia lost her red ball in the park".split(),
                                             "mia lost her ball".split(), 2),
             "list each side's word pairs: precision over the summary's pairs, recall over the reference's"),
        Case("one word has no pairs", (["mia"], "mia ran".split(), 2), "no n-grams on one side: the score is 0.0"),
    ]


# ----- notebook 15: exposure of a canary ---------------------------------------------------------
def _exposure_reference(secret_logprob, candidate_logprobs):
    from lslm.privacy import exposure_bits, rank_of

    return exposure_bits(rank_of(secret_logprob, candidate_logprobs), len(candidate_logprobs))


def _exposure_counts_itself(secret_logprob, candidate_logprobs):
    return math.log2(len(candidate_logprobs)) - math.log2(1 + int((candidate_logprobs >= secret_logprob).sum()))


def _exposure_natural_log(secret_logprob, candidate_logprobs):
    rank = 1 + int((candidate_logprobs > secret_logprob).sum())
    return math.log(len(candidate_logprobs)) - math.log(rank)


@code_exercise(
    "exposure",
    "Write exposure(secret_logprob, candidate_logprobs): the secret's rank among all candidates "
    "(1 + how many the model finds strictly likelier), then its exposure in bits as section 3 defines it.",
    _exposure_reference,
    signature='''def exposure(secret_logprob, candidate_logprobs):
    """secret_logprob: the model's log-probability of the true canary (a float);
    candidate_logprobs: a 1-D tensor with one log-probability per possible canary, the true
    one included. Returns the exposure in bits (a float)."""''',
    mistakes=(
        (_exposure_counts_itself, "the secret was counted as beating itself: count only candidates strictly likelier"),
        (_exposure_natural_log, "exposure is measured in bits: use log base 2"),
    ),
)
def _exposure_cases() -> list[Case]:
    eight = torch.tensor([-5.0, -9.0, -7.0, -6.0, -8.0, -12.0, -10.0, -11.0])
    return [
        Case("the secret is the likeliest of 8", (-5.0, eight), "rank 1 of 8: log2(8) - log2(1)"),
        Case("the secret is the least likely of 8", (-12.0, eight), "rank 8 of 8: nothing is exposed, 0 bits"),
        Case("in the middle", (-8.0, eight), "three candidates beat it, so its rank is 4"),
        Case("1,000 random candidates", (-3.0, torch.cat((_randn(999, seed=110) - 3.0, torch.tensor([-3.0])))),
             "count how many candidates score strictly higher than the secret"),
    ]


# ----- notebook 15: DP-SGD's per-example clipping --------------------------------------------
def _dp_reference(per_example, clip):
    from lslm.privacy import DPConfig, dp_gradient

    return dp_gradient(per_example, DPConfig(clip=clip, noise=0.0))


def _dp_clip_the_mean(per_example, clip):
    mean = {k: g.mean(0) for k, g in per_example.items()}
    norm = torch.sqrt(sum((g ** 2).sum() for g in mean.values()))
    factor = min(1.0, clip / (norm.item() + 1e-12))
    return {k: g * factor for k, g in mean.items()}


def _dp_clip_each_part(per_example, clip):
    out = {}
    for k, g in per_example.items():
        norms = g.reshape(g.size(0), -1).norm(dim=1)
        scale = (clip / (norms + 1e-12)).clamp(max=1.0)
        out[k] = (g * scale.reshape(-1, *[1] * (g.dim() - 1))).mean(0)
    return out


def _dp_sum(per_example, clip):
    n = next(iter(per_example.values())).size(0)
    return {k: g * n for k, g in _dp_reference(per_example, clip).items()}


@code_exercise(
    "clip_per_example",
    "Write clip_per_example(per_example, clip): DP-SGD's gradient without the noise. Clip each "
    "example's whole gradient (all parameters together) to norm clip, then average over the examples.",
    _dp_reference,
    signature='''def clip_per_example(per_example, clip):
    """per_example: a dict {parameter name: tensor (batch, *parameter shape)}, one gradient
    per example; clip: the largest norm one example's gradient may have. Returns a dict
    {parameter name: tensor (*parameter shape)}: the mean of the clipped gradients."""''',
    mistakes=(
        (_dp_clip_the_mean, "that clips the batch's average, as ordinary training does: DP-SGD clips every "
                            "example on its own, so that no single example can move the model far"),
        (_dp_clip_each_part, "each parameter was clipped on its own: one example's norm is over all its "
                             "parameters together"),
        (_dp_sum, "divide the sum of the clipped gradients by the number of examples"),
    ),
)
def _dp_cases() -> list[Case]:
    one_large = {"w": torch.tensor([[6.0, 0.0], [0.3, 0.0]]), "b": torch.tensor([[8.0], [0.4]])}
    return [
        Case("two examples, one with norm 10, clip 1", (one_large, 1.0),
             "example 0 (norm 10) shrinks to norm 1; example 1 (norm 0.5) stays as it is"),
        Case("four examples, two parameters, clip 0.5",
             ({"w": _randn(4, 3, 2, seed=120), "b": _randn(4, 2, seed=121)}, 0.5),
             "an example's norm: square every number of all its parameters, add, take the square root"),
        Case("nothing above the clip", ({"w": _randn(3, 5, seed=122, scale=0.01)}, 10.0),
             "with every example below the clip this is a plain average"),
    ]


# ----- notebook 07: occlusion -----------------------------------------------------------------
def _toy_positive(texts: list) -> torch.Tensor:
    """A stand-in scorer with a rule a learner can read: +2 for each 'good' or 'lovely', -2 for
    each 'bad' or 'dull', all flipped by a 'not', and -1/8 for every word (so deleting any word
    moves P a little); P(positive) is the sigmoid of that. The notebook uses the classifier."""
    out = []
    for text in texts:
        words = text.replace(",", " ").replace(".", " ").split()
        score = 2 * sum(w in ("good", "lovely") for w in words) - 2 * sum(w in ("bad", "dull") for w in words)
        if "not" in words:
            score = -score
        out.append(1 / (1 + math.exp(-(score - len(words) / 8))))
    return torch.tensor(out)


def _occlusion_reference(prob_pos, text):
    from lslm.tasks.sentiment import occlusion_effects

    return occlusion_effects(prob_pos, text)


def _occlusion_flipped(prob_pos, text):
    return [(w, -change) for w, change in _occlusion_reference(prob_pos, text)]


def _occlusion_replace(prob_pos, text):
    from lslm.tasks.sentiment import word_spans

    base = float(prob_pos([text])[0])
    words = [w for w, _, _ in word_spans(text)]
    return [(w, float(prob_pos([" ".join(text.replace(w, "").split())])[0]) - base) for w in words]


@code_exercise(
    "occlusion",
    "Write occlusion(prob_pos, text): for each word of the text, P(positive) of the text without "
    "that one word, minus P(positive) of the whole text.",
    _occlusion_reference,
    signature='''def occlusion(prob_pos, text):
    """prob_pos(texts): a list of strings in, a tensor of P(positive) out, one per text.
    Returns a list of (word, change) pairs, one per word of text in order, words and
    punctuation as lslm.tasks.sentiment.word_spans cuts them (without_word(text, i) deletes
    word i). A negative change: the word was pushing towards positive."""''',
    mistakes=(
        (_occlusion_flipped, "the sign is flipped: the change is P without the word minus P with it"),
        (_occlusion_replace, "deleting a word by replacing its text also deletes its other copies (and parts of "
                             "other words): delete only word i, e.g. with without_word(text, i)"),
    ),
)
def _occlusion_cases() -> list[Case]:
    return [
        Case("'the food was good.'", (_toy_positive, "the food was good."),
             "this scorer likes 'good': removing it should lower P(positive)"),
        Case("'the food was not good.'", (_toy_positive, "the food was not good."),
             "'not' turns the sentence around: removing it raises P(positive)"),
        Case("a word that occurs twice", (_toy_positive, "good food, good staff, dull room."),
             "remove one occurrence at a time: the other 'good' stays"),
    ]


# ----- notebook 11: the logit lens ------------------------------------------------------------
def _lens_reference(stream, ln_weight, ln_bias, head_weight):
    from lslm.model import LayerNorm

    norm = LayerNorm(stream.size(-1), bias=True)
    with torch.no_grad():
        norm.weight.copy_(ln_weight)
        norm.bias.copy_(ln_bias)
        return torch.softmax(norm(stream) @ head_weight.T, dim=-1)


def _lens_no_norm(stream, ln_weight, ln_bias, head_weight):
    return torch.softmax(stream @ head_weight.T, dim=-1)


def _lens_logits(stream, ln_weight, ln_bias, head_weight):
    return F.layer_norm(stream, (stream.size(-1),), ln_weight, ln_bias) @ head_weight.T


@code_exercise(
    "logit_lens",
    "Write logit_lens(stream, ln_weight, ln_bias, head_weight): read next-token probabilities "
    "from the residual stream after any layer, with the model's own final LayerNorm and LM head.",
    _lens_reference,
    signature='''def logit_lens(stream, ln_weight, ln_bias, head_weight):
    """stream: (layers, batch, time, n_embd), the residual stream after each block;
    ln_weight, ln_bias: (n_embd,), the final LayerNorm's (eps 1e-5); head_weight:
    (vocab, n_embd), the LM head's. Returns probabilities (layers, batch, time, vocab)."""''',
    mistakes=(
        (_lens_no_norm, "the final LayerNorm was skipped: the LM head was trained on normalised vectors, so "
                        "the lens must normalise each layer's stream first"),
        (_lens_logits, "those are scores (logits): turn them into probabilities over the vocabulary"),
    ),
)
def _lens_cases() -> list[Case]:
    def case(layers: int, b: int, t: int, c: int, v: int, seed: int) -> tuple:
        return (_randn(layers, b, t, c, seed=seed, scale=3.0), 1 + _randn(c, seed=seed + 1, scale=0.1),
                _randn(c, seed=seed + 2, scale=0.1), _randn(v, c, seed=seed + 3, scale=0.5))

    return [
        Case("3 layers, 1 position, width 8, 10 tokens", case(3, 1, 1, 8, 10, 130),
             "each layer's vector goes through the same LayerNorm and head"),
        Case("5 layers, batch 2, 4 positions", case(5, 2, 4, 16, 12, 140),
             "normalise over the last axis (the width), then multiply by the head's weight transposed"),
    ]


# ----- notebook 17: the answer-only loss ----------------------------------------------------------
def _answer_reference(prompt, answer):
    from lslm.vlm import batch

    _, ids, targets = batch([(torch.zeros(3, 1, 1, dtype=torch.uint8), prompt, answer)])
    return ids[0], targets[0]


def _answer_unshifted(prompt, answer):
    ids, _ = _answer_reference(prompt, answer)
    targets = torch.full_like(ids, -100)
    targets[len(prompt):] = torch.tensor(answer)
    return ids, targets


def _answer_everything(prompt, answer):
    ids, _ = _answer_reference(prompt, answer)
    targets = torch.full_like(ids, -100)
    targets[:-1] = ids[1:]
    return ids, targets


@code_exercise(
    "answer_targets",
    "Write answer_targets(prompt, answer): the input ids (prompt then answer) and the targets for "
    "an answer-only loss: at each position the next token if it belongs to the answer, else -100.",
    _answer_reference,
    signature='''def answer_targets(prompt, answer):
    """prompt, answer: lists of token ids (the answer ends with <eos>). Returns (ids, targets),
    two 1-D int64 tensors of length len(prompt) + len(answer): ids is prompt + answer;
    targets[t] is the token the model should write after reading ids[:t + 1] when that
    token is part of the answer, and -100 (ignored by cross_entropy) everywhere else."""''',
    mistakes=(
        (_answer_unshifted, "the targets are not shifted: position t must predict the token at t + 1, so the "
                            "first answer token is the target of the prompt's last position"),
        (_answer_everything, "the prompt's tokens are targets too: the loss should count only the answer"),
    ),
)
def _answer_cases() -> list[Case]:
    return [
        Case("prompt [1], answer [7, 8, 2]", ([1], [7, 8, 2]), "a caption: the prompt is <bos> alone"),
        Case("a question of 4 tokens, a one-word answer", ([1, 20, 21, 22], [30, 2]),
             "the last position (the answer's <eos>) has nothing after it"),
    ]
