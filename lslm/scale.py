"""Scale and compute: how many parameters, how many FLOPs, how many GPU-days, how much memory.

Everything here is arithmetic on a model's shape, so it works for GPT-3 as easily as for
the baby GPT of the notebooks. Parameters are counted with ``lslm.model.param_breakdown``
(one source of truth): a GPT-3 size is just a ``GPTConfig`` with a 50,257-token
vocabulary and a context of 2,048.

The accounting, with N parameters, D training tokens, n_layer layers, context n_ctx and
width d_model:

* **Training FLOPs** ``C = 6·N·D + 6·n_layer·n_ctx·d_model·D``. Every parameter takes part
  in one multiply-add (2 FLOPs) per token in the forward pass and two in the backward
  pass (gradients for the inputs and for the weights): 6 per parameter per token. The
  second term is attention's score computation, which has no parameters: Kaplan et al.
  2020 (table 1) count ``2·n_layer·n_ctx·d_attn`` forward FLOPs per token, and training
  costs 3 forward passes' worth. (Hoffmann et al. 2022, appendix F, also count the
  weights-times-values product and the softmax, about twice Kaplan's term; at GPT-3's
  scale either is under 3% of the total.)
* **N counts all parameters**, as the GPT-3 paper does (its 174.6B × 300B × 6 = 3.14e23).
  With tied weights that is nearly exact: the token embedding matrix is counted once, and
  it costs one real matrix product per token, as the language-model head. Only the
  position embedding (a table look-up, 0.01% of GPT-3) is counted without doing work.
  Kaplan et al. use the *non-embedding* count instead, which is what scaling laws are
  fitted against (see ``non_embedding_params`` and ``lslm.scaling``).
* **Time** ``= C / (devices · peak FLOP/s · MFU)``. Model FLOPs utilisation (MFU,
  Chowdhery et al. 2022, PaLM) is the share of the hardware's peak that goes into the
  model's own FLOPs; large runs reach about 30-60%.
* **Memory** of mixed-precision training with AdamW, per parameter (Rajbhandari et al.
  2020, ZeRO, section 3.1): 2 bytes for the 16-bit weights, 2 for the 16-bit gradients,
  and 12 for the optimizer (fp32 master weights, Adam's m and v): 16 bytes. Pure fp32
  training also needs 16 (4 weights, 4 gradients, 8 for m and v).
* **Activations** kept for the backward pass, per layer, with 16-bit activations
  (Korthikanti et al. 2022, *Reducing Activation Recomputation in Large Transformer
  Models*, section 4.1): ``s·b·h·(34 + 5·a·s/h)`` bytes for sequence length s, micro-batch
  b, width h and a heads; ``34·s·b·h`` when the attention scores are recomputed (their
  "selective" recomputation, which FlashAttention also gives); ``2·s·b·h`` (only each
  layer's input) with full recomputation. We add the fp32 logits, ``4·s·b·V`` bytes, which
  the loss keeps and which matter for small models with big vocabularies.
"""

from __future__ import annotations

import math
import numbers
import time
from dataclasses import dataclass, field

from lslm.errors import LslmError
from lslm.model import GPTConfig, count_params, param_breakdown

GPT2_VOCAB = 50257  # GPT-2's BPE vocabulary, which GPT-3 kept
SECONDS_PER_DAY = 86_400.0
GB = 1e9  # memory is quoted in decimal gigabytes, as accelerator data sheets do


# ----- accelerators -----------------------------------------------------------------------
@dataclass(frozen=True)
class Accelerator:
    """A chip's peak dense matrix throughput and its memory."""

    name: str
    peak_flops: float  # FLOP/s, dense (no sparsity), at ``precision``
    memory_gb: float
    precision: str
    source: str


