"""A GPT language model that reads top to bottom: config, blocks, model, generate.

The shape follows GPT-2: token + position embeddings, a stack of pre-LayerNorm
Transformer blocks (attention then MLP, each added back to a residual stream), a final
LayerNorm and a language-model head whose weights are tied to the token embedding.

The parts below the config (``LayerNorm``, ``MLP``, the ``Residual`` sublayer, weight
initialisation and tying) are shared with the encoder-decoder model in ``lslm.seq2seq``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from lslm.attention import CausalSelfAttention, KVCache
from lslm.errors import LslmError
from lslm.utils import DictConfig, evaluating, seeded


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

    def __post_init__(self) -> None:
        for name in ("vocab_size", "block_size", "n_layer", "n_head", "n_embd"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise LslmError(f"{name} must be a positive whole number, got {value!r}")
        if self.n_embd % self.n_head != 0:
            near = max(self.n_head, round(self.n_embd / self.n_head) * self.n_head)
            raise LslmError(
                f"n_embd={self.n_embd} is not divisible by n_head={self.n_head}: each head gets "
                f"n_embd/n_head dimensions, so pick n_embd a multiple of n_head (e.g. {near})"
            )
        if self.gelu_approx not in ("none", "tanh"):
            raise LslmError(f'gelu_approx must be "none" or "tanh", got {self.gelu_approx!r}')
        if not 0.0 <= self.dropout < 1.0:
            raise LslmError(f"dropout must be in [0, 1), got {self.dropout}")

    @classmethod
    def gpt2_small(cls) -> "GPTConfig":
        """GPT-2 small (Radford et al. 2019): 12 layers, 12 heads, 768 wide, 124M parameters."""
        return cls(vocab_size=50257, block_size=1024, n_layer=12, n_head=12, n_embd=768)


def param_breakdown(config: GPTConfig) -> dict[str, int]:
    """Exact parameter counts per part of the model, worked out on paper.

    The LM head shares the token embedding matrix, so it adds nothing.
    """
    c, b = config.n_embd, int(config.bias)
    ln = c + b * c
    attn = (c * 3 * c + b * 3 * c) + (c * c + b * c)
    mlp = (c * 4 * c + b * 4 * c) + (4 * c * c + b * c)
    per_block = 2 * ln + attn + mlp
    return {
        "token_embedding": config.vocab_size * c,
        "position_embedding": config.block_size * c,
        "blocks": config.n_layer * per_block,
        "final_layernorm": ln,
        "lm_head (tied)": 0,
    }


def count_params(config: GPTConfig) -> int:
    """Total parameters of ``GPT(config)``; GPT-2 small gives 124,439,808."""
    return sum(param_breakdown(config).values())


class LayerNorm(nn.Module):
    """LayerNorm with an optional bias (torch's own cannot drop only the bias)."""

    def __init__(self, n: int, bias: bool):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(n))
        self.bias = nn.Parameter(torch.zeros(n)) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x, self.weight.shape, self.weight, self.bias, 1e-5)


class MLP(nn.Module):
    """Per-position feed-forward network: widen (GPT-2: 4x), GELU, project back."""

    def __init__(self, n_embd: int, n_hidden: int, bias: bool = True, gelu_approx: str = "none"):
        super().__init__()
        self.c_fc = nn.Linear(n_embd, n_hidden, bias=bias)
        self.c_proj = nn.Linear(n_hidden, n_embd, bias=bias)
        self.gelu_approx = gelu_approx

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c_proj(F.gelu(self.c_fc(x), approximate=self.gelu_approx))


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
        self.ln_1 = LayerNorm(config.n_embd, config.bias)
        self.attn = CausalSelfAttention(config.n_embd, config.n_head, config.dropout, config.bias)
        self.ln_2 = LayerNorm(config.n_embd, config.bias)
        self.mlp = MLP(config.n_embd, 4 * config.n_embd, config.bias, config.gelu_approx)
        self.residual = Residual(config.dropout)

    def forward(
        self, x: torch.Tensor, return_weights: bool = False, cache: tuple[KVCache, int] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        x, weights = self.residual(x, self.ln_1, self.attn, return_weights=return_weights, cache=cache)
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
            self.wpe = nn.Embedding(config.block_size, config.n_embd)  # position embedding
            self.drop = nn.Dropout(config.dropout)
            self.blocks = nn.ModuleList([Block(config) for _ in range(config.n_layer)])
            self.ln_f = LayerNorm(config.n_embd, config.bias)
            self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
            tie_weights(self.lm_head, self.wte)
            init_weights(self, config.n_layer)

    def features(
        self, idx: torch.Tensor, return_attention: bool = False, cache: KVCache | None = None
    ) -> tuple[torch.Tensor, list | None]:
        """The final hidden states (batch, time, n_embd), after the last LayerNorm.

        The LM head turns them into next-token logits; a task head (a classifier, an
        answer-span pointer) can read them instead. With ``return_attention`` the second
        value is one (batch, heads, time, time) tensor per layer, else None. A ``cache``
        holds the keys and values of earlier tokens, so ``idx`` may be only the new ones.
        """
        t = idx.size(1)
        start = len(cache) if cache is not None else 0
        if start + t > self.config.block_size:
            raise LslmError(
                f"the input has {start + t} tokens but the model's block_size is "
                f"{self.config.block_size}: crop it to the last block_size tokens"
            )
        pos = torch.arange(start, start + t, device=idx.device)
        x = self.drop(self.wte(idx) + self.wpe(pos))
        attention = []
        for i, block in enumerate(self.blocks):
            x, weights = block(x, return_attention, None if cache is None else (cache, i))
            attention.append(weights)
        return self.ln_f(x), (attention if return_attention else None)

    def forward(
        self, idx: torch.Tensor, targets: torch.Tensor | None = None, cache: KVCache | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(logits, loss)``: logits for the next token at every position, and the loss if
        ``targets`` are given (else None).

        The attention weights come from ``features(idx, return_attention=True)``.
        """
        hidden, _ = self.features(idx, cache=cache)
        logits = self.lm_head(hidden)
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.view(-1, logits.size(-1)), targets.reshape(-1))
        return logits, loss

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
    ) -> torch.Tensor:
        """Extend ``idx`` (batch, time) by ``max_new_tokens`` sampled tokens.

        ``temperature=0`` means greedy. ``top_k`` keeps the k likeliest tokens; ``top_p``
        keeps the smallest set whose probabilities add up to p (nucleus sampling). A
        ``seed`` makes the sample repeatable without touching torch's global RNG.
        ``use_cache`` keeps each token's keys and values (a ``KVCache``) so a step feeds
        only the newest token; it gives the same tokens as recomputing everything.
        """
        if temperature < 0:
            raise LslmError(f"temperature must be >= 0, got {temperature}")
        if top_k is not None and top_k < 1:
            raise LslmError(f"top_k must be at least 1, got {top_k}")
        if top_p is not None and not 0.0 < top_p <= 1.0:
            raise LslmError(f"top_p must be in (0, 1], got {top_p}")
        gen = None
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
        return idx


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
        sorted_probs = sorted_probs.masked_fill(drop, 0.0)
        probs = torch.zeros_like(probs).scatter(-1, order, sorted_probs)
        probs = probs / probs.sum(dim=-1, keepdim=True)
    return probs
