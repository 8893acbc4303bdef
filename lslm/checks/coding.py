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