ACCELERATORS: dict[str, Accelerator] = {
    a.name: a
    for a in (
        Accelerator("V100", 125e12, 32, "fp16 tensor cores",
                    "NVIDIA Tesla V100 SXM2 data sheet: 125 TFLOP/s deep learning; 16 or 32 GB. "
                    "GPT-3 was trained on V100s (Brown et al. 2020, section 2.3)."),
        Accelerator("A100", 312e12, 80, "bf16 tensor cores, dense",
                    "NVIDIA A100 SXM data sheet: 312 TFLOP/s bf16 (624 only with 2:4 sparsity); "
                    "40 or 80 GB."),
        Accelerator("H100", 989e12, 80, "bf16 tensor cores, dense",
                    "NVIDIA H100 SXM data sheet: 989 TFLOP/s bf16 dense (1,979 with sparsity); 80 GB."),
        Accelerator("laptop CPU", 0.5e12, 16, "fp32",
                    "an assumption: 8 cores x 3 GHz x 32 fp32 FLOPs per cycle (two 8-wide FMA "
                    "units) is 0.77 TFLOP/s peak; laptops range from about 0.2 to 1 TFLOP/s. "
                    "16 GB of RAM."),
    )
}


def accelerator(name: str | Accelerator) -> Accelerator:
    """Look up an accelerator preset by name (an ``Accelerator`` passes through)."""
    if isinstance(name, Accelerator):
        return name
    if name not in ACCELERATORS:
        raise LslmError(f"unknown accelerator {name!r}: pick one of {', '.join(ACCELERATORS)}")
    return ACCELERATORS[name]


def measure_matmul_flops(n: int = 512, seconds: float = 0.3) -> float:
    """This computer's sustained fp32 matrix-multiply speed in FLOP/s, timed with torch.

    A square n×n product costs 2·n³ FLOPs. Use it as a realistic "peak" for a CPU: it is
    what the best-tuned kernel gets here, with torch's current thread count.
    """
    import torch

    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b  # warm up
    done, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds or done < 3:
        a @ b
        done += 1
    return 2 * n**3 * done / elapsed


