"""Look inside a trained GPT, and nudge it: logit lens, head ablation, induction, steering.

Everything here works on an unchanged ``lslm.model.GPT`` through PyTorch hooks, so the
model you probe is exactly the model you trained. The *residual stream* is the vector
each position carries from block to block; we number its states like this::

    position 0        = token + position embedding (what enters block 0)
    position i (1..L) = the output of block i-1       (position L enters ln_f)

``logit_lens`` reads the stream at every position, ``steer`` adds a vector to it at one
position, ``ablate_heads`` silences attention heads, and ``induction_probe`` measures
how well a model copies a sequence it has already seen.

The model may sit on any device: token ids (lists or tensors, anywhere) are moved to it,
and the tensors these tools return come back on the CPU, where plots and numpy read them.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from lslm.devices import model_device, to_device
from lslm.errors import LslmError
from lslm.utils import evaluating

# ----- small helpers -------------------------------------------------------------------


def _as_batch(idx: torch.Tensor | Sequence[int], model: nn.Module) -> torch.Tensor:
    """Token ids as a (batch, time) long tensor on ``model``'s device; a single sequence
    gets a batch of 1."""
    idx = torch.as_tensor(idx, dtype=torch.long)
    if idx.dim() == 1:
        idx = idx.unsqueeze(0)
    if idx.dim() != 2 or idx.size(1) == 0:
        raise LslmError(f"expected token ids of shape (batch, time), got shape {tuple(idx.shape)}")
    return idx.to(model_device(model))


def _check_length(model: nn.Module, t: int) -> None:
    if t > model.config.block_size:
        raise LslmError(
            f"{t} tokens do not fit the model's block_size {model.config.block_size}: "
            "use shorter text or crop it to the last block_size tokens"
        )


def _check_layer(model: nn.Module, layer: int, what: str = "layer", top: int | None = None) -> None:
    top = model.config.n_layer if top is None else top
    if not isinstance(layer, int) or not 0 <= layer <= top:
        raise LslmError(f"{what} must be a whole number from 0 to {top}, got {layer!r}")


def _readers(model: nn.Module) -> list[nn.Module]:
    """The module that reads each residual-stream position: block 0..L-1, then ln_f."""
    return [*model.blocks, model.ln_f]


def _stream_hook(fn):
    """A forward pre-hook that passes the residual stream (the first input) through ``fn``."""

    def hook(module, args, kwargs):
        if args:
            new = fn(args[0])
            return (None if new is None else ((new, *args[1:]), kwargs))
        new = fn(kwargs["x"])
        return None if new is None else (args, {**kwargs, "x": new})

    return hook


# ----- reading the residual stream: the logit lens -----------------------------------


def residual_stream(model: nn.Module, idx: torch.Tensor | Sequence[int]) -> torch.Tensor:
    """The residual stream at every position, shape (n_layer + 1, batch, time, n_embd)."""
    return _stream(model, idx).cpu()


def _stream(model: nn.Module, idx: torch.Tensor | Sequence[int]) -> torch.Tensor:
    """``residual_stream``, left on the model's device."""
    idx = _as_batch(idx, model)
    _check_length(model, idx.size(1))
    states: list[torch.Tensor] = []
    handles = [r.register_forward_pre_hook(_stream_hook(lambda x: states.append(x)), with_kwargs=True)
               for r in _readers(model)]
    try:
        with evaluating(model), torch.no_grad():
            model(idx)
    finally:
        for h in handles:
            h.remove()
    return torch.stack(states)


def logit_lens(
    model: nn.Module, idx: torch.Tensor | Sequence[int], as_logits: bool = False
) -> torch.Tensor:
    """Next-token distributions read from the residual stream after every block.

    Applies the model's own final LayerNorm and LM head to each position of the stream
    (nostalgebraist's "logit lens", 2020). Returns probabilities of shape
    (n_layer + 1, batch, time, vocab); row 0 reads the embeddings, the last row is the
    model's real output. ``as_logits=True`` returns the scores before the softmax.
    """
    stream = _stream(model, idx)
    with torch.no_grad():
        logits = model.lm_head(model.ln_f(stream))
    return (logits if as_logits else F.softmax(logits, dim=-1)).cpu()


# ----- losses --------------------------------------------------------------------------


