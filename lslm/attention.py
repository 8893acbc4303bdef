"""Self-attention, from the source article's formula to the module the GPT uses.

    Attention(Q, K, V) = softmax(Q Kᵀ / √d_k) V

Three ways to compute it live here, and tests check that they agree:

* ``Attention``: the source article's class, exactly as printed there.
* ``attention_weights`` + a matmul: the same formula with a causal mask, step by step,
  so the weights can be returned and drawn.
* ``F.scaled_dot_product_attention``: torch's fused kernel, used when nobody asks for
  the weights because it is faster and uses less memory. One exception: under
  ``torch.compile`` on CPU, the written-out formula compiles into faster code at short
  blocks, so ``attend`` uses it there.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from lslm.errors import LslmError


class Attention(nn.Module):
    """The source article's ``Attention(d_k)`` class, unchanged (section 5)."""

    def __init__(self, d_k):
        super(Attention, self).__init__()
        self.d_k = d_k

    def forward(self, Q, K, V):
        scores = torch.matmul(Q, K.transpose(-2, -1)) / math.sqrt(self.d_k)
        probs = F.softmax(scores, dim=-1)
        output = torch.matmul(probs, V)
        return output


def causal_mask(t: int, device: torch.device | str | None = None) -> torch.Tensor:
    """A (t, t) boolean mask that is True where a query may look: at itself and the past."""
    return torch.ones(t, t, dtype=torch.bool, device=device).tril()


def attention_weights(
    q: torch.Tensor, k: torch.Tensor, causal: bool = True, key_mask: torch.Tensor | None = None
) -> torch.Tensor:
    """softmax(QKᵀ/√d_k) over the last two dims.

    ``causal`` hides future keys. When there are fewer queries than keys (generation with
    a cache), the queries are the last positions. ``key_mask`` (batch, keys), True for
    real tokens, hides padding.
    """
    d_k = q.size(-1)
    scores = q @ k.transpose(-2, -1) / math.sqrt(d_k)
    allowed = _allowed(q.size(-2), k.size(-2), causal, key_mask, q.device)
    if allowed is not None:
        # -inf gives exactly zero weight after softmax.
        scores = scores.masked_fill(~allowed, float("-inf"))
    # The softmax sums in float32 even when the scores are bfloat16 (under autocast).
    return F.softmax(scores, dim=-1, dtype=torch.float32).to(scores.dtype)


def _allowed(
    t_q: int, t_k: int, causal: bool, key_mask: torch.Tensor | None, device
) -> torch.Tensor | None:
    """The boolean "may look" mask, broadcastable to (batch, heads, t_q, t_k), or None."""
    allowed = None
    if causal and t_q > 1:
        allowed = causal_mask(t_k, device)[t_k - t_q :]
    if key_mask is not None:
        keys = key_mask[:, None, None, :].bool()
        allowed = keys if allowed is None else allowed & keys
        if causal:  # a query that may read nothing (a left pad) reads itself: no 0/0 in softmax
            alone = ~allowed.any(dim=-1, keepdim=True)
            allowed = allowed | (alone & torch.eye(t_k, dtype=torch.bool, device=device)[t_k - t_q :])
    return allowed


COMPILED_FORMULA_MAX_KEYS = 256  # see attend()


