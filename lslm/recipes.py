"""Named training recipes: a model shape and a training configuration measured together.

``baby`` is the benchmark's reference configuration (and the defaults of ``TrainConfig``
and ``lslm train``). ``quick`` is tuned for the lowest validation loss inside the
same wall-clock budget (about 2 minutes on 2 CPU cores): it spends that time better,
with a larger batch and learning rate, bfloat16 linears and ``torch.compile``.
``benchmarks/bench_train.py --recipe quick`` measures it.

    lslm train --out runs/quick --corpus tinyshakespeare --recipe quick
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Recipe:
    model: dict  # GPTConfig fields
    train: dict  # TrainConfig fields; anything not named keeps TrainConfig's default
    about: str


RECIPES: dict[str, Recipe] = {
    "baby": Recipe(
        model={"n_layer": 4, "n_head": 4, "n_embd": 128, "block_size": 64},
        train={"batch_size": 12, "lr": 1e-3, "min_lr": 1e-4, "max_iters": 2000, "eval_interval": 250},
        about="the benchmark's reference configuration: 2000 steps of 12 blocks in float32",
    ),
    "quick": Recipe(
        model={"n_layer": 4, "n_head": 4, "n_embd": 128, "block_size": 64},
        train={"batch_size": 32, "lr": 3e-3, "min_lr": 3e-4, "max_iters": 1500, "eval_interval": 500,
               "amp": True, "compile": True},
        about="the best validation loss measured within the reference's 2-minute budget on 2 CPU cores",
    ),
}