def token_losses(model: nn.Module, tokens: torch.Tensor | Sequence[int]) -> torch.Tensor:
    """Cross-entropy of each next-token prediction, shape (batch, time - 1).

    ``tokens`` holds inputs and targets together: position t is asked for token t + 1.
    """
    tokens = _as_batch(tokens, model)
    if tokens.size(1) < 2:
        raise LslmError("need at least 2 tokens: one to read and one to predict")
    x, y = tokens[:, :-1], tokens[:, 1:]
    _check_length(model, x.size(1))
    with evaluating(model), torch.no_grad():
        logits = model(x)[0]
    return F.cross_entropy(logits.transpose(1, 2), y, reduction="none").cpu()


def mean_loss(model: nn.Module, tokens: torch.Tensor | Sequence[int]) -> float:
    """Mean next-token loss over every position of ``tokens`` (see ``token_losses``)."""
    return token_losses(model, tokens).mean().item()


# ----- silencing heads ------------------------------------------------------------------


def _check_heads(model: nn.Module, heads: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    heads = list(heads)
    n_layer, n_head = model.config.n_layer, model.config.n_head
    for pair in heads:
        ok = (isinstance(pair, (tuple, list)) and len(pair) == 2
              and all(isinstance(v, int) for v in pair)
              and 0 <= pair[0] < n_layer and 0 <= pair[1] < n_head)
        if not ok:
            raise LslmError(
                f"heads must be (layer, head) pairs with 0 <= layer < {n_layer} and "
                f"0 <= head < {n_head}, got {pair!r}"
            )
    return heads


@contextmanager
def ablate_heads(model: nn.Module, heads: Iterable[tuple[int, int]]) -> Iterator[nn.Module]:
    """Inside the ``with`` block, the chosen attention heads write nothing.

    The heads' outputs sit side by side in the input of each layer's output projection
    ``attn.c_proj``; a pre-hook zeroes the slice of each chosen head there, so the head
    adds nothing to the residual stream. The hooks are removed on exit, even on errors.
    """
    heads = _check_heads(model, heads)
    size = model.config.n_embd // model.config.n_head
    by_layer: dict[int, list[int]] = {}
    for layer, head in heads:
        by_layer.setdefault(layer, []).append(head)

    def silencer(chosen: list[int]):
        def hook(module, args):
            y = args[0].clone()
            for h in chosen:
                y[..., h * size : (h + 1) * size] = 0.0
            return (y, *args[1:])

        return hook

    handles = [model.blocks[layer].attn.c_proj.register_forward_pre_hook(silencer(chosen))
               for layer, chosen in by_layer.items()]
    try:
        yield model
    finally:
        for h in handles:
            h.remove()


def head_ablation_effect(model: nn.Module, tokens: torch.Tensor | Sequence[int]) -> torch.Tensor:
    """How much the loss on ``tokens`` rises when each head alone is silenced.

    Returns a (n_layer, n_head) tensor of ablated loss minus normal loss, in nats:
    large positive values mark heads the model leans on for this text.
    """
    base = mean_loss(model, tokens)
    effect = torch.zeros(model.config.n_layer, model.config.n_head)
    for layer in range(model.config.n_layer):
        for head in range(model.config.n_head):
            with ablate_heads(model, [(layer, head)]):
                effect[layer, head] = mean_loss(model, tokens) - base
    return effect


# ----- attention patterns and the induction probe --------------------------------------


def attention_maps(model: nn.Module, idx: torch.Tensor | Sequence[int]) -> torch.Tensor:
    """Attention weights of every head, shape (n_layer, batch, n_head, time, time)."""
    idx = _as_batch(idx, model)
    _check_length(model, idx.size(1))
    with evaluating(model), torch.no_grad():
        _, attention = model.features(idx, return_attention=True)
    return torch.stack(list(attention)).cpu()


def repeated_random_tokens(
    n: int,
    batch: int = 16,
    vocab_size: int | None = None,
    token_ids: Sequence[int] | None = None,
    seed: int = 0,
) -> torch.Tensor:
    """``batch`` rows of a random sequence of ``n`` tokens followed by the same ``n`` again.

    Tokens come from ``token_ids`` (or ``range(vocab_size)``); when there are at least
    ``n`` of them, a row uses each at most once per half, so every token of the second
    half has exactly one earlier occurrence. Shape (batch, 2n); the same seed gives the
    same rows.
    """
    if token_ids is None:
        if vocab_size is None:
            raise LslmError("give vocab_size or token_ids: the tokens to draw from")
        token_ids = range(vocab_size)
    pool = torch.as_tensor(list(token_ids), dtype=torch.long)
    if n < 2 or batch < 1 or pool.numel() < 2:
        raise LslmError(f"need n >= 2, batch >= 1 and at least 2 tokens to draw from; got n={n}, "
                        f"batch={batch}, {pool.numel()} tokens")
    gen = torch.Generator().manual_seed(seed)
    if pool.numel() >= n:
        picks = torch.stack([torch.randperm(pool.numel(), generator=gen)[:n] for _ in range(batch)])
    else:
        picks = torch.randint(pool.numel(), (batch, n), generator=gen)
    half = pool[picks]
    return torch.cat([half, half], dim=1)


@dataclass
class InductionResult:
    """What ``induction_probe`` measured on random sequences repeated twice."""

    n: int
    loss_by_position: torch.Tensor  # (2n - 1,): loss predicting token t + 1 from tokens 0..t
    first_half_loss: float  # predicting tokens 1..n-1: nothing to copy yet
    second_half_loss: float  # predicting tokens n+1..2n-1: each one was seen n steps back
    head_scores: torch.Tensor  # (n_layer, n_head): mean attention on the induction stripe
    attention: torch.Tensor  # (n_layer, n_head, 2n, 2n): attention of the first row

    @property
    def copy_gain(self) -> float:
        """How many nats the repeat saves: first-half loss minus second-half loss."""
        return self.first_half_loss - self.second_half_loss


def induction_stripe(attention: torch.Tensor, n: int) -> torch.Tensor:
    """Mean attention on the *induction stripe* of (..., 2n, 2n) weights.

    In the second half, the token at position t last occurred at t - n; an induction
    head looks at the token *after* that occurrence, t - n + 1, because that is what
    came next last time. The stripe is those (t, t - n + 1) cells for t = n .. 2n-1.
    """
    t = torch.arange(n, 2 * n)
    return attention[..., t, t - n + 1].mean(dim=-1)


def induction_probe(
    model: nn.Module,
    n: int | None = None,
    batch: int = 16,
    token_ids: Sequence[int] | None = None,
    seed: int = 0,
) -> InductionResult:
    """Feed random sequences repeated twice, and measure copying.

    A model that only knows token statistics cannot predict random tokens, in either
    half. A model with *induction heads* recognises the repeat and copies: its loss in
    the second half falls far below the first. ``n`` defaults to half the block size.
    """
    n = model.config.block_size // 2 if n is None else n
    if 2 * n > model.config.block_size:
        raise LslmError(f"2 * n = {2 * n} tokens do not fit block_size {model.config.block_size}: "
                        f"use n <= {model.config.block_size // 2}")
    tokens = repeated_random_tokens(n, batch, model.config.vocab_size, token_ids, seed)
    losses = token_losses(model, tokens).mean(dim=0)
    attention = attention_maps(model, tokens)  # (L, B, H, 2n, 2n)
    return InductionResult(
        n=n,
        loss_by_position=losses,
        first_half_loss=losses[: n - 1].mean().item(),
        second_half_loss=losses[n:].mean().item(),
        head_scores=induction_stripe(attention, n).mean(dim=1),
        attention=attention[:, 0],
    )


# ----- steering: writing into the residual stream --------------------------------------


def mean_activation(
    model: nn.Module, prompts: Iterable[torch.Tensor | Sequence[int]], layer: int
) -> torch.Tensor:
    """The residual stream at ``layer`` (0 = embeddings), averaged over every token of every prompt."""
    _check_layer(model, layer)
    rows = [residual_stream(model, p)[layer].reshape(-1, model.config.n_embd) for p in prompts]
    if not rows:
        raise LslmError("give at least one prompt to average over")
    return torch.cat(rows).mean(dim=0)


def steering_vector(
    model: nn.Module,
    prompts_a: Iterable[torch.Tensor | Sequence[int]],
    prompts_b: Iterable[torch.Tensor | Sequence[int]],
    layer: int,
) -> torch.Tensor:
    """Mean activation of prompt set A minus that of set B, at residual position ``layer``.

    Adding it pushes the model's internal state from "B-like" toward "A-like" text.
    """
    return mean_activation(model, prompts_a, layer) - mean_activation(model, prompts_b, layer)


@contextmanager
def steer(model: nn.Module, layer: int, vector: torch.Tensor, scale: float = 1.0) -> Iterator[nn.Module]:
    """Inside the ``with`` block, add ``scale * vector`` to the residual stream at ``layer``.

    ``layer`` counts residual positions (0 = after the embeddings, n_layer = just before
    the final LayerNorm), so ``steer(model, i, v)`` changes what block ``i`` reads. Every
    token position gets the vector, including tokens generated inside the block.
    """
    _check_layer(model, layer)
    vector = torch.as_tensor(vector, dtype=torch.float32)
    if vector.shape != (model.config.n_embd,):
        raise LslmError(f"the steering vector must have shape ({model.config.n_embd},), "
                        f"got {tuple(vector.shape)}")
    if not math.isfinite(scale):
        raise LslmError(f"scale must be a finite number, got {scale}")
    if scale == 0:  # exactly the unsteered model
        yield model
        return
    shift = scale * vector
    handle = _readers(model)[layer].register_forward_pre_hook(
        _stream_hook(lambda x: x + shift.to(x.device, x.dtype)), with_kwargs=True
    )
    try:
        yield model
    finally:
        handle.remove()


# ----- probing preferences: paired prompts ---------------------------------------------


def continuation_logprob(model: nn.Module, tokenizer, prompt: str, continuation: str) -> float:
    """ln p(continuation | prompt): the sum of the log-probabilities of its tokens.

    The prompt is cropped from the left when prompt + continuation exceed the block size.
    """
    p_ids, c_ids = tokenizer.encode(prompt), tokenizer.encode(continuation)
    if not p_ids or not c_ids:
        raise LslmError("the prompt and the continuation must each have at least one token")
    if len(c_ids) > model.config.block_size:
        raise LslmError(f"the continuation has {len(c_ids)} tokens; at most block_size "
                        f"{model.config.block_size} can be scored")
    ids = (p_ids + c_ids)[-(model.config.block_size + 1):]
    losses = token_losses(model, ids)[0]
    return -losses[-len(c_ids):].sum().item()


def paired_prompt_probe(
    model: nn.Module,
    tokenizer,
    pairs: Sequence[tuple[str, str]],
    continuations: Sequence[str],
) -> torch.Tensor:
    """For each (prompt_a, prompt_b) pair and each continuation, ln p(c | a) - ln p(c | b).

    Shape (pairs, continuations). Positive: the model finds the continuation likelier
    after prompt A. The prompts of a pair should differ in one thing only, so the gap
    measures what the model learned about that one thing from its training text.
    """
    if not pairs or not continuations:
        raise LslmError("give at least one pair of prompts and one continuation")
    gaps = torch.zeros(len(pairs), len(continuations))
    for i, (a, b) in enumerate(pairs):
        for j, c in enumerate(continuations):
            gaps[i, j] = (continuation_logprob(model, tokenizer, a, c)
                          - continuation_logprob(model, tokenizer, b, c))
    return gaps


def train_on_repeats(
    model: nn.Module,
    n: int,
    steps: int,
    batch: int = 32,
    lr: float = 3e-3,
    seed: int = 0,
    keep: Iterable[int] = (),
) -> tuple[list[float], dict[int, dict[str, torch.Tensor]]]:
    """Train ``model`` on random n-token sequences repeated twice (fresh ones every step).

    A tiny model learns to copy within a few hundred steps, which makes it a quick
    subject for watching attention patterns form. Returns the loss of every step and a
    copy of the weights (a ``state_dict``) at each step in ``keep`` (0 = before training).
    """
    if 2 * n > model.config.block_size:
        raise LslmError(f"2 * n = {2 * n} tokens do not fit block_size {model.config.block_size}")
    from lslm.loop import TrainConfig, TrainLoop

    keep = set(keep)
    snapshots: dict[int, dict[str, torch.Tensor]] = {}

    def snapshot(step: int) -> None:
        if step in keep:
            snapshots[step] = {k: v.detach().clone() for k, v in model.state_dict().items()}

    # A short warmup, then a constant learning rate; clipping and no weight decay. Copying
    # is learned in a sudden jump after a plateau; with this recipe the jump came within
    # about 100 steps for every seed tried at n = 8, on 1 and 2 threads.
    device = model_device(model)
    config = TrainConfig(max_iters=steps, lr=lr, min_lr=lr, warmup_iters=min(20, steps), weight_decay=0.0,
                         beta2=0.99, grad_clip=1.0, eval_interval=0, seed=seed, progress=False)
    loop = TrainLoop(
        model,
        lambda net, tokens: net(tokens[:, :-1], tokens[:, 1:])[1],
        # Fresh sequences every step, the same ones for the same seed, drawn on the CPU and
        # moved to the model.
        lambda: to_device(repeated_random_tokens(n, batch, model.config.vocab_size,
                                                 seed=seed * 1_000_003 + loop.step + 1), device),
        config,
        device=str(device),
        callbacks=[lambda _, record: snapshot(record["step"])],
        fused=False,
    )
    snapshot(0)
    losses = loop.fit()["train_loss"]
    return losses, snapshots
