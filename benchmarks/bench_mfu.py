"""GPT-2 small training throughput and model FLOPs utilisation (MFU) on a GPU.

    python benchmarks/bench_mfu.py                          # GPT-2 small on the GPU, every speed-up on
    python benchmarks/bench_mfu.py --json results-mfu.json  # also write the figures as JSON ("-": stdout)
    python benchmarks/bench_mfu.py --tiny --device cpu      # a tiny model on the CPU: checks the route works
    python benchmarks/bench_mfu.py --peak-tflops 400        # a GPU the table below does not know

The model is GPT-2 small as nanoGPT benchmarks it: 12 layers, 12 heads, 768 wide, a context
of 1,024, no biases, no dropout, and the vocabulary padded from 50,257 to 50,304 (a multiple
of 64, so the head's matrix products fill the tensor cores). It trains on synthetic tokens
that sit on the device from the start: this measures the model, not a data pipeline.

Everything a fast GPU run uses is on by default: bfloat16 autocast, torch's fused attention
kernel (``F.scaled_dot_product_attention``, which picks FlashAttention on a recent NVIDIA
GPU; the run checks that kernel works at this shape and says so), ``torch.compile`` and the
fused AdamW kernel (``lslm.loop.make_optimizer``). Two routes take turns on one model:

* ``lslm``: the library's own training step, ``lslm.loop.TrainLoop`` (learning-rate schedule,
  its own random numbers, a ``loss.item()`` every micro-batch, gradient clipping);
* ``bare``: the same model, compiled module and optimizer in a minimal loop that waits for
  the GPU only at the end of the timed steps: what the model itself can reach.

MFU (Chowdhery et al. 2022, *PaLM*, appendix B) is the model's FLOPs per second over the
chip's peak. A token costs ``6·N + 12·L·H·Q·T`` FLOPs to train: 6 per parameter (2 forward,
4 backward) plus attention's two (T×T) products, with N the parameters less the position
embedding, L layers, H heads of Q dimensions and context T. That is nanoGPT's
``estimate_mfu`` (model.py). Peaks are dense bf16 tensor-core figures from NVIDIA's data
sheets (the sheets print twice as much "with sparsity"); a GPU not in ``PEAK_BF16`` gets no
MFU unless ``--peak-tflops`` gives its peak. On a CPU the MFU is n/a for the same reason.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

import torch

from lslm.devices import cpp_compiler, pick_device
from lslm.errors import LslmError
from lslm.loop import TrainConfig, TrainLoop
from lslm.model import GPT, GPTConfig, count_params
from lslm.train import lm_loss

GPT2_SMALL = dict(vocab_size=50304, block_size=1024, n_layer=12, n_head=12, n_embd=768)
TINY = dict(vocab_size=96, block_size=32, n_layer=2, n_head=2, n_embd=32)

# Dense (no 2:4 sparsity) bf16 tensor-core peaks, TFLOP/s, each from NVIDIA's data sheet.
# The first entry whose words all appear in torch.cuda.get_device_name() applies, so the
# more specific names come first; the NVL boards (other clocks and power) are left unknown.
PEAK_BF16: list[tuple[tuple[str, ...], float | None, str]] = [
    (("H100", "NVL"), None, "not in this table"),
    (("H200", "NVL"), None, "not in this table"),
    (("H100", "PCIE"), 756.0, "NVIDIA H100 data sheet, PCIe: 1,513 TFLOP/s bf16 with sparsity, 756 dense"),
    (("H100",), 989.0, "NVIDIA H100 data sheet, SXM: 1,979 TFLOP/s bf16 with sparsity, 989 dense"),
    (("H200",), 989.0, "NVIDIA H200 data sheet, SXM: 1,979 TFLOP/s bf16 with sparsity, 989 dense"),
    (("A100",), 312.0, "NVIDIA A100 data sheet: 312 TFLOP/s bf16 dense (624 with sparsity)"),
]


def gpu_peak(name: str) -> tuple[float | None, str]:
    """(peak dense bf16 TFLOP/s, where the figure comes from) for a GPU's name; None if unknown."""
    upper = name.upper()
    for words, tflops, source in PEAK_BF16:
        if all(w in upper for w in words):
            return tflops, source
    return None, "not in this table"


