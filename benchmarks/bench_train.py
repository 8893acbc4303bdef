"""Training speed, memory and quality at the "baby" reference configuration.

Character-level Tiny Shakespeare; 4 layers, 4 heads, 128 wide, block 64, batch 12,
lr 1e-3 with 100 warmup steps and cosine decay to 1e-4 over 2000 steps, no dropout,
weight decay 0.1, betas (0.9, 0.99), gradient clipping at 1.0, no biases.

    python benchmarks/bench_train.py                 # one run of 2000 steps
    python benchmarks/bench_train.py --runs 3        # medians over 3 seeds
    python benchmarks/bench_train.py --cli           # also time `lslm train` with defaults
    python benchmarks/bench_train.py --routes fp32,bf16   # speed routes side by side

Routes: ``fp32`` is the default path (float32, fused AdamW); ``bf16`` runs the linear
layers in bfloat16 autocast while attention stays in float32 (``TrainConfig(amp=True)``);
``bf16+compile`` also compiles the model with ``torch.compile`` (``compile=True``; the
first steps are slow while it compiles, and the wall time includes that).

The validation split is the last 10% of the text, as in the reference loop, so the
losses compare. Results are printed as Markdown; record them in benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from lslm.data import encode_splits, load_corpus, split_text
from lslm.evaluate import evaluate
from lslm.model import GPT, GPTConfig
from lslm.tokenizers import train_tokenizer
from lslm.train import TrainConfig, Trainer

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "tinyshakespeare.txt"
REFERENCE = {"ms_per_iter": 48.9, "tokens_per_sec": 15_700, "val_loss": 1.886, "wall_s": 128}


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__} "
            f"({torch.get_num_threads()} threads), Python {platform.python_version()}")


ROUTES = {"fp32": {}, "bf16": {"amp": True}, "bf16+compile": {"amp": True, "compile": True}}


def one_run(seed: int, iters: int, route: str = "fp32") -> dict:
    text = load_corpus("tinyshakespeare")
    tok = train_tokenizer("char", text)
    tokens = encode_splits(split_text(text, val_frac=0.1, test_frac=0.0), tok)
    torch.manual_seed(seed)
    model = GPT(GPTConfig(vocab_size=tok.vocab_size, block_size=64, n_layer=4, n_head=4,
                          n_embd=128, dropout=0.0, bias=False))
    cfg = TrainConfig(max_iters=iters, batch_size=12, lr=1e-3, min_lr=1e-4, warmup_iters=100,
                      weight_decay=0.1, beta1=0.9, beta2=0.99, grad_clip=1.0, eval_interval=250,
                      eval_iters=20, seed=seed, device="cpu", progress=False, **ROUTES[route])
    trainer = Trainer(model, tok, tokens, cfg)
    start = time.perf_counter()
    history = trainer.fit()
    wall = time.perf_counter() - start
    tokens_per_step = 12 * 64
    ms = [tokens_per_step / tps * 1000 for tps in history["tokens_per_sec"]]
    trainer.config.eval_iters = 200
    return {
        "seed": seed,
        "route": route,
        "ms_per_iter": statistics.median(ms),
        "tokens_per_sec": statistics.median(history["tokens_per_sec"]),
        "wall_s": wall,
        "val_loss_20": history["val_loss"][-1],  # 20 batches, as the reference reports
        "val_loss_200": trainer.estimate_loss("val"),
        "val_loss_full": evaluate(model, tokens["val"], tok)["loss"],
    }


def time_cli() -> dict:
    """Wall time of `lslm train --out DIR` with no other options (the built-in corpus)."""
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        p = subprocess.run([sys.executable, "-m", "lslm", "train", "--out", f"{tmp}/run", "--no-progress"],
                           capture_output=True, text=True)
        wall = time.perf_counter() - start
        if p.returncode != 0:
            raise SystemExit(f"lslm train failed: {p.stderr.strip()}")
    return {"cli_default_train_s": wall, "cli_last_line": p.stdout.strip().splitlines()[-1]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1, help="runs with seeds 1337, 1338, ...")
    parser.add_argument("--iters", type=int, default=2000)
    parser.add_argument("--cli", action="store_true", help="also time `lslm train` with defaults")
    parser.add_argument("--json", type=Path, help="also write the raw figures here")
    parser.add_argument("--routes", default="fp32", help=f"comma-separated, from {', '.join(ROUTES)}")
    args = parser.parse_args()
    routes = args.routes.split(",")
    if unknown := [r for r in routes if r not in ROUTES]:
        parser.error(f"unknown route(s) {unknown}: pick from {', '.join(ROUTES)}")
    if "LSLM_TINYSHAKESPEARE" not in os.environ and SHARED.exists():
        os.environ["LSLM_TINYSHAKESPEARE"] = str(SHARED)

    # Seeds outer, routes inner: the routes of one seed run back to back, so a slow
    # spell on the machine hits them alike.
    runs = [one_run(1337 + i, args.iters, r) for i in range(args.runs) for r in routes]
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    keys = [k for k in runs[0] if k not in ("seed", "route")]
    med = {r: {k: statistics.median(x[k] for x in runs if x["route"] == r) for k in keys} for r in routes}
    print(f"Machine: {machine()}\n")
    print(f"Baby configuration, {args.iters} iterations, {args.runs} run(s) per route, medians:\n")
    print("| measure | reference | " + " | ".join(routes) + " |")
    print("| --- | --- | " + " | ".join("---" for _ in routes) + " |")
    rows = [("ms per iteration (median)", "ms_per_iter", REFERENCE["ms_per_iter"], "{:.1f}"),
            ("tokens/s (median)", "tokens_per_sec", REFERENCE["tokens_per_sec"], "{:,.0f}"),
            ("wall time, evaluations included (s)", "wall_s", REFERENCE["wall_s"], "{:.1f}"),
            ("validation loss, 20 batches", "val_loss_20", REFERENCE["val_loss"], "{:.3f}"),
            ("validation loss, 200 batches", "val_loss_200", None, "{:.3f}"),
            ("validation loss, whole split", "val_loss_full", None, "{:.3f}")]
    for label, key, ref, fmt in rows:
        cells = [fmt.format(med[r][key]) for r in routes]
        print(f"| {label} | {'' if ref is None else ref} | " + " | ".join(cells) + " |")
    speed = [f"{REFERENCE['ms_per_iter'] / med[r]['ms_per_iter']:.2f}x" for r in routes]
    print("| speed-up over the reference loop | 1.00x | " + " | ".join(speed) + " |")
    print(f"| peak memory of the whole benchmark (max RSS, MB) | | {peak_mb:.0f} |")
    if len(runs) > 1:
        print("\nPer run: " + "; ".join(
            f"{r['route']} seed {r['seed']}: {r['ms_per_iter']:.1f} ms/it, val {r['val_loss_20']:.3f}" for r in runs))
    result = {"machine": machine(), "runs": runs, "median": med, "peak_rss_mb": peak_mb}
    if args.cli:
        result.update(time_cli())
        print(f"\n`lslm train --out DIR` with defaults: {result['cli_default_train_s']:.0f} s wall "
              f"({result['cli_last_line']})")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
