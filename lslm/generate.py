"""Text generation, measured: how sampling settings trade repetition against nonsense.

``GPT.generate`` does the sampling (greedy, temperature, top-k, top-p, with a KV cache).
This module measures what comes out:

* ``distinct_n``: the share of word n-grams that are different; low means repetitive.
* ``repeated_share``: the share of word n-grams that already appeared earlier in the
  same sample; greedy decoding tends to fall into loops, which this catches.
* ``sample_perplexity``: how surprised the model itself is by its sample (at
  temperature 1); very low means safe and dull, very high means the sample wanders
  into text the model finds unlikely, i.e. nonsense.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from lslm.devices import model_device
from lslm.errors import LslmError
from lslm.utils import ngrams

# Named sampling settings, from the most cautious to the wildest.
METHODS: dict[str, dict] = {
    "greedy": {"temperature": 0.0},
    "temperature 0.5": {"temperature": 0.5},
    "top-k 10": {"temperature": 1.0, "top_k": 10},
    "top-p 0.9": {"temperature": 1.0, "top_p": 0.9},
    "temperature 1.0": {"temperature": 1.0},
    "temperature 1.5": {"temperature": 1.5},
}


def distinct_n(texts: Sequence[str], n: int = 2) -> float:
    """Distinct word n-grams / all word n-grams, over all ``texts`` together (0 to 1)."""
    if n < 1:
        raise LslmError(f"n must be at least 1, got {n}")
    grams: Counter = Counter()
    for text in texts:
        grams.update(ngrams(text.split(), n))
    total = sum(grams.values())
    return len(grams) / total if total else 0.0


def repeated_share(text: str, n: int = 3) -> float:
    """The share of word n-grams in ``text`` that already occurred earlier in it."""
    grams = ngrams(text.split(), n)
    total = sum(grams.values())
    # Every occurrence after an n-gram's first is a repeat.
    return (total - len(grams)) / total if total else 0.0


@torch.no_grad()
def sample_perplexity(model, tokens: torch.Tensor, prompt_len: int) -> float:
    """exp(mean negative log-likelihood) of ``tokens[:, prompt_len:]`` under ``model``.

    ``tokens`` is (batch, time) from ``generate``; the prompt is context, not scored.
    Only the last ``block_size`` tokens fit, so longer samples are scored in that window.
    """
    if not 0 < prompt_len < tokens.size(1):
        raise LslmError(f"prompt_len must be between 1 and {tokens.size(1) - 1}, got {prompt_len}")
    tokens = tokens.to(model_device(model))  # generate's output is there already; a CPU copy moves
    block, total = model.config.block_size, tokens.size(1)
    nll, count, scored = 0.0, 0, prompt_len
    while scored < total:
        # Score positions scored..stop-1 in one pass; each sees up to block_size tokens
        # before it (at least half a block once the sample is long).
        stop = min(total, max(scored + max(1, block // 2), block + 1))
        start = max(0, stop - 1 - block)
        logp = F.log_softmax(model(tokens[:, start : stop - 1])[0].float(), dim=-1)
        pos = torch.arange(scored, stop, device=tokens.device)
        picked = logp[:, pos - 1 - start].gather(-1, tokens[:, pos].unsqueeze(-1))
        nll -= picked.sum().item()
        count += picked.numel()
        scored = stop
    return math.exp(nll / count)


def compare_methods(
    model,
    tokenizer,
    prompt: str,
    methods: dict[str, dict] | None = None,
    num_samples: int = 8,
    length: int = 200,
    seed: int = 0,
) -> list[dict]:
    """Sample ``num_samples`` continuations with each method and measure them.

    Returns one row per method: its settings, the samples, distinct-2, the mean
    repeated 3-gram share and the model's perplexity of its own samples.
    """
    methods = METHODS if methods is None else methods
    prompt_ids = tokenizer.encode(prompt)
    if not prompt_ids:
        raise LslmError("the prompt is empty: give at least one character to start from")
    rows = []
    idx = torch.tensor([prompt_ids] * num_samples)  # generate checks it here, then moves it to the model
    for name, settings in methods.items():
        out = model.generate(idx, length, seed=seed, **settings)
        texts = [tokenizer.decode(row[len(prompt_ids) :].tolist()) for row in out]
        rows.append({
            "method": name,
            **settings,
            "samples": texts,
            "distinct_2": distinct_n(texts, 2),
            "repeated_3": sum(repeated_share(t, 3) for t in texts) / len(texts),
            "perplexity": sample_perplexity(model, out, len(prompt_ids)),
        })
    return rows


def time_generation(model, prompt_ids: Sequence[int], new_tokens: int, use_cache: bool,
                    repeats: int = 3) -> float:
    """Median seconds to greedily generate ``new_tokens`` tokens (for the benchmark)."""
    idx = torch.tensor([list(prompt_ids)])  # generate checks it here, then moves it to the model
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        # .cpu() waits for a GPU's queued kernels, so the time is the work's, not the launches'.
        model.generate(idx, new_tokens, temperature=0, use_cache=use_cache).cpu()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]
