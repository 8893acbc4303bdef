"""All the ways of computing attention agree: the article's class, the manual path, SDPA."""

import math

import pytest
import torch
import torch.nn.functional as F

from lslm.attention import Attention, CausalSelfAttention, attention_weights, causal_mask
from tests.conftest import needs_cpp_compiler

ATOL = 1e-5


def qkv(b=2, h=3, t=7, d=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(b, h, t, d, generator=g) for _ in range(3)]


def test_article_attention_is_the_formula():
    q, k, v = qkv()
    by_hand = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(8), dim=-1) @ v
    assert torch.allclose(Attention(8)(q, k, v), by_hand, atol=ATOL)


def test_article_attention_matches_sdpa_without_mask():
    q, k, v = qkv()
    assert torch.allclose(Attention(8)(q, k, v), F.scaled_dot_product_attention(q, k, v), atol=ATOL)


def test_causal_weights_hide_the_future_and_are_distributions():
    q, k, _ = qkv(t=6)
    w = attention_weights(q, k, causal=True)
    assert torch.allclose(w.sum(-1), torch.ones(2, 3, 6), atol=ATOL)
    future = ~causal_mask(6)
    assert torch.all(w[..., future] == 0)
    assert torch.all(w[..., ~future] > 0)
    # The first token can only look at itself.
    assert torch.allclose(w[..., 0, 0], torch.ones(2, 3))


def test_manual_causal_path_matches_sdpa_causal():
    q, k, v = qkv()
    manual = attention_weights(q, k, causal=True) @ v
    fast = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    assert torch.allclose(manual, fast, atol=ATOL)


def test_last_query_sees_everything_so_article_class_agrees_there():
    q, k, v = qkv()
    causal = attention_weights(q, k, causal=True) @ v
    article = Attention(8)(q, k, v)
    assert torch.allclose(causal[..., -1, :], article[..., -1, :], atol=ATOL)
    # ...but not at earlier positions, where the mask matters.
    assert not torch.allclose(causal[..., 0, :], article[..., 0, :], atol=1e-3)


@pytest.mark.parametrize("bias", [True, False])
def test_module_weight_path_equals_fast_path(bias):
    torch.manual_seed(0)
    attn = CausalSelfAttention(n_embd=32, n_head=4, bias=bias).eval()
    x = torch.randn(3, 10, 32)
    y_fast, none = attn(x)
    y_slow, w = attn(x, return_weights=True)
    assert none is None
    assert w.shape == (3, 4, 10, 10)
    assert torch.allclose(y_fast, y_slow, atol=ATOL)


def test_module_heads_equal_article_class_per_head():
    """Each head is the article's Attention on its own slice of Q, K, V, plus the mask."""
    torch.manual_seed(1)
    attn = CausalSelfAttention(n_embd=16, n_head=2).eval()
    x = torch.randn(1, 5, 16)
    q, k, v = attn.split_heads(x)
    _, w = attn(x, return_weights=True)
    d_k = 8
    scores = q @ k.transpose(-2, -1) / math.sqrt(d_k)
    scores = scores.masked_fill(~causal_mask(5), float("-inf"))
    assert torch.allclose(w, torch.softmax(scores, -1), atol=ATOL)


def test_module_rejects_bad_head_split():
    with pytest.raises(ValueError, match="divisible"):
        CausalSelfAttention(n_embd=30, n_head=4)


def test_fused_and_step_by_step_agree_with_padding_and_both_directions():
    from lslm.attention import CrossAttention, SelfAttention

    torch.manual_seed(1)
    x = torch.randn(2, 7, 32)
    key_mask = torch.ones(2, 7, dtype=torch.bool)
    key_mask[1, 4:] = False  # the second sequence is 4 real tokens and 3 of padding
    for causal in (False, True):
        attn = SelfAttention(32, 4, causal=causal).eval()
        fast, _ = attn(x, key_mask=key_mask)
        slow, w = attn(x, key_mask=key_mask, return_weights=True)
        assert torch.allclose(fast, slow, atol=1e-5)
        assert torch.all(w[1, :, :, 4:] == 0)  # nobody looks at padding
        if causal:
            assert torch.all(w[0].triu(1) == 0)
        else:
            assert torch.all(w[0, :, 0, 1:] > 0)  # an encoder's first token sees the future
    cross = CrossAttention(32, 4).eval()
    target = torch.randn(2, 5, 32)
    fast, _ = cross(target, x, memory_mask=key_mask)
    slow, w = cross(target, x, memory_mask=key_mask, return_weights=True)
    assert w.shape == (2, 4, 5, 7)
    assert torch.allclose(fast, slow, atol=1e-5)
    assert torch.allclose(w.sum(-1), torch.ones(2, 4, 5))
    assert torch.all(w[1, ..., 4:] == 0)


def test_padding_does_not_change_an_encoders_real_tokens():
    from lslm.attention import SelfAttention

    attn = SelfAttention(32, 4).eval()
    x = torch.randn(1, 4, 32)
    alone, _ = attn(x)
    padded = torch.cat([x, torch.randn(1, 3, 32)], dim=1)
    mask = torch.tensor([[True] * 4 + [False] * 3])
    together, _ = attn(padded, key_mask=mask)
    assert torch.allclose(alone, together[:, :4], atol=1e-5)