def flops_per_token(config: GPTConfig) -> float:
    """Training FLOPs per token, ``6·N + 12·L·H·Q·T`` (PaLM appendix B; nanoGPT's estimate_mfu)."""
    n = count_params(config) - config.block_size * config.n_embd  # the position table does no matmul
    head = config.n_embd // config.n_head
    return 6.0 * n + 12.0 * config.n_layer * config.n_head * head * config.block_size


def synchronize(device: str) -> None:
    """Wait until ``device`` has run everything queued (a GPU runs behind the Python that launches)."""
    kind = torch.device(device).type
    if kind == "cuda":
        torch.cuda.synchronize(device)
    elif kind == "mps":
        torch.mps.synchronize()


def flash_attention_check(device: str, config: GPTConfig, batch_size: int) -> str:
    """Whether torch's FlashAttention kernel runs at this shape in bf16 here (the fused kernel
    picks it first when it does)."""
    if torch.device(device).type != "cuda":
        return "n/a (not CUDA)"
    try:
        from torch.nn.attention import SDPBackend, sdpa_kernel
    except ImportError:
        return "unknown (torch without torch.nn.attention)"
    head = config.n_embd // config.n_head
    q = torch.randn(batch_size, config.n_head, config.block_size, head, device=device, dtype=torch.bfloat16)
    try:
        with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
            torch.nn.functional.scaled_dot_product_attention(q, q, q, is_causal=True)
    except RuntimeError as e:
        return f"NOT available ({str(e).splitlines()[0][:120]})"
    return "flash"


class Bench:
    """One model, its compiled module and optimizer, trained by either route on fixed synthetic batches."""

    def __init__(self, config: GPTConfig, device: str, batch_size: int, grad_accum: int, amp: bool,
                 compile: bool, fused: bool | None, compile_mode: str | None = None, seed: int = 0):
        self.config, self.device, self.grad_accum, self.amp = config, device, grad_accum, amp
        self.model = GPT(config, seed=seed).to(device)
        self.net = torch.compile(self.model, mode=compile_mode) if compile else self.model
        self.train_config = TrainConfig(max_iters=0, batch_size=batch_size, grad_accum=grad_accum, lr=6e-4,
                                        min_lr=6e-5, warmup_iters=10, eval_interval=0, progress=False,
                                        amp=amp, compile=compile, seed=seed)
        self.loop = TrainLoop(self.model, lm_loss, self.next_batch, self.train_config, device=device,
                              net=self.net, fused=fused)
        self.optimizer = self.loop.optimizer  # one optimizer for both routes
        gen = torch.Generator().manual_seed(seed)
        data = torch.randint(config.vocab_size, (grad_accum, batch_size, config.block_size + 1), generator=gen)
        self.batches = [(d[:, :-1].to(device), d[:, 1:].to(device)) for d in data]
        self.micro = 0

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        self.micro = (self.micro + 1) % self.grad_accum
        return self.batches[self.micro]

    def bare_step(self) -> None:
        for x, y in self.batches:
            with self.loop.autocast():
                loss = self.net(x, y)[1]
            (loss / self.grad_accum).backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)

    def run(self, route: str, steps: int) -> float:
        """Seconds for ``steps`` updates by ``route``, the device's queue drained before and after."""
        synchronize(self.device)
        start = time.perf_counter()
        if route == "lslm":
            self.loop.fit(max_iters=self.loop.step + steps)
        else:
            for _ in range(steps):
                self.bare_step()
        synchronize(self.device)
        return time.perf_counter() - start


def describe_device(device: str) -> str:
    if torch.device(device).type == "cuda":
        return torch.cuda.get_device_name(torch.device(device).index or 0)
    return device


