"""Generation speed with and without the KV cache, side by side in one run.

    python benchmarks/bench_generate.py            # Markdown table
    python benchmarks/bench_generate.py --json results.json

For each model shape, greedy generation of a full context's worth of tokens is timed
with ``use_cache=False`` (every step re-runs the whole window) and ``use_cache=True``
(every step feeds only the newest token), median of ``--repeats`` runs, and the two
outputs are checked to be the same tokens. Weights are random: speed does not depend on
them. Record results in benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_train import machine  # noqa: E402

from lslm.generate import time_generation  # noqa: E402
from lslm.model import GPT, GPTConfig  # noqa: E402

SHAPES = {
    # notebook 04's baby GPT: 64 characters of context
    "baby (4x128, block 64)": dict(vocab_size=65, block_size=64, n_layer=4, n_head=4, n_embd=128),
    # the same width with a longer context, where the cache matters more
    "4x128, block 256": dict(vocab_size=65, block_size=256, n_layer=4, n_head=4, n_embd=128),
    "6x384, block 256": dict(vocab_size=65, block_size=256, n_layer=6, n_head=6, n_embd=384),
}


def run(repeats: int) -> list[dict]:
    rows = []
    for name, shape in SHAPES.items():
        torch.manual_seed(0)
        model = GPT(GPTConfig(**shape, bias=False)).eval()
        prompt = [1, 2, 3, 4]
        new = shape["block_size"] - len(prompt)  # fill the context exactly once
        idx = torch.tensor([prompt])
        same = torch.equal(model.generate(idx, new, temperature=0, use_cache=False),
                           model.generate(idx, new, temperature=0, use_cache=True))
        slow = time_generation(model, prompt, new, use_cache=False, repeats=repeats)
        fast = time_generation(model, prompt, new, use_cache=True, repeats=repeats)
        rows.append({"shape": name, "new_tokens": new, "no_cache_s": slow, "cache_s": fast,
                     "speedup": slow / fast, "same_tokens": same})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    rows = run(args.repeats)
    print(f"Machine: {machine()}, {torch.get_num_threads()} threads\n")
    print("| model | new tokens | no cache (ms/token) | KV cache (ms/token) | speedup | same tokens |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['shape']} | {r['new_tokens']} | {1000 * r['no_cache_s'] / r['new_tokens']:.2f} | "
              f"{1000 * r['cache_s'] / r['new_tokens']:.2f} | {r['speedup']:.2f}x | {r['same_tokens']} |")
    if args.json:
        args.json.write_text(json.dumps({"machine": machine(), "rows": rows}, indent=2))
    if not all(r["same_tokens"] for r in rows):
        sys.exit("the KV cache changed the generated tokens")


if __name__ == "__main__":
    main()
