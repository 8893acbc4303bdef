"""Exercises of notebook 10: scale and compute."""

from __future__ import annotations

from lslm.checks.registry import exercise


@exercise(
    "training_days",
    "How many days does it take to train a model with n_params parameters on `tokens` tokens, "
    "on n_devices accelerators of peak_flops FLOP/s each, at utilisation mfu? Use 6·N·D.",
    "training costs about 6 FLOPs per parameter per token (2 forward, 4 backward), so "
    "6 * n_params * tokens FLOPs; the devices together do n_devices * peak_flops * mfu FLOPs "
    "per second; divide, then divide by 86,400 seconds per day",
    rel_tol=0.01,
)
def _training_days(n_params: float, tokens: float, n_devices: int, peak_flops: float,
                   mfu: float) -> float:
    from lslm.scale import SECONDS_PER_DAY, training_flops

    return training_flops(n_params, tokens) / (n_devices * peak_flops * mfu) / SECONDS_PER_DAY