def measure(args: argparse.Namespace) -> dict:
    """Train by each route and time it; the figures as a dict (see ``report``)."""
    tf32 = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    try:
        return _measure(args)
    finally:  # imported (by the tests), the benchmark leaves torch's settings as it found them
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = tf32


def _measure(args: argparse.Namespace) -> dict:
    device = pick_device(args.device)
    config = GPTConfig(**(TINY if args.tiny else GPT2_SMALL), dropout=0.0, bias=False)
    compile = args.compile if args.compile is not None else (not args.tiny and device != "cpu")
    if compile and torch.device(device).type == "cpu" and cpp_compiler() is None:
        raise LslmError("--compile on CPU needs a C++ compiler and none was found: drop --compile")
    if torch.device(device).type == "cuda":
        # fp32 matrix products (the parts autocast leaves in fp32) may use TF32 tensor cores.
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.cuda.reset_peak_memory_stats(device)
    bench = Bench(config, device, args.batch_size, args.grad_accum, args.amp, compile,
                  None if args.fused else False, args.compile_mode)
    group = bench.optimizer.param_groups[0]
    fused_used = bool(group.get("fused"))
    attention = flash_attention_check(device, config, args.batch_size)

    tokens_per_step = args.batch_size * args.grad_accum * config.block_size
    per_token = flops_per_token(config)
    if args.peak_tflops is not None:
        peak, source = args.peak_tflops, "--peak-tflops"
    elif torch.device(device).type == "cuda":
        peak, source = gpu_peak(describe_device(device))
    else:
        peak, source = None, f"no peak for {device}: pass --peak-tflops"

    results = []
    compile_seconds = {}
    for route in args.routes:
        compile_seconds[route] = bench.run(route, args.warmup)  # compiling happens here, untimed
    for _ in range(args.repeats):  # the routes take turns, so a slow spell hits both alike
        for route in args.routes:
            seconds = bench.run(route, args.steps)
            results.append((route, seconds))
    rows = []
    for route in args.routes:
        times = sorted(s for r, s in results if r == route)
        seconds = times[len(times) // 2]  # the median repeat
        tokens_per_sec = tokens_per_step * args.steps / seconds
        achieved = per_token * tokens_per_sec
        rows.append({
            "route": route,
            "ms_per_step": seconds / args.steps * 1000,
            "tokens_per_sec": tokens_per_sec,
            "achieved_tflops": achieved / 1e12,
            "mfu": achieved / (peak * 1e12) if peak else None,
            "warmup_seconds": compile_seconds[route],
        })
    peak_memory = (torch.cuda.max_memory_allocated(device) / 2**30
                   if torch.device(device).type == "cuda" else None)
    return {
        "device": describe_device(device),
        "torch": torch.__version__,
        "model": {**config.to_dict(), "params": count_params(config)},
        "batch_size": args.batch_size, "grad_accum": args.grad_accum, "tokens_per_step": tokens_per_step,
        "steps": args.steps, "warmup": args.warmup, "repeats": args.repeats,
        "amp_bf16": args.amp, "compile": compile, "compile_mode": args.compile_mode if compile else None, "fused_adamw": fused_used, "attention": attention,
        "flops_per_token": per_token, "peak_tflops": peak, "peak_source": source,
        "peak_memory_gib": peak_memory,
        "routes": rows,
    }


def report(result: dict) -> str:
    m = result["model"]
    lines = [
        f"Device: {result['device']}, torch {result['torch']}",
        f"Model: {m['n_layer']} layers, {m['n_head']} heads, {m['n_embd']} wide, "
        f"context {m['block_size']}, vocabulary {m['vocab_size']}: {m['params']:,} parameters",
        f"Batch: {result['batch_size']} x {result['grad_accum']} micro-batches x {m['block_size']} tokens "
        f"= {result['tokens_per_step']:,} tokens per step; {result['steps']} timed steps x {result['repeats']} "
        f"repeats (median) after {result['warmup']} warm-up steps",
        f"bf16 autocast: {result['amp_bf16']}; torch.compile: {result['compile']}"
        + (f" ({result['compile_mode']})" if result["compile_mode"] else "") + "; "
        f"fused AdamW: {result['fused_adamw']}; FlashAttention: {result['attention']}",
        f"Model FLOPs per token (6N + 12LHQT): {result['flops_per_token']:.4g}",
        "Peak: " + (f"{result['peak_tflops']:g} TFLOP/s bf16 dense ({result['peak_source']})"
                    if result["peak_tflops"] else f"unknown ({result['peak_source']}): MFU is n/a"),
        "",
        "| route | ms/step | tokens/s | model TFLOP/s | MFU |",
        "| --- | --- | --- | --- | --- |",
    ]
    for row in result["routes"]:
        mfu = f"{row['mfu']:.1%}" if row["mfu"] is not None else "n/a"
        lines.append(f"| {row['route']} | {row['ms_per_step']:.1f} | {row['tokens_per_sec']:,.0f} | "
                     f"{row['achieved_tflops']:.3g} | {mfu} |")
    if result["peak_memory_gib"] is not None:
        lines.append(f"\nPeak GPU memory allocated: {result['peak_memory_gib']:.1f} GiB")
    return "\n".join(lines)


def positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not a whole number of at least 1")
    return value


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps (default auto)")
    parser.add_argument("--tiny", action="store_true",
                        help="a tiny model (2 layers, 32 wide, context 32) that runs in seconds on a CPU")
    parser.add_argument("--batch-size", type=positive, default=None,
                        help="sequences per micro-batch (default 32; 4 with --tiny)")
    parser.add_argument("--grad-accum", type=positive, default=1, help="micro-batches per step (default 1)")
    parser.add_argument("--steps", type=positive, default=None, help="timed steps per repeat (default 20; 3 with --tiny)")
    parser.add_argument("--warmup", type=positive, default=None,
                        help="untimed steps first, per route: compiling happens there (default 5; 1 with --tiny)")
    parser.add_argument("--repeats", type=positive, default=3, help="timed repeats per route, median kept")
    parser.add_argument("--routes", default="lslm,bare", help="comma-separated: lslm, bare (default both)")
    parser.add_argument("--amp", action=argparse.BooleanOptionalAction, default=True, help="bf16 autocast")
    parser.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                        help="torch.compile (default: on, except on CPU)")
    parser.add_argument("--compile-mode", choices=["default", "reduce-overhead", "max-autotune",
                                                   "max-autotune-no-cudagraphs"], default=None,
                        help="torch.compile's mode (default: torch's own default)")
    parser.add_argument("--fused", action=argparse.BooleanOptionalAction, default=True,
                        help="fused AdamW where torch has it (--no-fused: the per-tensor loop)")
    parser.add_argument("--peak-tflops", type=float, default=None,
                        help="the device's peak dense bf16 TFLOP/s, for a GPU not in the table (or a CPU)")
    parser.add_argument("--json", type=str, default=None, help="also write the figures as JSON here ('-': stdout only)")
    args = parser.parse_args(argv)
    args.routes = args.routes.split(",")
    if unknown := [r for r in args.routes if r not in ("lslm", "bare")]:
        parser.error(f"unknown route(s) {unknown}: pick from lslm, bare")
    if args.peak_tflops is not None and not args.peak_tflops > 0:
        parser.error(f"--peak-tflops must be above 0, got {args.peak_tflops}")
    args.batch_size = args.batch_size or (4 if args.tiny else 32)
    args.steps = args.steps or (3 if args.tiny else 20)
    args.warmup = args.warmup or (1 if args.tiny else 5)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        result = measure(args)
    except LslmError as e:
        print(f"bench_mfu: error: {e}", file=sys.stderr)
        return 2
    result["command"] = "python " + " ".join(shlex.quote(a) for a in ["benchmarks/bench_mfu.py", *(argv or sys.argv[1:])])
    if args.json == "-":
        print(json.dumps(result, indent=2))
        return 0
    print(report(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