def test_kv_cache_step_equals_full_recompute():
    from lslm.attention import CausalSelfAttention, KVCache

    attn = CausalSelfAttention(32, 4).eval()
    x = torch.randn(2, 6, 32)
    full, _ = attn(x)
    cache = KVCache(1)
    first, _ = attn(x[:, :4], cache=(cache, 0))  # a prompt of 4 tokens at once
    steps = [attn(x[:, t : t + 1], cache=(cache, 0))[0] for t in (4, 5)]  # then one at a time
    assert len(cache) == 6
    assert torch.allclose(torch.cat([first, *steps], dim=1), full, atol=1e-5)
    # Several new tokens at once against a cache must still be causal among themselves.
    cache = KVCache(1)
    attn(x[:, :3], cache=(cache, 0))
    rest, _ = attn(x[:, 3:], cache=(cache, 0))
    assert torch.allclose(rest, full[:, 3:], atol=1e-5)


def test_attention_stays_float32_under_cpu_bf16_autocast():
    attn = CausalSelfAttention(32, 4).eval()
    x = torch.randn(2, 8, 32)
    seen = []
    hook = torch.nn.functional.scaled_dot_product_attention

    def spy(q, k, v, **kw):
        seen.append(q.dtype)
        return hook(q, k, v, **kw)

    import lslm.attention as A

    A.F.scaled_dot_product_attention = spy
    try:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            y, _ = attn(x)
    finally:
        A.F.scaled_dot_product_attention = hook
    assert seen == [torch.float32]
    assert y.dtype == torch.bfloat16  # the output projection is a bf16 linear
    assert torch.allclose(y.float(), attn(x)[0], atol=3e-2)


@needs_cpp_compiler
@pytest.mark.parametrize("causal,padded", [(True, False), (False, True)])
def test_compiled_attention_takes_the_formula_and_agrees(causal, padded):
    # Under torch.compile on CPU, attend() writes the formula out instead of calling the
    # fused kernel; the spy proves which path ran, the comparison that it is the same maths.
    import lslm.attention as A

    torch._dynamo.reset()
    attn = A.SelfAttention(32, 4, causal=causal).eval()
    x = torch.randn(2, 9, 32)
    mask = torch.ones(2, 9, dtype=torch.bool)
    if padded:
        mask[1, 6:] = False
    key_mask = mask if padded else None
    calls = []
    real = A.F.scaled_dot_product_attention

    def spy(*args, **kw):
        calls.append(1)
        return real(*args, **kw)

    A.F.scaled_dot_product_attention = spy
    try:
        eager, _ = attn(x, key_mask=key_mask)
        assert calls, "eager mode should use the fused kernel"
        calls.clear()
        compiled, _ = torch.compile(attn)(x, key_mask=key_mask)
    finally:
        A.F.scaled_dot_product_attention = real
        torch._dynamo.reset()
    assert calls == []
    assert torch.allclose(compiled, eager, atol=1e-5)


@needs_cpp_compiler
def test_compiled_bf16_attention_is_close_to_float32():
    torch._dynamo.reset()
    attn = CausalSelfAttention(64, 4).eval()
    x = torch.randn(3, 16, 64)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = torch.compile(attn)(x)[0]
    torch._dynamo.reset()
    assert y.dtype == torch.bfloat16
    # bf16 keeps about 2.4 significant decimal digits; the softmax itself sums in float32.
    assert torch.allclose(y.float(), attn(x)[0], atol=3e-2)


def test_cross_attention_is_the_formula_written_out():
    """Queries from the target, keys and values from the memory; one head at a time, by hand."""
    from lslm.attention import CrossAttention, MultiHeadAttention, SelfAttention
    from lslm.errors import LslmError

    torch.manual_seed(2)
    cross = CrossAttention(32, 4).eval()
    assert isinstance(cross, MultiHeadAttention) and not isinstance(cross, SelfAttention)
    assert not hasattr(cross, "c_attn")
    x, memory = torch.randn(2, 5, 32), torch.randn(2, 7, 32)
    mask = torch.ones(2, 7, dtype=torch.bool)
    mask[1, 4:] = False
    q = cross.q_proj(x)
    k, v = cross.kv_proj(memory).split(32, dim=-1)
    heads, weights = [], []
    for h in range(4):
        cols = slice(8 * h, 8 * h + 8)
        scores = q[..., cols] @ k[..., cols].transpose(-2, -1) / math.sqrt(8)
        p = torch.softmax(scores.masked_fill(~mask[:, None, :], float("-inf")), dim=-1)
        heads.append(p @ v[..., cols])
        weights.append(p)
    expected = cross.c_proj(torch.cat(heads, dim=-1))
    fast, none = cross(x, memory, memory_mask=mask)
    slow, w = cross(x, memory, memory_mask=mask, return_weights=True)
    assert none is None
    assert torch.allclose(fast, expected, atol=ATOL) and torch.allclose(slow, expected, atol=ATOL)
    assert torch.allclose(w, torch.stack(weights, dim=1), atol=ATOL)
    with pytest.raises(LslmError, match="divisible"):
        CrossAttention(30, 4)
