"""Exercises of notebook 15: exposure and DP-SGD's clipping."""

from __future__ import annotations

from lslm.checks.registry import exercise


@exercise(
    "exposure_from_rank",
    "What is a canary's exposure when its secret ranks `rank` among `space` candidates?",
    "exposure = log2(number of candidates) - log2(rank of the true secret); rank 1 means the "
    "model likes the true secret best",
)
def _exposure_from_rank(space: int, rank: int) -> float:
    import math

    return math.log2(space) - math.log2(rank)


@exercise(
    "clipped_norm",
    "DP-SGD clips one example's gradient to norm `clip`. What is the norm of the clipped "
    "gradient, given the gradient's parts?",
    "the gradient's norm is the square root of the sum of squares of all its numbers; DP-SGD "
    "scales the gradient down to norm `clip` when it is longer, and leaves a shorter one alone",
)
def _clipped_norm(parts: list, clip: float) -> float:
    import torch

    from lslm.privacy import DPConfig, dp_gradient

    grads = {f"p{i}": torch.tensor([[float(v) for v in part]], dtype=torch.float64)
             for i, part in enumerate(parts)}
    out = dp_gradient(grads, DPConfig(clip=clip, noise=0.0))
    return float(sum(g.pow(2).sum() for g in out.values()).sqrt())