def attend(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    causal: bool,
    key_mask: torch.Tensor | None = None,
    dropout: float = 0.0,
    return_weights: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Heads of shape (batch, heads, time, head_size) in, mixed values out.

    With ``return_weights`` it goes step by step so the weights can be returned and
    drawn; otherwise it takes torch's fused kernel, which is faster and leaner.

    Under CPU bfloat16 autocast, attention itself stays in float32: the linears gain
    from bf16 matmuls, but the CPU kernel's bf16 backward is several times slower.
    """
    if q.device.type == "cpu" and torch.compiler.is_compiling() and k.size(-2) <= COMPILED_FORMULA_MAX_KEYS:
        # Under torch.compile the written-out formula becomes matmuls (bf16 under autocast)
        # plus one fused mask-and-softmax kernel, which beats the fused CPU kernel at the
        # block sizes of this course (measured in benchmarks/RESULTS.md). Longer blocks keep
        # the fused kernel, whose memory does not grow with the square of the length.
        weights = attention_weights(q, k, causal, key_mask)
        mixed = (F.dropout(weights, dropout) if dropout else weights) @ v
        return mixed, (weights if return_weights else None)
    if q.device.type == "cpu" and torch.is_autocast_enabled("cpu"):
        with torch.autocast("cpu", enabled=False):
            return attend(q.float(), k.float(), v.float(), causal, key_mask, dropout, return_weights)
    if return_weights:
        weights = attention_weights(q, k, causal, key_mask)
        return F.dropout(weights, dropout) @ v, weights
    if key_mask is None and (not causal or q.size(-2) == k.size(-2)):
        return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout, is_causal=causal), None
    mask = _allowed(q.size(-2), k.size(-2), causal, key_mask, q.device)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout), None


class KVCache:
    """The keys and values of every token seen so far, one pair per layer.

    Generating token t+1 needs the keys and values of tokens 1..t in every layer. They
    never change (attention is causal), so each step computes them for the new token only
    and appends them here, instead of re-running the whole context.
    """

    def __init__(self, n_layer: int):
        self.keys: list[torch.Tensor | None] = [None] * n_layer
        self.values: list[torch.Tensor | None] = [None] * n_layer

    def __len__(self) -> int:
        """How many positions are cached."""
        return self.seen(0)

    def seen(self, layer: int) -> int:
        """How many positions ``layer`` has cached (during a forward pass the layers before
        it already hold the new tokens, the ones after it not yet)."""
        return 0 if self.keys[layer] is None else self.keys[layer].size(-2)

    def extend(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Append this step's keys and values for ``layer``; return all of them so far."""
        if self.keys[layer] is not None:
            k = torch.cat((self.keys[layer], k), dim=-2)
            v = torch.cat((self.values[layer], v), dim=-2)
        self.keys[layer], self.values[layer] = k, v
        return k, v


def rope_angles(head_size: int, positions: torch.Tensor, base: float = 10000.0) -> torch.Tensor:
    """RoPE's rotation angles (Su et al. 2021, "RoFormer"): (len(positions), head_size / 2).

    Pair i of a head's dimensions turns by ``position * base**(-2i / head_size)``: fast
    for the first pairs, slow for the last, like the hands of a clock.
    """
    if head_size % 2:
        raise LslmError(f"RoPE turns pairs of dimensions, so the head size must be even, got {head_size}")
    inv_freq = base ** (-torch.arange(0, head_size, 2, dtype=torch.float32, device=positions.device) / head_size)
    return positions.float()[:, None] * inv_freq[None, :]


def apply_rope(x: torch.Tensor, start: int = 0, base: float = 10000.0) -> torch.Tensor:
    """Rotate queries or keys (batch, heads, time, head_size) by their positions
    ``start, start+1, ...``: dimension i pairs with i + head_size/2 (the layout of Hugging
    Face's Llama). The dot product of a query at m and a key at n then depends on m - n only:
    attention sees relative positions, and the model needs no position embedding.
    """
    half = x.size(-1) // 2
    angles = rope_angles(x.size(-1), torch.arange(start, start + x.size(-2), device=x.device), base)
    cos, sin = angles.cos().to(x.dtype), angles.sin().to(x.dtype)
    x1, x2 = x[..., :half], x[..., half:]
    return torch.cat((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1)


class MultiHeadAttention(nn.Module):
    """What every multi-head attention shares, wherever its queries, keys and values come from.

    A subclass builds its input projections and the output projection ``c_proj``, turns its
    inputs into q, k and v with ``heads``, and hands them to ``mix``: attend, put the heads
    side by side again, project. ``dropout`` applies to the attention weights while training.
    """

    c_proj: nn.Linear

    def __init__(self, n_embd: int, n_head: int, dropout: float = 0.0):
        super().__init__()
        if n_embd % n_head != 0:
            raise LslmError(f"n_embd ({n_embd}) must be divisible by n_head ({n_head})")
        self.n_head = n_head
        self.n_embd = n_embd
        self.dropout = dropout

    def heads(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, C) -> (B, heads, T, head_size)."""
        b, t, c = x.shape
        return x.view(b, t, self.n_head, c // self.n_head).transpose(1, 2)

    def merge(self, y: torch.Tensor) -> torch.Tensor:
        """(B, heads, T, head_size) -> (B, T, C), heads side by side, then the output projection."""
        b, _, t, _ = y.shape
        return self.c_proj(y.transpose(1, 2).reshape(b, t, self.n_embd))

    def mix(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        causal: bool,
        key_mask: torch.Tensor | None = None,
        return_weights: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Heads in, ``(output (B, T, C), weights or None)`` out."""
        dropout = self.dropout if self.training else 0.0
        y, weights = attend(q, k, v, causal, key_mask, dropout, return_weights)
        return self.merge(y), weights


class SelfAttention(MultiHeadAttention):
    """Multi-head self-attention: every token builds a query, a key and a value.

    ``causal=True`` lets a token look only at itself and earlier tokens (a decoder, the
    GPT); ``causal=False`` lets it look both ways (an encoder). ``forward`` returns
    ``(y, weights)``; ``weights`` has shape (batch, heads, time, time) when asked for with
    ``return_weights=True``, else None.

    ``n_kv_head`` below ``n_head`` is grouped-query attention (Ainslie et al. 2023): each
    key/value head serves ``n_head / n_kv_head`` query heads, so the projection and the
    KV cache hold that much less; 1 is multi-query attention (Shazeer 2019).
    """

    def __init__(
        self, n_embd: int, n_head: int, dropout: float = 0.0, bias: bool = True, causal: bool = False,
        rope: bool = False, rope_theta: float = 10000.0, n_kv_head: int | None = None,
    ):
        super().__init__(n_embd, n_head, dropout)
        self.causal = causal
        self.rope = rope  # rotate q and k by position (apply_rope) instead of a position embedding
        self.rope_theta = rope_theta
        self.n_kv_head = n_kv_head or n_head
        if n_head % self.n_kv_head:
            raise LslmError(f"n_head ({n_head}) must be divisible by n_kv_head ({self.n_kv_head})")
        self.kv_width = self.n_kv_head * (n_embd // n_head)
        # One matrix makes Q, K and V for every head at once.
        self.c_attn = nn.Linear(n_embd, n_embd + 2 * self.kv_width, bias=bias)
        self.c_proj = nn.Linear(n_embd, n_embd, bias=bias)

    def split_heads(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(B, T, C) -> q (B, heads, T, head_size) and k, v (B, kv heads, T, head_size)."""
        q, k, v = self.c_attn(x).split((self.n_embd, self.kv_width, self.kv_width), dim=2)
        if self.n_kv_head == self.n_head:
            return self.heads(q), self.heads(k), self.heads(v)
        b, t, _ = x.shape
        kv = (z.view(b, t, self.n_kv_head, -1).transpose(1, 2) for z in (k, v))
        return (self.heads(q), *kv)

    def forward(
        self,
        x: torch.Tensor,
        key_mask: torch.Tensor | None = None,
        return_weights: bool = False,
        cache: tuple[KVCache, int] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``cache=(kv_cache, layer)`` reuses the keys and values of earlier tokens."""
        q, k, v = self.split_heads(x)
        if self.rope:  # the new tokens come after the ones this layer has cached
            start = 0 if cache is None else cache[0].seen(cache[1])
            q, k = apply_rope(q, start, self.rope_theta), apply_rope(k, start, self.rope_theta)
        if cache is not None:  # the cache keeps the n_kv_head heads only
            k, v = cache[0].extend(cache[1], k, v)
        if self.n_kv_head != self.n_head:  # query head h reads key/value head h // group
            group = self.n_head // self.n_kv_head
            k, v = k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1)
        return self.mix(q, k, v, self.causal, key_mask, return_weights)


class CausalSelfAttention(SelfAttention):
    """Self-attention that never looks ahead: the kind a GPT uses."""

    def __init__(self, n_embd: int, n_head: int, dropout: float = 0.0, bias: bool = True,
                 rope: bool = False, rope_theta: float = 10000.0, n_kv_head: int | None = None):
        super().__init__(n_embd, n_head, dropout, bias, causal=True, rope=rope, rope_theta=rope_theta,
                         n_kv_head=n_kv_head)


class CrossAttention(MultiHeadAttention):
    """Queries from one sequence, keys and values from another (the encoder's output).

    This is how a translation decoder looks at the source sentence: its weights, of
    shape (batch, heads, target time, source time), are the alignment between the two.
    Queries and keys/values come from different inputs, so they have separate projections.
    """

    def __init__(self, n_embd: int, n_head: int, dropout: float = 0.0, bias: bool = True):
        super().__init__(n_embd, n_head, dropout)
        self.q_proj = nn.Linear(n_embd, n_embd, bias=bias)
        self.kv_proj = nn.Linear(n_embd, 2 * n_embd, bias=bias)  # keys and values in one matrix
        self.c_proj = nn.Linear(n_embd, n_embd, bias=bias)

    def forward(
        self,
        x: torch.Tensor,
        memory: torch.Tensor,
        memory_mask: torch.Tensor | None = None,
        return_weights: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``x`` (B, T, C) asks, ``memory`` (B, S, C) answers; ``memory_mask`` (B, S) is True
        for real source tokens."""
        q = self.heads(self.q_proj(x))
        k, v = (self.heads(z) for z in self.kv_proj(memory).split(self.n_embd, dim=2))
        return self.mix(q, k, v, False, memory_mask, return_weights)
