"""Data privacy: how much a language model memorizes a secret from its training text, and
two ways to make it memorize less.

* ``Canary``: a secret in a fixed format, "Mia's secret number is 4817.", planted in the
  training text (``lslm.world.WorldConfig(canaries=...)``).
* ``exposure``: Carlini et al. 2019, "The Secret Sharer" (arXiv:1802.08232), section 4:
  rank every candidate secret of the format by the model's likelihood; the exposure is
  log2(number of candidates) - log2(rank of the true secret). A secret the model has not
  memorized sits mid-ranking (exposure about 1); a memorized one ranks first (exposure
  log2 of the candidate space, 13.3 bits for 4 digits). When the space is too large to rank
  exactly, a sample of candidates estimates the rank, as the paper's section 4.3 does.
* ``extract``: greedy decoding from the canary's prefix, the attack that needs no candidates.
* ``deduplicate``: drop repeated paragraphs from a corpus (Kandpal et al. 2022,
  "Deduplicating Training Data Mitigates Privacy Risks in Language Models").
* DP-SGD (Abadi et al. 2016, "Deep Learning with Differential Privacy", arXiv:1607.00133):
  clip each example's gradient to norm ``clip``, sum, add Gaussian noise of standard
  deviation ``noise * clip``, divide by the batch size. ``per_example_grads`` and
  ``dp_gradient`` are the two halves; ``DPTrainLoop`` is the library's training loop with
  that gradient in place of the ordinary one. No example can move the model by more than
  ``clip``, and the noise hides what is left of any one of them.
"""

from __future__ import annotations

import itertools
import math
import random
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from lslm.errors import LslmError, real_number, shown, whole_number
from lslm.loop import TrainLoop, lr_at
from lslm.utils import evaluating

DIGITS = "0123456789"


# --------------------------------------------------------------------------- canaries
@dataclass(frozen=True)
class Canary:
    """A secret in a format: ``prefix + secret + suffix``, each secret character drawn from
    ``alphabet``. Every string of ``len(secret)`` such characters is a candidate."""

    prefix: str
    secret: str
    suffix: str = "."
    alphabet: str = DIGITS

    def __post_init__(self) -> None:
        for name in ("prefix", "secret", "suffix", "alphabet"):
            if not isinstance(getattr(self, name), str):
                raise LslmError(f"a canary's {name} must be a string, got {shown(getattr(self, name))}")
        if not self.prefix.strip():
            raise LslmError("a canary needs a prefix (\"Mia's secret number is \") for the model to read first")
        if not self.secret or len(set(self.alphabet)) != len(self.alphabet) or len(self.alphabet) < 2:
            raise LslmError(f"a canary needs a non-empty secret and an alphabet of at least 2 distinct "
                            f"characters, got secret {shown(self.secret)} and alphabet {shown(self.alphabet)}")
        stray = sorted(set(self.secret) - set(self.alphabet))
        if stray:
            raise LslmError(f"the secret {shown(self.secret)} has {''.join(stray)!r}, which is not in the "
                            f"alphabet {shown(self.alphabet)}: every candidate is drawn from the alphabet")

    @property
    def text(self) -> str:
        return self.fill(self.secret)

    @property
    def space(self) -> int:
        """How many candidates the format allows: len(alphabet) ** len(secret)."""
        return len(self.alphabet) ** len(self.secret)

    def fill(self, candidate: str) -> str:
        return f"{self.prefix}{candidate}{self.suffix}"


def _ids_of(tokenizer, texts: list[str], block_size: int) -> list[list[int]]:
    rows = [tokenizer.encode(t) for t in texts]
    longest = max(len(r) for r in rows)
    if longest > block_size:
        raise LslmError(f"a filled canary is {longest} tokens, more than the model's block_size "
                        f"{block_size}: use a shorter canary")
    return rows


def _common_prefix(rows: list[list[int]]) -> int:
    shortest = min(len(r) for r in rows)
    n = 0
    while n < shortest - 1 and all(r[n] == rows[0][n] for r in rows):
        n += 1
    return n


