"""A scaling-law sweep small enough for a CPU: train several model sizes, fit L(N) = a·N^(-α).

Kaplan et al. 2020 (*Scaling Laws for Neural Language Models*) found that a language
model's test loss falls as a power of its non-embedding parameter count N,
``L(N) = (N_c / N)^α_N`` with α_N ≈ 0.076, when data and training time are not the limit.
A power law is a straight line on log-log axes, ``log L = log a - α·log N``, so a
least-squares line through the points gives α as minus its slope.

Here every model sees the same number of tokens (a few hundred thousand characters of
the built-in python-docs corpus), so the bigger ones are further from converged and see
far fewer than the ~20 tokens per parameter that Hoffmann et al. 2022 (Chinchilla)
found compute-optimal. The fitted exponent is a property of this small setting; the
notebook compares it with Kaplan's.

    python -m lslm.scaling --out lslm/resources/scaling-sweep.json

That file ships inside the package (``RECORDED_SWEEP``), so notebook 10 can show a
recorded sweep from any install, editable or not.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from lslm.errors import LslmError
from lslm.files import MAX_JSON_BYTES, read_json

# A sweep recorded on a 2-core CPU, shipped as package data (pyproject.toml).
RECORDED_SWEEP = Path(__file__).resolve().parent / "resources" / "scaling-sweep.json"

KAPLAN_ALPHA_N = 0.076  # Kaplan et al. 2020, equation 1.1
CHINCHILLA_TOKENS_PER_PARAM = 20  # Hoffmann et al. 2022: compute-optimal D ≈ 20 N


@dataclass
class SweepConfig:
    """What to train: ``sizes`` are (n_layer, n_embd) pairs; all get the same token budget."""

    sizes: tuple[tuple[int, int], ...] = ((1, 16), (2, 24), (2, 32), (2, 48), (2, 64), (2, 96))
    n_head: int = 4
    steps: int = 300
    batch_size: int = 16
    block_size: int = 64
    lr: float = 3e-3  # one rate for all sizes; 6e-3 made the widest models worse
    warmup_iters: int = 30
    eval_iters: int = 20  # validation batches, the same ones for every model
    seed: int = 0
    corpus: str = "python-docs"
    # torch threads while training: matrices this small gain nothing from more, and one
    # thread makes the losses the same on every machine (with the same torch version).
    threads: int = 1

    def __post_init__(self) -> None:
        self.sizes = tuple((int(layers), int(width)) for layers, width in self.sizes)
        if self.threads < 1:
            raise LslmError(f"threads must be at least 1, got {self.threads}")
        if len(self.sizes) < 2:
            raise LslmError("a sweep needs at least two model sizes to fit a line through")
        for layers, width in self.sizes:
            if layers < 1 or width < 1 or width % self.n_head:
                raise LslmError(
                    f"size (n_layer={layers}, n_embd={width}) is not valid: both must be positive "
                    f"and n_embd a multiple of n_head={self.n_head}"
                )

    @property
    def tokens(self) -> int:
        """Training tokens per model: steps × batch × block."""
        return self.steps * self.batch_size * self.block_size


@dataclass
class PowerLaw:
    """``L(N) = a · N^(-alpha)``, fitted as a line in log-log space."""

    a: float
    alpha: float
    r2: float  # of the log-log line: 1 is a perfect power law

    def __call__(self, n: float) -> float:
        return self.a * n ** (-self.alpha)


def fit_power_law(n: Sequence[float], loss: Sequence[float]) -> PowerLaw:
    """Least-squares fit of ``log loss = log a - alpha · log n``."""
    if len(n) != len(loss) or len(n) < 2:
        raise LslmError(f"need at least two (n, loss) pairs of equal length, got {len(n)} and {len(loss)}")
    if min(n) <= 0 or min(loss) <= 0:
        raise LslmError("parameter counts and losses must be positive to take logarithms")
    xs, ys = [math.log(v) for v in n], [math.log(v) for v in loss]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    if sxx == 0:
        raise LslmError("all models have the same size: a fit needs different sizes")
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx
    intercept = my - slope * mx
    ss_res = sum((y - (intercept + slope * x)) ** 2 for x, y in zip(xs, ys))
    ss_tot = sum((y - my) ** 2 for y in ys)
    r2 = 1.0 - ss_res / ss_tot if ss_tot > 0 else 1.0
    return PowerLaw(a=math.exp(intercept), alpha=-slope, r2=r2)


@dataclass
class SweepResult:
    settings: dict
    runs: list[dict] = field(default_factory=list)
    environment: dict = field(default_factory=dict)

    def fit(self) -> PowerLaw:
        """The power law through (non-embedding parameters, validation loss)."""
        return fit_power_law([r["non_embedding_params"] for r in self.runs],
                             [r["val_loss"] for r in self.runs])

    def to_dict(self) -> dict:
        law = self.fit()
        return {**asdict(self), "fit": {"a": law.a, "alpha": law.alpha, "r2": law.r2}}

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")
        return path


def load_sweep(path: str | Path = RECORDED_SWEEP) -> SweepResult:
    """Read a file written by ``python -m lslm.scaling --out`` (the recorded sweep by default)."""
    path = Path(path)
    if not path.exists():
        raise LslmError(f"no sweep results at {path}: run `python -m lslm.scaling --out {path}`")
    d = read_json(path, MAX_JSON_BYTES, "sweep results file")  # a regular file, bounded
    if not (isinstance(d, dict) and isinstance(d.get("settings"), dict) and isinstance(d.get("runs"), list)
            and isinstance(d.get("environment", {}), dict)):
        raise LslmError(f"{path} is not a sweep results file (a JSON object with 'settings' and 'runs'): "
                        f"run `python -m lslm.scaling --out {path}` again")
    return SweepResult(settings=d["settings"], runs=d["runs"], environment=d.get("environment", {}))


def run_sweep(
    config: SweepConfig | None = None,
    data=None,
    callback: Callable[[dict], None] | None = None,
) -> SweepResult:
    """Train every size in ``config`` on the same tokens and measure its validation loss.

    ``data`` is a ``lslm.pipeline.PreparedData`` (char-level ``config.corpus`` if None);
    ``callback(run)`` is called after each model, e.g. to print progress.
    """
    import torch

    from lslm.pipeline import prepare_data

    config = config or SweepConfig()
    if data is None:
        data = prepare_data(config.corpus, tokenizer="char")
    result = SweepResult(
        settings={**asdict(config), "tokens": config.tokens},
        environment={"torch": torch.__version__, "threads": config.threads,
                     "python": platform.python_version(), "machine": platform.machine()},
    )
    threads_before = torch.get_num_threads()
    torch.set_num_threads(config.threads)
    try:
        for n_layer, n_embd in config.sizes:
            result.runs.append(_train_one(config, data, n_layer, n_embd))
            if callback is not None:
                callback(result.runs[-1])
    finally:
        torch.set_num_threads(threads_before)
    return result


def _train_one(config: SweepConfig, data, n_layer: int, n_embd: int) -> dict:
    """Train one size of the sweep and measure it."""
    from lslm.model import GPT, GPTConfig, count_params
    from lslm.scale import non_embedding_params, training_flops
    from lslm.train import TrainConfig, Trainer

    model_config = GPTConfig(vocab_size=data.tokenizer.vocab_size, block_size=config.block_size,
                             n_layer=n_layer, n_head=config.n_head, n_embd=n_embd, bias=False)
    model = GPT(model_config, seed=config.seed)
    train_config = TrainConfig(
        max_iters=config.steps, batch_size=config.batch_size, lr=config.lr,
        min_lr=config.lr / 10, warmup_iters=config.warmup_iters, eval_interval=0,
        eval_iters=config.eval_iters, seed=config.seed, device="cpu", progress=False,
    )
    trainer = Trainer(model, data.tokenizer, data.tokens, train_config)
    start = time.perf_counter()
    history = trainer.fit()
    seconds = time.perf_counter() - start
    return {
        "n_layer": n_layer, "n_head": config.n_head, "n_embd": n_embd,
        "params": count_params(model_config),
        "non_embedding_params": non_embedding_params(model_config),
        "tokens": config.tokens,
        "train_flops": training_flops(model_config, config.tokens),
        "final_train_loss": sum(history["train_loss"][-20:]) / len(history["train_loss"][-20:]),
        "val_loss": trainer.estimate_loss("val"),
        "seconds": seconds,
    }


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m lslm.scaling",
        description="Train several tiny GPTs on the same tokens and fit L(N) = a·N^-alpha.",
    )
    parser.add_argument("--out", default="scaling-sweep.json",
                        help=f"JSON file to write (the recorded one that ships with lslm: {RECORDED_SWEEP})")
    parser.add_argument("--steps", type=int, default=SweepConfig.steps)
    parser.add_argument("--sizes", default=None,
                        help="n_layer x n_embd pairs, e.g. 1x16,2x32,2x64 (default: the notebook's six)")
    args = parser.parse_args(argv)
    kwargs: dict = {"steps": args.steps}
    if args.sizes:
        try:
            kwargs["sizes"] = tuple(tuple(int(v) for v in s.split("x")) for s in args.sizes.split(","))
        except ValueError:
            raise SystemExit(f"--sizes must look like 1x16,2x32 (n_layer x n_embd), got {args.sizes!r}")
    try:
        config = SweepConfig(**kwargs)
    except LslmError as e:
        raise SystemExit(str(e))

    def show(run: dict) -> None:
        print(f"n_layer {run['n_layer']} n_embd {run['n_embd']:>4}: "
              f"{run['non_embedding_params']:>8,} non-embedding params, "
              f"val loss {run['val_loss']:.3f} ({run['seconds']:.1f} s)", flush=True)

    result = run_sweep(config, callback=show)
    law = result.fit()
    path = result.save(args.out)
    print(f"L(N) = {law.a:.3f} · N^-{law.alpha:.3f} (R² {law.r2:.3f}); Kaplan et al.: alpha_N ≈ "
          f"{KAPLAN_ALPHA_N}. Wrote {path}")


if __name__ == "__main__":
    main()
