"""Self-attention, from the source article's formula to the module the GPT uses.

    Attention(Q, K, V) = softmax(Q Kᵀ / √d_k) V

Three ways to compute it live here, and tests check that they agree:

* ``Attention``: the source article's class, exactly as printed there.
* ``attention_weights`` + a matmul: the same formula with a causal mask, step by step,
  so the weights can be returned and drawn.
* ``F.scaled_dot_product_attention``: torch's fused kernel, used when nobody asks for
  the weights because it is faster and uses less memory.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F


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


def attention_weights(q: torch.Tensor, k: torch.Tensor, causal: bool = True) -> torch.Tensor:
    """softmax(QKᵀ/√d_k) over the last two dims, with future keys masked out if ``causal``."""
    d_k = q.size(-1)
    scores = q @ k.transpose(-2, -1) / math.sqrt(d_k)
    if causal:
        t_q, t_k = q.size(-2), k.size(-2)
        mask = causal_mask(t_k, q.device)[t_k - t_q :]
        # -inf gives exactly zero weight after softmax.
        scores = scores.masked_fill(~mask, float("-inf"))
    return F.softmax(scores, dim=-1)


class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention.

    ``forward(x, return_weights=True)`` also returns the attention weights, shape
    (batch, heads, time, time), for the widgets. Otherwise it takes the fused fast path.
    """

    def __init__(self, n_embd: int, n_head: int, dropout: float = 0.0, bias: bool = True):
        super().__init__()
        if n_embd % n_head != 0:
            raise ValueError(f"n_embd ({n_embd}) must be divisible by n_head ({n_head})")
        self.n_head = n_head
        self.n_embd = n_embd
        # One matrix makes Q, K and V for every head at once.
        self.c_attn = nn.Linear(n_embd, 3 * n_embd, bias=bias)
        self.c_proj = nn.Linear(n_embd, n_embd, bias=bias)
        self.dropout = dropout
        self.attn_dropout = nn.Dropout(dropout)
        self.resid_dropout = nn.Dropout(dropout)

    def split_heads(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(B, T, C) -> q, k, v each (B, heads, T, head_size)."""
        b, t, c = x.shape
        q, k, v = self.c_attn(x).split(self.n_embd, dim=2)
        shape = (b, t, self.n_head, c // self.n_head)
        return tuple(z.view(shape).transpose(1, 2) for z in (q, k, v))  # type: ignore[return-value]

    def forward(
        self, x: torch.Tensor, return_weights: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        b, t, c = x.shape
        q, k, v = self.split_heads(x)
        if return_weights:
            weights = attention_weights(q, k, causal=True)
            y = self.attn_dropout(weights) @ v
        else:
            weights = None
            y = F.scaled_dot_product_attention(
                q, k, v, dropout_p=self.dropout if self.training else 0.0, is_causal=True
            )
        y = y.transpose(1, 2).contiguous().view(b, t, c)  # heads side by side again
        return self.resid_dropout(self.c_proj(y)), weights