@torch.no_grad()
def text_logprobs(model: nn.Module, tokenizer, texts: list[str], batch_size: int = 512) -> torch.Tensor:
    """ln p(text) of each text under ``model``, token by token after the first (which
    nothing before it predicts), as a float64 tensor of shape (len(texts),).

    Candidates of one canary share their first tokens: those are read once for a batch, and
    their keys and values (``lslm.attention.KVCache``) serve every row; only the tokens
    after them run per row. The result is the same as reading every text in full.
    """
    from lslm.attention import KVCache

    if not texts:
        return torch.zeros(0, dtype=torch.float64)
    rows = _ids_of(tokenizer, list(texts), model.config.block_size)
    device = next(model.parameters()).device
    out = []
    with evaluating(model):
        for start in range(0, len(rows), batch_size):
            chunk = rows[start:start + batch_size]
            shared = _common_prefix(chunk) if len(chunk) > 1 else 0
            cache, total = None, torch.zeros(len(chunk), dtype=torch.float64)
            if shared >= 2:  # read the shared tokens once, score them once
                head = torch.tensor([chunk[0][:shared]], device=device)
                cache = KVCache(model.config.n_layer)
                logits, _ = model(head, cache=cache)
                logp = F.log_softmax(logits[0].double(), dim=-1).cpu()
                total += sum(logp[t, chunk[0][t + 1]].item() for t in range(shared - 1))
                last = logp[-1]  # predicts each row's first own token
                for layer in range(model.config.n_layer):
                    cache.keys[layer] = cache.keys[layer].expand(len(chunk), -1, -1, -1)
                    cache.values[layer] = cache.values[layer].expand(len(chunk), -1, -1, -1)
                total += last[[r[shared] for r in chunk]]
            tails = [r[shared:] for r in chunk]
            width = max(len(r) for r in tails)
            ids = torch.zeros(len(chunk), width, dtype=torch.long)
            mask = torch.zeros(len(chunk), width, dtype=torch.bool)
            for i, r in enumerate(tails):
                ids[i, :len(r)] = torch.tensor(r)
                mask[i, 1:len(r)] = True
            logits, _ = model(ids.to(device), cache=cache)
            logp = F.log_softmax(logits[:, :-1].double(), dim=-1).cpu()
            picked = logp.gather(-1, ids[:, 1:, None])[..., 0]
            out.append(total + (picked * mask[:, 1:]).sum(1))
    return torch.cat(out)


@dataclass(frozen=True)
class Exposure:
    """A canary's exposure and how it was found."""

    canary: Canary
    exposure: float  # bits: log2(space) - log2(rank)
    rank: float  # 1 = the model likes the true secret best; estimated when not exact
    space: int  # how many candidates the format allows
    exact: bool  # True: every candidate was ranked
    method: str  # how, in words


def rank_of(secret_logprob: float, candidate_logprobs: torch.Tensor) -> int:
    """The secret's rank among the candidates: 1 + how many the model finds strictly likelier
    (ties count in the secret's favour, so its own score never pushes it down)."""
    return 1 + int((candidate_logprobs > secret_logprob).sum())


def exposure_bits(rank: float, space: int) -> float:
    """Exposure in bits (Carlini et al. 2019): log2(space) - log2(rank). 0 when the secret
    ranks last; log2(space) when the model likes it best of all."""
    return math.log2(space) - math.log2(rank)