# ----- the GPT-3 family ----------------------------------------------------------------------
@dataclass(frozen=True)
class GPT3Size:
    """One row of Brown et al. 2020, table 2.1 (batch size in tokens, learning rate)."""

    name: str
    n_params: float  # as published
    n_layers: int
    d_model: int
    n_heads: int
    d_head: int
    batch_tokens: float
    lr: float

    def config(self) -> GPTConfig:
        """The row as a ``GPTConfig`` (GPT-2's vocabulary, context 2,048).

        Two entries of the printed table do not multiply out: the XL model (d_model 2,048
        with 24 heads of 128) and the 13B model (d_model 5,140, which 40 heads cannot share;
        40 x 128 = 5,120). We keep d_model where d_head divides it, else use n_heads x d_head
        (5,120 for 13B), with d_model / d_head heads (16 for XL): the number of heads does
        not change the parameter count.
        """
        d_model = self.d_model if self.d_model % self.d_head == 0 else self.n_heads * self.d_head
        return GPTConfig(vocab_size=GPT2_VOCAB, block_size=2048, n_layer=self.n_layers,
                         n_head=d_model // self.d_head, n_embd=d_model)


GPT3_TABLE: tuple[GPT3Size, ...] = (
    GPT3Size("GPT-3 Small", 125e6, 12, 768, 12, 64, 0.5e6, 6.0e-4),
    GPT3Size("GPT-3 Medium", 350e6, 24, 1024, 16, 64, 0.5e6, 3.0e-4),
    GPT3Size("GPT-3 Large", 760e6, 24, 1536, 16, 96, 0.5e6, 2.5e-4),
    GPT3Size("GPT-3 XL", 1.3e9, 24, 2048, 24, 128, 1e6, 2.0e-4),
    GPT3Size("GPT-3 2.7B", 2.7e9, 32, 2560, 32, 80, 1e6, 1.6e-4),
    GPT3Size("GPT-3 6.7B", 6.7e9, 32, 4096, 32, 128, 2e6, 1.2e-4),
    GPT3Size("GPT-3 13B", 13e9, 40, 5140, 40, 128, 2e6, 1.0e-4),
    GPT3Size("GPT-3 175B", 175e9, 96, 12288, 96, 128, 3.2e6, 0.6e-4),
)
GPT3_TOKENS = 300e9  # every GPT-3 size saw 300B training tokens (Brown et al. 2020, 2.2)
GPT3_COMPUTE = 3.14e23  # FLOPs for 175B, Brown et al. 2020, table D.1 (3,640 PF-days)


# ----- counting ---------------------------------------------------------------------------------
def non_embedding_params(config: GPTConfig) -> int:
    """Parameters outside the embedding tables: the blocks and the final LayerNorm.

    Kaplan et al. 2020 fit their scaling laws against this count, since the embedding
    tables barely add compute or skill.
    """
    parts = param_breakdown(config)
    return parts["blocks"] + parts["final_layernorm"]


def flops_per_token(config: GPTConfig, attention: bool = True, training: bool = True) -> float:
    """FLOPs to process one token: ``2·N`` (+ ``2·n_layer·n_ctx·d_model``) forward, ×3 to train."""
    forward = 2.0 * count_params(config)
    if attention:
        forward += 2.0 * config.n_layer * config.block_size * config.n_embd
    return 3 * forward if training else forward


def training_flops(model: GPTConfig | float, tokens: float, attention: bool = True) -> float:
    """Total training compute in FLOPs for ``tokens`` tokens.

    ``model`` is a ``GPTConfig`` (6·N·D plus the attention term, unless ``attention=False``)
    or a bare parameter count (6·N·D only: the attention term needs the shape).
    """
    _positive(tokens, "tokens")
    if isinstance(model, GPTConfig):
        return flops_per_token(model, attention=attention) * tokens
    _positive(model, "the number of parameters")
    return 6.0 * float(model) * tokens


def _positive(value: float, what: str) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not value > 0:
        raise LslmError(f"{what} must be a positive number, got {value!r}")


def shape_for_params(n_params: float, vocab_size: int = GPT2_VOCAB, block_size: int = 2048) -> GPTConfig:
    """A GPT-3-like shape with about ``n_params`` parameters, for when only a count is given.

    The GPT-3 family's width-to-depth ratio d_model / n_layer grows from 64 (below 1B
    parameters) to 128 (from 10B); we interpolate it in log N, solve
    ``12·L·d² + (V + n_ctx)·d = N`` for the width d at that depth, and round d to a multiple
    of 64 (16 for tiny models) with 64-wide heads.
    """
    _positive(n_params, "the number of parameters")
    t = min(1.0, max(0.0, (math.log10(n_params) - 9.0)))  # 0 below 1e9, 1 from 1e10
    aspect = 64.0 * 2.0**t
    emb = vocab_size + block_size
    # Solve 12 A² L³ + emb A L = N for L by bisection (monotone in L).
    lo, hi = 0.0, 1e4
    for _ in range(100):
        mid = (lo + hi) / 2
        if 12 * aspect**2 * mid**3 + emb * aspect * mid < n_params:
            lo = mid
        else:
            hi = mid
    n_layer = max(1, round(lo))
    # Width for that depth: the positive root of 12 L d² + emb d - N = 0.
    d = (-emb + math.sqrt(emb**2 + 48 * n_layer * n_params)) / (24 * n_layer)
    step = 64 if d >= 256 else 16
    n_embd = max(16, step * round(d / step))
    n_head = n_embd // 64 if n_embd % 64 == 0 else 1
    return GPTConfig(vocab_size=vocab_size, block_size=block_size, n_layer=n_layer,
                     n_head=n_head, n_embd=n_embd)


# ----- memory -------------------------------------------------------------------------------------
BYTES_PER_PARAM = {
    # precision: (weights, gradients, optimizer state) in bytes per parameter
    "mixed": (2, 2, 12),  # 16-bit weights and gradients; fp32 master weights, m and v
    "fp32": (4, 4, 8),  # fp32 weights and gradients; m and v
}
RECOMPUTE = ("none", "selective", "full")


def state_bytes(n_params: float, precision: str = "mixed") -> dict[str, float]:
    """Bytes of weights, gradients and AdamW state for training (see the module docstring)."""
    if precision not in BYTES_PER_PARAM:
        raise LslmError(f"precision must be one of {', '.join(BYTES_PER_PARAM)}, got {precision!r}")
    w, g, o = BYTES_PER_PARAM[precision]
    return {"weights": w * n_params, "gradients": g * n_params, "optimizer": o * n_params}


def activation_bytes(
    config: GPTConfig, micro_batch: int = 1, seq_len: int | None = None, recompute: str = "none",
    precision: str = "mixed",
) -> float:
    """Bytes of activations one device keeps for the backward pass of one micro-batch.

    Per layer ``s·b·h·(34 + 5·a·s/h)`` (no recomputation), ``34·s·b·h`` (attention
    recomputed) or ``2·s·b·h`` (full recomputation), from Korthikanti et al. 2022 for
    16-bit activations (doubled for fp32), plus ``4·s·b·V`` for the fp32 logits.
    """
    if recompute not in RECOMPUTE:
        raise LslmError(f"recompute must be one of {', '.join(RECOMPUTE)}, got {recompute!r}")
    if isinstance(micro_batch, bool) or not isinstance(micro_batch, numbers.Integral) or micro_batch < 1:
        raise LslmError(f"micro_batch must be a positive whole number, got {micro_batch!r}")
    s = seq_len or config.block_size
    b, h, a = micro_batch, config.n_embd, config.n_head
    per_layer = {"none": 34 + 5 * a * s / h, "selective": 34, "full": 2}[recompute] * s * b * h
    scale = 2 if precision == "fp32" else 1
    return config.n_layer * per_layer * scale + 4.0 * s * b * config.vocab_size


# ----- the estimator ----------------------------------------------------------------------------------
@dataclass
class Estimate:
    """What a training run costs. Memory is in bytes; ``per_device`` assumes the model
    states (weights, gradients, optimizer) are sharded evenly over the devices (ZeRO-3 /
    FSDP) and each device holds the activations of its own micro-batch."""

    n_params: float
    tokens: float
    flops: float
    accelerator: Accelerator
    n_devices: int
    mfu: float
    seconds: float
    memory: dict[str, float]
    per_device: float
    config: GPTConfig | None = None

    @property
    def days(self) -> float:
        return self.seconds / SECONDS_PER_DAY

    @property
    def gpu_hours(self) -> float:
        """Device-hours: devices × wall-clock hours (what a cloud bill counts)."""
        return self.n_devices * self.seconds / 3600.0

    @property
    def fits(self) -> bool:
        """Whether each device's share fits in its memory."""
        return self.per_device <= self.accelerator.memory_gb * GB

    @property
    def min_devices_for_states(self) -> int:
        """The fewest devices whose memory can hold the weights, gradients and optimizer."""
        states = self.memory["weights"] + self.memory["gradients"] + self.memory["optimizer"]
        return max(1, math.ceil(states / (self.accelerator.memory_gb * GB)))

    def summary(self) -> str:
        m = {k: v / GB for k, v in self.memory.items()}
        return "\n".join([
            f"{self.n_params:.3g} parameters × {self.tokens:.3g} tokens → {self.flops:.3g} FLOPs",
            f"on {self.n_devices:,} × {self.accelerator.name} at {self.mfu:.0%} MFU: "
            f"{human_time(self.seconds)} ({self.gpu_hours:,.0f} device-hours)",
            f"memory: weights {m['weights']:,.1f} GB, gradients {m['gradients']:,.1f} GB, "
            f"optimizer {m['optimizer']:,.1f} GB, activations {m['activations']:,.2f} GB per device",
            f"per device (states sharded over {self.n_devices:,}): {self.per_device / GB:,.2f} GB "
            f"of {self.accelerator.memory_gb:g} GB → {'fits' if self.fits else 'does NOT fit'}",
        ])


def human_time(seconds: float) -> str:
    """12.3 s, 4.5 min, 3.2 h, 12.0 days or 3.4 years."""
    for size, unit in ((365.25 * SECONDS_PER_DAY, "years"), (SECONDS_PER_DAY, "days"),
                       (3600.0, "h"), (60.0, "min")):
        if seconds >= size:
            return f"{seconds / size:,.1f} {unit}"
    return f"{seconds:.1f} s"


def estimate(
    model: GPTConfig | float,
    tokens: float,
    accelerator_name: str | Accelerator = "A100",
    n_devices: int = 1,
    mfu: float = 0.4,
    micro_batch: int = 1,
    recompute: str = "none",
    precision: str = "mixed",
    attention: bool = True,
) -> Estimate:
    """Time and memory to train ``model`` (a ``GPTConfig`` or a parameter count) on ``tokens``.

    With a bare count, the shape (needed for attention FLOPs and activations) is guessed
    with ``shape_for_params`` and the FLOPs are plain 6·N·D.
    """
    acc = accelerator(accelerator_name)
    if isinstance(n_devices, bool) or not isinstance(n_devices, numbers.Integral) or n_devices < 1:
        raise LslmError(f"the number of devices must be a positive whole number, got {n_devices!r}")
    if not 0 < mfu <= 1:
        raise LslmError(f"utilisation (MFU) must be in (0, 1], e.g. 0.4 for 40%, got {mfu!r}")
    if isinstance(model, GPTConfig):
        config, n_params = model, float(count_params(model))
        flops = training_flops(config, tokens, attention=attention)
    else:
        _positive(model, "the number of parameters")
        config, n_params = shape_for_params(model), float(model)
        flops = training_flops(n_params, tokens)
    seconds = flops / (n_devices * acc.peak_flops * mfu)
    memory = state_bytes(n_params, precision)
    memory["activations"] = activation_bytes(config, micro_batch, recompute=recompute,
                                             precision=precision)
    states = memory["weights"] + memory["gradients"] + memory["optimizer"]
    per_device = states / n_devices + memory["activations"]
    return Estimate(n_params, float(tokens), flops, acc, n_devices, mfu, seconds, memory,
                    per_device, config)


# ----- presets ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Preset:
    """A training run to start the estimator from; ``note`` says where the figures come from."""

    name: str
    config: GPTConfig
    tokens: float
    accelerator: str
    n_devices: int
    mfu: float
    micro_batch: int
    recompute: str = "none"
    note: str = field(default="", compare=False)

    def estimate(self, **overrides) -> Estimate:
        kw = dict(accelerator_name=self.accelerator, n_devices=self.n_devices, mfu=self.mfu,
                  micro_batch=self.micro_batch, recompute=self.recompute)
        kw.update(overrides)
        return estimate(self.config, self.tokens, **kw)


BABY_GPT = GPTConfig(vocab_size=103, block_size=64, n_layer=4, n_head=4, n_embd=128, bias=False)

PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset("GPT-3 175B", GPT3_TABLE[-1].config(), GPT3_TOKENS, "V100", 1024, 0.3, 1, "full",
               note="300B tokens (Brown et al. 2020). The paper names V100s on a Microsoft "
                    "cluster but not how many or for how long: 1,024 GPUs at 30% MFU, one "
                    "2,048-token sequence per GPU with full recomputation, is our assumption."),
        Preset("GPT-2 124M", GPTConfig.gpt2_small(), 10e9, "A100", 8, 0.6, 64, "selective",
               note="GPT-2 small retrained on 10B tokens of FineWeb in Karpathy's llm.c "
                    "reproduction (2024): one 8×A100 80GB node, about 90 minutes, 'up to ~60% "
                    "MFU', micro-batch 64 with FlashAttention (selective). OpenAI did not "
                    "publish GPT-2's own token count."),
        Preset("classroom CPU", BABY_GPT, 2000 * 12 * 64, "laptop CPU", 1, 0.2, 12,
               note="the notebooks' baby GPT (python-docs, char vocabulary of 103): 2,000 steps "
                    "of 12 × 64 characters. 20% of an assumed 0.5 TFLOP/s."),
    )
}
