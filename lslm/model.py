"""A GPT language model that reads top to bottom: config, blocks, model, generate.

The shape follows GPT-2: token + position embeddings, a stack of pre-LayerNorm
Transformer blocks (attention then MLP, each added back to a residual stream), a final
LayerNorm and a language-model head whose weights are tied to the token embedding.

Today's open models (Llama, Qwen, Mistral) change a handful of parts, each an option here
and all off by default, so the GPT-2 path stays exactly as it was:

* ``position="rope"``: rotary position embeddings; attention turns each query and key by
  its position instead of adding a learned position vector (``rope_theta`` is the base).
* ``norm="rmsnorm"``: RMSNorm, which rescales without centring and has no bias.
* ``mlp="swiglu"``: a gated feed-forward layer, ``mlp_hidden`` wide.
* ``n_kv_head``: grouped-query attention, fewer key/value heads than query heads.
* ``bias=False`` and ``tie_embeddings=False``: no biases, and a head of its own.

The parts below the config (``LayerNorm``, ``MLP``, the ``Residual`` sublayer, weight
initialisation and tying) are shared with the encoder-decoder model in ``lslm.seq2seq``.
"""

from __future__ import annotations

import math
from collections.abc import Collection
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from lslm.attention import CausalSelfAttention, KVCache
from lslm.errors import LslmError, real_number, shown, whole_number
from lslm.utils import DictConfig, evaluating, seeded


# No size of a model (vocabulary, context, layers, heads, width) may pass 2**31 - 1: no
# tensor that large fits in memory, and the limit keeps every message and product printable.
MAX_SIZE = 2**31 - 1