def exposure(model: nn.Module, tokenizer, canary: Canary, *, max_exact: int = 100_000,
             samples: int = 4_000, seed: int = 0, batch_size: int = 512) -> Exposure:
    """The canary's exposure under ``model`` (Carlini et al. 2019, section 4).

    Up to ``max_exact`` candidates, all are ranked: rank = 1 + the number of candidates the
    model finds strictly likelier than the true secret. A larger space falls back to the
    paper's estimate (section 4.3): the share of ``samples`` random candidates at least as
    likely as the secret estimates rank / space; when none is, the sample's log-likelihoods
    are fitted with a normal distribution (the paper fits a skew-normal) and its tail gives
    the share. ``method`` says which was done. The work is bounded by ``max_exact`` or
    ``samples`` scorings either way, so it never hangs.
    """
    if not isinstance(canary, Canary):
        raise LslmError(f"canary must be an lslm.privacy.Canary, got {shown(canary)}")
    max_exact = whole_number("max_exact", max_exact, minimum=1)
    samples = whole_number("samples", samples, minimum=10)
    space, length = canary.space, len(canary.secret)
    secret_lp = text_logprobs(model, tokenizer, [canary.text])[0].item()
    if space <= max_exact:
        scored = []
        pool = ("".join(c) for c in itertools.product(canary.alphabet, repeat=length))
        while chunk := list(itertools.islice(pool, 8 * batch_size)):
            scored.append(text_logprobs(model, tokenizer, [canary.fill(c) for c in chunk], batch_size))
        rank = rank_of(secret_lp, torch.cat(scored))
        return Exposure(canary, exposure_bits(rank, space), rank, space, True,
                        f"exact: all {space:,} candidates ranked")
    rng = random.Random(seed)
    drawn = ["".join(rng.choice(canary.alphabet) for _ in range(length)) for _ in range(samples)]
    lp = text_logprobs(model, tokenizer, [canary.fill(c) for c in drawn], batch_size)
    at_least = int((lp >= secret_lp).sum())
    if at_least:
        share = at_least / samples
        how = f"estimated: {at_least} of {samples:,} random candidates are at least as likely"
    else:
        mean, std = lp.mean().item(), max(lp.std().item(), 1e-12)
        share = 0.5 * math.erfc((secret_lp - mean) / (std * math.sqrt(2)))
        share = max(share, 1.0 / space)
        how = (f"estimated: none of {samples:,} random candidates is as likely, so the tail of a "
               "normal fitted to their log-likelihoods gives the share")
    rank = max(1.0, share * space)
    return Exposure(canary, exposure_bits(rank, space), rank, space, False,
                    f"{how} (the space of {space:,} is above max_exact={max_exact:,})")


def exposure_by_ranking(model: nn.Module, tokenizer, canary: Canary) -> float:
    """The exposure written out with nothing clever: score every candidate on its own,
    sort them all, find the secret's place. The slow reference ``exposure`` is tested
    against; only for small spaces."""
    scored = []
    for c in ("".join(t) for t in itertools.product(canary.alphabet, repeat=len(canary.secret))):
        ids = tokenizer.encode(canary.fill(c))
        with torch.no_grad(), evaluating(model):
            logits, _ = model(torch.tensor([ids]))
        logp = torch.log_softmax(logits[0, :-1].double(), dim=-1)
        scored.append((sum(logp[t, ids[t + 1]].item() for t in range(len(ids) - 1)), c))
    scored.sort(key=lambda pair: -pair[0])
    secret_lp = next(lp for lp, c in scored if c == canary.secret)
    rank = 1 + sum(1 for lp, _ in scored if lp > secret_lp)
    return math.log2(len(scored)) - math.log2(rank)


def extract(model: nn.Module, tokenizer, canary: Canary) -> str:
    """What greedy decoding writes after the canary's prefix, as long as the secret: the
    attack that needs no list of candidates. Equal to ``canary.secret`` when extracted."""
    ids = torch.tensor(tokenizer.encode(canary.prefix.rstrip(" ")))
    need = len(canary.secret)
    with torch.no_grad(), evaluating(model):
        written = model.generate(ids, need + 4, temperature=0.0)[len(ids):].tolist()
    out = tokenizer.decode(written).lstrip(" ") if canary.prefix.endswith(" ") else tokenizer.decode(written)
    return out[:need]


# --------------------------------------------------------------------------- deduplication
def deduplicate(text: str, separator: str = "\n\n") -> tuple[str, int]:
    """``text`` with every repeat of a paragraph removed (the first copy stays, in place),
    and how many repeats were removed. Exact-match deduplication, the simplest kind."""
    if not isinstance(text, str):
        raise LslmError(f"deduplicate needs the corpus as a string, got {shown(text)}")
    seen, kept = set(), []
    paragraphs = text.split(separator)
    for p in paragraphs:
        key = p.strip()
        if key and key in seen:
            continue
        seen.add(key)
        kept.append(p)
    return separator.join(kept), len(paragraphs) - len(kept)


# --------------------------------------------------------------------------- DP-SGD
@dataclass(frozen=True)
class DPConfig:
    """DP-SGD's two knobs: each example's gradient is clipped to norm ``clip``; Gaussian
    noise of standard deviation ``noise * clip`` is added to the batch's sum."""

    clip: float = 1.0
    noise: float = 1.0

    def __post_init__(self) -> None:
        if real_number("clip", self.clip, low=0.0) == 0:
            raise LslmError("clip must be above 0: it is the largest gradient norm one example may have")
        real_number("noise", self.noise, low=0.0)