@dataclass
class GPTConfig(DictConfig):
    """The hyperparameters that decide a GPT's shape (the source article's "model building")."""

    vocab_size: int = 65
    block_size: int = 64  # the longest context the model can see
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128  # hidden size: the width of the residual stream
    dropout: float = 0.0
    bias: bool = True  # biases in Linear and LayerNorm layers, as in GPT-2
    gelu_approx: str = "none"  # "tanh" is GPT-2's own GELU (needed to load its weights)
    position: str = "learned"  # GPT-2's learned position embedding, or "rope": rotated q and k
    rope_theta: float = 10000.0  # RoPE's base: pair i of a head turns at theta**(-2i/head_size)
    norm: str = "layernorm"  # or "rmsnorm" (Llama): rescale by the root mean square only
    norm_eps: float = 1e-5  # added to the variance (or mean square) before the square root
    mlp: str = "gelu"  # GPT-2's GELU MLP, or "swiglu" (Llama): silu(x W_gate) * (x W_up), then down
    mlp_hidden: int | None = None  # the MLP's inner width; None: 4 * n_embd, or about 8/3 for swiglu
    n_kv_head: int | None = None  # key/value heads; None: one per query head; 1: multi-query
    tie_embeddings: bool = True  # the LM head reuses the token embedding (GPT-2) or has its own

    def __post_init__(self) -> None:
        # Types, not only values: bias="no" is truthy and 2.0 layers is not a size. A bool is
        # an int in Python, so it is refused by name; numpy integers and floats are accepted
        # and stored as plain int and float, so the config saves as JSON.
        for name in ("vocab_size", "block_size", "n_layer", "n_head", "n_embd"):
            setattr(self, name, whole_number(name, getattr(self, name), minimum=1, maximum=MAX_SIZE))
        if self.n_embd % self.n_head != 0:
            near = max(self.n_head, round(self.n_embd / self.n_head) * self.n_head)
            raise LslmError(
                f"n_embd={self.n_embd} is not divisible by n_head={self.n_head}: each head gets "
                f"n_embd/n_head dimensions, so pick n_embd a multiple of n_head (e.g. {near})"
            )
        if not isinstance(self.gelu_approx, str) or self.gelu_approx not in ("none", "tanh"):
            raise LslmError(f'gelu_approx must be "none" or "tanh", got {shown(self.gelu_approx)}')
        for name, options in (("position", ("learned", "rope")), ("norm", ("layernorm", "rmsnorm")),
                              ("mlp", ("gelu", "swiglu"))):
            value = getattr(self, name)
            if not isinstance(value, str) or value not in options:
                raise LslmError(f"{name} must be " + " or ".join(f'"{o}"' for o in options) + f", got {shown(value)}")
        if self.n_kv_head is not None:
            self.n_kv_head = whole_number("n_kv_head", self.n_kv_head, minimum=1, maximum=MAX_SIZE)
            if self.n_head % self.n_kv_head:
                raise LslmError(f"n_head={self.n_head} is not divisible by n_kv_head={self.n_kv_head}: each "
                                "key/value head serves a whole group of query heads (e.g. n_kv_head=1 or "
                                f"{self.n_head})")
        if self.mlp_hidden is not None:
            self.mlp_hidden = whole_number("mlp_hidden", self.mlp_hidden, minimum=1, maximum=MAX_SIZE)
        self.rope_theta = real_number("rope_theta", self.rope_theta, low=1.0)
        self.norm_eps = real_number("norm_eps", self.norm_eps, 1e-12, 1.0)
        if not isinstance(self.tie_embeddings, bool):
            raise LslmError(f"tie_embeddings must be True or False, got {shown(self.tie_embeddings)}")
        if self.position == "rope" and (self.n_embd // self.n_head) % 2:
            raise LslmError(f"RoPE turns pairs of dimensions: n_embd / n_head = {self.n_embd // self.n_head} "
                            "must be even")
        self.dropout = real_number("dropout", self.dropout, 0.0, 1.0, high_open=True)
        if not isinstance(self.bias, bool):
            raise LslmError(f"bias must be True or False, got {shown(self.bias)}")

    @property
    def kv_heads(self) -> int:
        """Key/value heads: ``n_kv_head``, or one per query head."""
        return self.n_kv_head or self.n_head

    @property
    def hidden(self) -> int:
        """The MLP's inner width. SwiGLU has three matrices to GELU's two, so its default
        is 8/3 * n_embd (rounded up to a multiple of 8): about the same parameters."""
        if self.mlp_hidden is not None:
            return self.mlp_hidden
        return 4 * self.n_embd if self.mlp == "gelu" else -(-8 * self.n_embd // 24) * 8

    @classmethod
    def gpt2_small(cls) -> "GPTConfig":
        """GPT-2 small (Radford et al. 2019): 12 layers, 12 heads, 768 wide, 124M parameters."""
        return cls(vocab_size=50257, block_size=1024, n_layer=12, n_head=12, n_embd=768)


def param_breakdown(config: GPTConfig) -> dict[str, int]:
    """Exact parameter counts per part of the model, worked out on paper.

    A tied LM head shares the token embedding matrix, so it adds nothing.
    """
    c, b, h = config.n_embd, int(config.bias), config.hidden
    norm = c + (b * c if config.norm == "layernorm" else 0)  # RMSNorm has a scale only
    qkv = c + 2 * config.kv_heads * (c // config.n_head)  # fewer key/value heads: a narrower c_attn
    attn = (c * qkv + b * qkv) + (c * c + b * c)
    n_in = 2 if config.mlp == "swiglu" else 1  # gate and up, or one widening matrix
    mlp = n_in * (c * h + b * h) + (h * c + b * c)
    parts = {
        "token_embedding": config.vocab_size * c,
        "position_embedding": config.block_size * c if config.position == "learned" else 0,
        "blocks": config.n_layer * (2 * norm + attn + mlp),
        "final_layernorm": norm,
    }
    if config.tie_embeddings:
        parts["lm_head (tied)"] = 0
    else:
        parts["lm_head"] = config.vocab_size * c  # a matrix of its own
    return parts


def kv_cache_bytes_per_token(config: GPTConfig, bytes_per_number: int = 2) -> int:
    """What a ``KVCache`` holds for each token: a key and a value (``head_size`` numbers each)
    for every key/value head of every layer. Grouped-query attention divides it by
    ``n_head / n_kv_head``. ``bytes_per_number``: 2 for bfloat16 or float16, 4 for float32."""
    return 2 * config.n_layer * config.kv_heads * (config.n_embd // config.n_head) * bytes_per_number


def count_params(config: GPTConfig) -> int:
    """Total parameters of ``GPT(config)``; GPT-2 small gives 124,439,808."""
    return sum(param_breakdown(config).values())


class LayerNorm(nn.Module):
    """LayerNorm with an optional bias (torch's own cannot drop only the bias)."""

    def __init__(self, n: int, bias: bool, eps: float = 1e-5):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(n))
        self.bias = nn.Parameter(torch.zeros(n)) if bias else None
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x, self.weight.shape, self.weight, self.bias, self.eps)


class RMSNorm(nn.Module):
    """RMSNorm (Zhang & Sennrich 2019), Llama's norm: ``x / sqrt(mean(x²) + eps) * weight``.

    LayerNorm also subtracts the mean and adds a bias; RMSNorm keeps only the rescaling,
    one reduction fewer, and trains as well in practice.
    """

    def __init__(self, n: int, eps: float = 1e-5):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(n))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.rms_norm(x, self.weight.shape, self.weight, self.eps)


def make_norm(config: GPTConfig) -> nn.Module:
    """The config's norm, ``n_embd`` wide."""
    if config.norm == "rmsnorm":
        return RMSNorm(config.n_embd, config.norm_eps)
    return LayerNorm(config.n_embd, config.bias, config.norm_eps)


class MLP(nn.Module):
    """Per-position feed-forward network: widen (GPT-2: 4x), GELU, project back."""

    def __init__(self, n_embd: int, n_hidden: int, bias: bool = True, gelu_approx: str = "none"):
        super().__init__()
        self.c_fc = nn.Linear(n_embd, n_hidden, bias=bias)
        self.c_proj = nn.Linear(n_hidden, n_embd, bias=bias)
        self.gelu_approx = gelu_approx

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c_proj(F.gelu(self.c_fc(x), approximate=self.gelu_approx))


class SwiGLU(nn.Module):
    """Llama's feed-forward layer (Shazeer 2020, "GLU variants improve Transformer"):
    ``c_proj(silu(w_gate(x)) * w_up(x))``. One widened copy of ``x``, through SiLU, decides
    how much of the other passes, feature by feature."""

    def __init__(self, n_embd: int, n_hidden: int, bias: bool = False):
        super().__init__()
        self.w_gate = nn.Linear(n_embd, n_hidden, bias=bias)
        self.w_up = nn.Linear(n_embd, n_hidden, bias=bias)
        self.c_proj = nn.Linear(n_hidden, n_embd, bias=bias)  # named so init_weights scales it

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c_proj(F.silu(self.w_gate(x)) * self.w_up(x))


def make_mlp(config: GPTConfig) -> nn.Module:
    """The config's feed-forward layer."""
    if config.mlp == "swiglu":
        return SwiGLU(config.n_embd, config.hidden, config.bias)
    return MLP(config.n_embd, config.hidden, config.bias, config.gelu_approx)


class Residual(nn.Module):
    """One pre-norm residual sublayer: ``x + dropout(sublayer(norm(x)))``.

    Every block is a few of these in a row. Pre-LayerNorm normalises the input of each
    sublayer and keeps the residual stream itself raw. The norm and the sublayer are passed
    in, not held, so their weights keep the block's own names (``ln_1``, ``attn``, ...): the
    names of GPT-2's checkpoints. Extra arguments go to the sublayer. A sublayer that returns
    ``(output, weights)``, as attention does, gives ``(x + dropout(output), weights)``.
    """

    def __init__(self, dropout: float):
        super().__init__()
        self.dropout = nn.Dropout(dropout)

    def forward(
        self, x: torch.Tensor, norm: nn.Module, sublayer: nn.Module, *args, **kwargs
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor | None]:
        out = sublayer(norm(x), *args, **kwargs)
        if isinstance(out, tuple):
            y, weights = out
            return x + self.dropout(y), weights
        return x + self.dropout(out)


class Block(nn.Module):
    """One Transformer block: tokens talk (attention), then each thinks alone (MLP)."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.ln_1 = make_norm(config)
        self.attn = CausalSelfAttention(config.n_embd, config.n_head, config.dropout, config.bias,
                                        rope=config.position == "rope", rope_theta=config.rope_theta,
                                        n_kv_head=config.kv_heads)
        self.ln_2 = make_norm(config)
        self.mlp = make_mlp(config)
        self.residual = Residual(config.dropout)

    def forward(
        self, x: torch.Tensor, return_weights: bool = False, cache: tuple[KVCache, int] | None = None,
        key_mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        x, weights = self.residual(x, self.ln_1, self.attn, key_mask=key_mask, return_weights=return_weights,
                                   cache=cache)
        x = self.residual(x, self.ln_2, self.mlp)
        return x, weights


def init_weights(model: nn.Module, n_blocks: int) -> None:
    """GPT-2's initialisation, for any model built from these parts.

    Linear and embedding weights are drawn from N(0, 0.02²) and biases set to 0. Then every
    ``c_proj`` weight, the layers that write into a residual stream, gets the smaller std
    0.02 / sqrt(2 * n_blocks): each block adds to the stream twice, and this keeps its
    variance from growing with depth. Call it once the weights are tied, as both models here
    do: the shared matrix is then drawn as the head, and a seed always gives the same weights.
    """
    model.apply(_normal_init)
    for name, p in model.named_parameters():
        if name.endswith("c_proj.weight"):
            nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * n_blocks))


def _normal_init(module: nn.Module) -> None:
    if isinstance(module, (nn.Linear, nn.Embedding)):
        nn.init.normal_(module.weight, mean=0.0, std=0.02)
    if isinstance(module, nn.Linear) and module.bias is not None:
        nn.init.zeros_(module.bias)


def tie_weights(head: nn.Linear, embedding: nn.Embedding) -> None:
    """Weight tying: the head that writes a token out uses the vectors that read it in."""
    head.weight = embedding.weight


class NumParams:
    """Adds ``num_params()`` to a model (an ``nn.Module``)."""

    def num_params(self) -> int:
        """Parameters counted once each (a tied head is not counted twice)."""
        return sum(p.numel() for p in self.parameters())  # type: ignore[attr-defined]


class GPT(NumParams, nn.Module):
    """A decoder-only Transformer language model.

    Its initial weights come from torch's global generator; with a ``seed`` they come from
    that seed instead, and the caller's generator is left as it was. (GPT-2 weights from a
    Hugging Face folder load with ``lslm.hf.from_pretrained``.)
    """

    def __init__(self, config: GPTConfig, seed: int | None = None):
        super().__init__()
        self.config = config
        with seeded(seed):
            self.wte = nn.Embedding(config.vocab_size, config.n_embd)  # token embedding
            if config.position == "learned":  # with RoPE, attention itself sees positions
                self.wpe = nn.Embedding(config.block_size, config.n_embd)
            self.drop = nn.Dropout(config.dropout)
            self.blocks = nn.ModuleList([Block(config) for _ in range(config.n_layer)])
            self.ln_f = make_norm(config)
            self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
            if config.tie_embeddings:
                tie_weights(self.lm_head, self.wte)
            init_weights(self, config.n_layer)

    def features(
        self, idx: torch.Tensor, return_attention: bool = False, cache: KVCache | None = None,
        key_mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, list | None]:
        """The final hidden states (batch, time, n_embd), after the last LayerNorm.

        The LM head turns them into next-token logits; a task head (a classifier, an
        answer-span pointer) can read them instead. With ``return_attention`` the second
        value is one (batch, heads, time, time) tensor per layer, else None. A ``cache``
        holds the keys and values of earlier tokens, so ``idx`` may be only the new ones.
        ``key_mask`` (batch, cached + new positions) is False on padding no token may read:
        prompts of different lengths, padded on the left, then run as one batch. A RoPE
        model sees only distances, so each row reads exactly as it would alone.
        """
        # Cheap checks only (types and shapes, no pass over the data): this runs every step.
        if not isinstance(idx, torch.Tensor) or idx.dim() != 2 or idx.dtype not in (torch.int64, torch.int32):
            raise LslmError(
                f"the model takes token ids as a (batch, time) tensor of int64 (or int32), got "
                f"{_describe(idx)}: use torch.tensor([ids]) for one sequence"
            )
        t = idx.size(1)
        start = len(cache) if cache is not None else 0
        if start + t > self.config.block_size:
            raise LslmError(
                f"the input has {start + t} tokens but the model's block_size is "
                f"{self.config.block_size}: crop it to the last block_size tokens"
            )
        try:
            x = self.wte(idx)
        except IndexError:  # what the embedding raises on CPU for an id outside the vocabulary
            raise self._id_error(idx) from None
        return self.read(x, start, return_attention, cache, key_mask)

    def read(
        self, x: torch.Tensor, start: int = 0, return_attention: bool = False, cache: KVCache | None = None,
        key_mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, list | None]:
        """The stack on input vectors ``x`` (batch, time, n_embd) at positions ``start``, ``start+1``,
        ...: position embedding (learned positions), dropout, every block, the final norm.
        ``features`` feeds it token embeddings; a model that makes other input vectors (image
        patches, ``lslm.vlm``) feeds it those."""
        if self.config.position == "learned":  # RoPE instead turns q and k inside attention
            x = x + self.wpe(torch.arange(start, start + x.size(1), device=x.device))
        x = self.drop(x)
        attention = []
        for i, block in enumerate(self.blocks):
            x, weights = block(x, return_attention, None if cache is None else (cache, i), key_mask)
            attention.append(weights)
        return self.ln_f(x), (attention if return_attention else None)

    def forward(
        self, idx: torch.Tensor, targets: torch.Tensor | None = None, cache: KVCache | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(logits, loss)``: logits for the next token at every position, and the loss if
        ``targets`` are given (else None).

        The attention weights come from ``features(idx, return_attention=True)``.

        ``idx`` must be a (batch, time) int64 (or int32) tensor and ``targets`` an int64 one
        of the same shape, else ``LslmError``. An id outside the vocabulary is an
        ``LslmError`` on CPU, where torch's own range check is reworded at no cost; on a GPU
        checking would cost a synchronisation every step, so CUDA reports it its own way.
        """
        if targets is not None and (not isinstance(targets, torch.Tensor) or not isinstance(idx, torch.Tensor)
                                    or targets.shape != idx.shape or targets.dtype != torch.int64):
            raise LslmError(
                f"targets must be int64 token ids shaped like the input {_describe(idx)}, got "
                f"{_describe(targets)}: pass the input shifted by one position"
            )
        hidden, _ = self.features(idx, cache=cache)
        logits = self.lm_head(hidden)
        loss = None
        if targets is not None:
            try:
                loss = F.cross_entropy(logits.view(-1, logits.size(-1)), targets.reshape(-1))
            except IndexError:  # cross_entropy's own range check (on CPU), reworded
                raise self._id_error(targets, "target") from None
        return logits, loss

    def _id_error(self, ids: torch.Tensor, what: str = "token") -> LslmError:
        low, high = int(ids.min()), int(ids.max())
        return LslmError(
            f"{what} ids must be in 0..{self.config.vocab_size - 1} (the model's vocabulary), got "
            f"ids from {low} to {high}: encode the text with the tokenizer this model was trained with"
        )

    @torch.no_grad()
    def generate(
        self,
        idx: torch.Tensor,
        max_new_tokens: int,
        temperature: float = 1.0,
        top_k: int | None = None,
        top_p: float | None = None,
        seed: int | None = None,
        use_cache: bool = True,
        stop_ids: Collection[int] | None = None,
    ) -> torch.Tensor:
        """Extend ``idx`` (batch, time) by ``max_new_tokens`` sampled tokens.

        ``temperature=0`` means greedy. ``top_k`` keeps the k likeliest tokens; ``top_p``
        keeps the smallest set whose probabilities add up to p (nucleus sampling). A
        ``seed`` makes the sample repeatable without touching torch's global RNG.
        ``use_cache`` keeps each token's keys and values (a ``KVCache``) so a step feeds
        only the newest token; it gives the same tokens as recomputing everything.
        ``stop_ids`` ends generation early, once every row has written one of these ids (an
        end-of-answer marker, a newline): the tokens up to there are the same as without it.

        A 1-D ``idx`` is taken as one sequence, and the result is 1-D too. The prompt must
        hold at least one token, all inside the vocabulary; every argument is checked once,
        before the first step, with a one-line ``LslmError``.
        """
        idx, one_row = self._check_prompt(idx)
        max_new_tokens = whole_number("max_new_tokens", max_new_tokens, minimum=0)
        temperature = real_number("temperature", temperature, low=0.0)
        if top_k is not None:
            top_k = whole_number("top_k", top_k, minimum=1)
        if top_p is not None:
            top_p = real_number("top_p", top_p, 0.0, 1.0)
            if top_p == 0.0:
                raise LslmError("top_p must be in (0, 1], got 0: top_p=1 keeps every token")
        if seed is not None:
            seed = whole_number("seed", seed, minimum=0, maximum=2**63 - 1)
        if not isinstance(use_cache, bool):
            raise LslmError(f"use_cache must be True or False, got {shown(use_cache)}")
        stop = None
        if stop_ids is not None:
            ids = list(stop_ids) if isinstance(stop_ids, Collection) and not isinstance(stop_ids, str) else None
            if ids is None or not all(isinstance(i, int) and 0 <= i < self.config.vocab_size for i in ids):
                raise LslmError(f"stop_ids must be token ids in 0..{self.config.vocab_size - 1}, "
                                f"got {shown(stop_ids)}: e.g. [tokenizer.encode(chr(10))[-1]]")
            stop = torch.tensor(ids, dtype=torch.long, device=idx.device)
        out = self._sample(idx, max_new_tokens, temperature, top_k, top_p, seed, use_cache, stop)
        return out[0] if one_row else out

    def _check_prompt(self, idx: object) -> tuple[torch.Tensor, bool]:
        """The prompt as a (batch, time) tensor of int64 ids, and whether it came as 1-D."""
        if not isinstance(idx, torch.Tensor) or idx.dim() not in (1, 2) or idx.dtype not in INDEX_DTYPES:
            raise LslmError(
                f"generate takes the prompt as token ids in a (batch, time) tensor of integers (or one "
                f"1-D sequence), got {_describe(idx)}: e.g. torch.tensor([tokenizer.encode(text)])"
            )
        one_row = idx.dim() == 1
        idx = idx[None] if one_row else idx
        if idx.size(0) == 0 or idx.size(1) == 0:
            raise LslmError(
                f"the prompt {tuple(idx.shape)} holds no tokens: give at least one token to start "
                "from (e.g. the id of a newline)"
            )
        # Checked where the prompt is (a CPU prompt needs no wait for a GPU), then moved: a CPU
        # prompt works with a model on a GPU.
        if int(idx.min()) < 0 or int(idx.max()) >= self.config.vocab_size:
            raise self._id_error(idx)
        return idx.to(self.wte.weight.device).long(), one_row

    def _sample(self, idx: torch.Tensor, max_new_tokens: int, temperature: float, top_k: int | None,
                top_p: float | None, seed: int | None, use_cache: bool,
                stop: torch.Tensor | None = None) -> torch.Tensor:
        gen = None
        stopped = torch.zeros(idx.size(0), dtype=torch.bool, device=idx.device)
        if seed is not None:
            gen = torch.Generator(device=idx.device).manual_seed(seed)
        cache = None
        with evaluating(self):
            for _ in range(max_new_tokens):
                if use_cache and cache is not None and len(cache) < self.config.block_size:
                    logits = self(idx[:, -1:], cache=cache)[0][:, -1, :]  # only the newest token
                else:
                    # First step, or the context is full: the window slides, every position
                    # shifts, and the cached keys are stale, so start over from the window.
                    cache = KVCache(self.config.n_layer) if use_cache else None
                    context = idx[:, -self.config.block_size :]  # the model sees at most block_size
                    logits = self(context, cache=cache)[0][:, -1, :]
                if temperature == 0:
                    next_id = logits.argmax(dim=-1, keepdim=True)
                else:
                    probs = next_token_probs(logits, temperature, top_k, top_p)
                    next_id = torch.multinomial(probs, num_samples=1, generator=gen)
                idx = torch.cat((idx, next_id), dim=1)
                if stop is not None:
                    stopped |= torch.isin(next_id[:, 0], stop)
                    if bool(stopped.all()):
                        break
        return idx


# The integer types a prompt may come in (generate turns it into int64).
INDEX_DTYPES = (torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8)


def _describe(value: object) -> str:
    if isinstance(value, torch.Tensor):
        return f"a {value.dim()}-D {str(value.dtype).removeprefix('torch.')} tensor of shape {tuple(value.shape)}"
    return f"a {type(value).__name__}"


def next_token_probs(
    logits: torch.Tensor,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
) -> torch.Tensor:
    """Turn last-position logits (batch, vocab) into the sampling distribution."""
    logits = logits / max(temperature, 1e-8)
    if top_k is not None and top_k < logits.size(-1):
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = F.softmax(logits, dim=-1)
    if top_p is not None and top_p < 1.0:
        sorted_probs, order = probs.sort(dim=-1, descending=True)
        # Drop a token if the tokens before it already reach top_p; the first always stays.
        drop = sorted_probs.cumsum(dim=-1) - sorted_probs >= top_p
        drop[..., 0] = False  # also when top_p is so small that it rounds to 0 against float32
        sorted_probs = sorted_probs.masked_fill(drop, 0.0)
        probs = torch.zeros_like(probs).scatter(-1, order, sorted_probs)
        probs = probs / probs.sum(dim=-1, keepdim=True)
    return probs