def per_example_grads(model: nn.Module, loss_fn: Callable[[nn.Module, Any], torch.Tensor],
                      batch: tuple[torch.Tensor, ...]) -> dict[str, torch.Tensor]:
    """The gradient of each example's loss, one row per example: {name: (batch, *shape)}.

    ``loss_fn(model, example_batch)`` gets a batch of one (each tensor of ``batch`` sliced
    with ``[i:i+1]``). ``torch.func.vmap`` runs the examples side by side; the result equals
    one backward pass per example (tested against that).
    """
    from torch.func import functional_call, grad, vmap

    names = [n for n, p in model.named_parameters() if p.requires_grad]
    frozen = {n: p.detach() for n, p in model.named_parameters() if not p.requires_grad}
    buffers = dict(model.named_buffers())

    def one(params: dict, *example: torch.Tensor) -> torch.Tensor:
        single = tuple(t.unsqueeze(0) for t in example)
        return loss_fn(lambda *a: functional_call(model, ({**params, **frozen}, buffers), a), single)

    params = {n: p.detach() for n, p in model.named_parameters() if n in names}
    with warnings.catch_warnings():  # attention has no batching rule yet: it runs example by example
        warnings.filterwarnings("ignore", message=".*batching rule.*")
        return vmap(grad(one), in_dims=(None, *([0] * len(batch))), randomness="different")(params, *batch)


def dp_gradient(grads: Mapping[str, torch.Tensor], config: DPConfig,
                generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
    """DP-SGD's gradient from per-example gradients: clip each example's whole gradient
    (all parameters together) to norm ``clip``, sum, add N(0, (noise * clip)^2) to every
    coordinate, divide by the batch size."""
    if not grads:
        raise LslmError("dp_gradient got no gradients")
    first = next(iter(grads.values()))
    n = first.shape[0]
    # each example's norm over all parameters: the per-parameter norms, then their norm
    parts = torch.stack([torch.linalg.vector_norm(g.reshape(n, -1), dim=1) for g in grads.values()])
    norms = torch.linalg.vector_norm(parts.double(), dim=0)
    scale = (config.clip / (norms + 1e-12)).clamp(max=1.0)
    out = {}
    for name, g in grads.items():
        summed = torch.tensordot(scale.to(g.dtype), g, dims=1)  # sum over examples of scale_i * g_i
        noise = (torch.randn(summed.shape, generator=generator, dtype=summed.dtype).to(summed.device)
                 if config.noise else 0.0)
        out[name] = (summed + config.noise * config.clip * noise) / n
    return out


class DPTrainLoop(TrainLoop):
    """``lslm.loop.TrainLoop`` with DP-SGD's gradient: per-example clipping and noise.

    Everything else is the library's loop: the learning-rate schedule, AdamW, callbacks,
    the progress bar, bfloat16 autocast when ``config.amp``. The loop's own gradient
    clipping is not used: the per-example clip replaces it.
    """

    def __init__(self, model: nn.Module, loss_fn, next_batch, config, dp: DPConfig, *,
                 seed: int = 0, **kw):
        if not isinstance(dp, DPConfig):
            raise LslmError(f"dp must be an lslm.privacy.DPConfig, got {shown(dp)}")
        if config.grad_accum != 1:
            raise LslmError("DP-SGD clips each example of one batch: use grad_accum=1 and a larger batch_size")
        super().__init__(model, loss_fn, next_batch, config, **kw)
        self.dp = dp
        self.noise_generator = torch.Generator().manual_seed(seed)

    def train_step(self) -> float:
        lr = lr_at(self.step, self.config)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.model.train()
        with self.own_rng():
            batch = self.next_batch()
            with self.autocast():
                with torch.no_grad():
                    loss = self.loss_fn(self.model, batch).item()
                grads = per_example_grads(self.model, self.loss_fn, batch)
            grads = dp_gradient(grads, self.dp, self.noise_generator)
        if not math.isfinite(loss):
            raise LslmError(f"training stopped: the loss became {loss} at step {self.step}. "
                            f"Lower the learning rate (now {lr:.2e}) or the noise")
        for name, p in self.model.named_parameters():
            if name in grads:
                p.grad = grads[name].to(p.dtype)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        return loss

