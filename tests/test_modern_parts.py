"""The parts today's open models swap into GPT-2 (RMSNorm, SwiGLU, grouped-query attention,
untied embeddings, RoPE's base), each against a slow, written-out version."""

import math
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

from lslm.attention import KVCache
from lslm.checkpoint import load_model, save_checkpoint
from lslm.errors import LslmError
from lslm.model import GPT, GPTConfig, RMSNorm, SwiGLU, count_params, param_breakdown
from lslm.tokenizers import CharTokenizer

LLAMA_LIKE = GPTConfig(vocab_size=40, block_size=24, n_layer=2, n_head=4, n_embd=32, bias=False,
                       position="rope", norm="rmsnorm", mlp="swiglu", n_kv_head=2, tie_embeddings=False)


def test_rmsnorm_is_the_written_out_formula():
    norm = RMSNorm(16, eps=1e-6)
    with torch.no_grad():
        norm.weight.copy_(torch.randn(16))
    x = torch.randn(3, 5, 16, dtype=torch.float64)
    want = x / torch.sqrt((x * x).mean(-1, keepdim=True) + 1e-6) * norm.weight.double()
    assert torch.allclose(norm.double()(x), want, atol=1e-12)
    # Unlike LayerNorm it does not centre: a constant shift changes the output.
    assert not torch.allclose(norm.double()(x + 3.0), norm.double()(x), atol=1e-3)


def test_swiglu_is_the_written_out_formula():
    mlp = SwiGLU(8, 20).double()
    x = torch.randn(2, 3, 8, dtype=torch.float64)
    gate, up, down = mlp.w_gate.weight, mlp.w_up.weight, mlp.c_proj.weight
    a = x @ gate.T
    want = ((a / (1 + torch.exp(-a))) * (x @ up.T)) @ down.T  # silu(a) = a * sigmoid(a)
    assert torch.allclose(mlp(x), want, atol=1e-12)


def written_out_attention(attn, x, n_head, n_kv_head, theta):
    """Grouped-query causal attention with RoPE, one head at a time, in float64."""
    b, t, c = x.shape
    hs = c // n_head
    kv_w = n_kv_head * hs
    w = attn.c_attn.weight.double()
    q_all, k_all, v_all = x @ w[:c].T, x @ w[c:c + kv_w].T, x @ w[c + kv_w:].T

    def rotate(z):  # pair i with i + hs/2, turned by position * theta**(-2i/hs)
        half = hs // 2
        freq = theta ** (-torch.arange(0, hs, 2, dtype=torch.float64) / hs)
        ang = torch.arange(t, dtype=torch.float64)[:, None] * freq[None]
        z1, z2 = z[..., :half], z[..., half:]
        return torch.cat((z1 * ang.cos() - z2 * ang.sin(), z1 * ang.sin() + z2 * ang.cos()), -1)

    outs = []
    for h in range(n_head):
        g = h // (n_head // n_kv_head)  # the key/value head this query head reads
        q = rotate(q_all[..., h * hs:(h + 1) * hs])
        k = rotate(k_all[..., g * hs:(g + 1) * hs])
        v = v_all[..., g * hs:(g + 1) * hs]
        scores = q @ k.transpose(-1, -2) / math.sqrt(hs)
        scores = scores.masked_fill(~torch.ones(t, t, dtype=torch.bool).tril(), float("-inf"))
        outs.append(scores.softmax(-1) @ v)
    return torch.cat(outs, -1) @ attn.c_proj.weight.double().T


@pytest.mark.parametrize("n_kv_head", [1, 2, 4])
def test_grouped_query_attention_is_the_written_out_formula(n_kv_head):
    config = replace(LLAMA_LIKE, n_kv_head=n_kv_head, rope_theta=500.0)
    attn = GPT(config, seed=0).blocks[0].attn
    x = torch.randn(2, 7, 32, dtype=torch.float64)
    want = written_out_attention(attn, x, 4, n_kv_head, 500.0)
    got, _ = attn.double()(x)
    assert torch.allclose(got, want, atol=1e-10)
    weights = attn(x, return_weights=True)[1]
    assert weights.shape == (2, 4, 7, 7) and torch.allclose(weights.sum(-1), torch.ones(2, 4, 7, dtype=torch.float64))


def test_the_kv_cache_of_grouped_query_attention_keeps_only_the_kv_heads_and_changes_nothing():
    model = GPT(LLAMA_LIKE, seed=0).eval()
    prompt = torch.tensor([[1, 5, 9, 2], [3, 3, 7, 1]])
    with_cache = model.generate(prompt, 18, temperature=0, use_cache=True)
    without = model.generate(prompt, 18, temperature=0, use_cache=False)
    assert torch.equal(with_cache, without)
    cache = KVCache(LLAMA_LIKE.n_layer)
    model(prompt, cache=cache)
    assert cache.keys[0].shape == (2, 2, 4, 8)  # 2 key/value heads, not 4
    full = GPT(replace(LLAMA_LIKE, n_kv_head=None), seed=0).eval()
    full_cache = KVCache(LLAMA_LIKE.n_layer)
    full(prompt, cache=full_cache)
    kv_bytes = lambda c: sum(t.numel() * t.element_size() for t in c.keys + c.values)  # noqa: E731
    assert kv_bytes(cache) * 2 == kv_bytes(full_cache)  # n_kv_head / n_head of the memory


def test_future_tokens_do_not_change_the_past_in_a_llama_like_model():
    model = GPT(LLAMA_LIKE, seed=0).eval()
    idx = torch.randint(0, 40, (1, 12))
    changed = idx.clone()
    changed[0, 8:] = (changed[0, 8:] + 1) % 40
    assert torch.allclose(model(idx)[0][0, :8], model(changed)[0][0, :8], atol=1e-6)


@pytest.mark.parametrize("options", [
    {}, {"bias": False}, {"position": "rope"}, {"norm": "rmsnorm"}, {"mlp": "swiglu"},
    {"mlp": "swiglu", "mlp_hidden": 50}, {"n_kv_head": 1}, {"tie_embeddings": False},
    {"norm": "rmsnorm", "mlp": "swiglu", "n_kv_head": 2, "tie_embeddings": False, "bias": False, "position": "rope"},
])
def test_the_parameter_count_on_paper_matches_the_model(options):
    config = GPTConfig(vocab_size=50, block_size=16, n_layer=2, n_head=4, n_embd=32, **options)
    model = GPT(config, seed=0)
    assert count_params(config) == model.num_params()
    assert (model.lm_head.weight is model.wte.weight) == config.tie_embeddings
    if not config.tie_embeddings:
        assert param_breakdown(config)["lm_head"] == 50 * 32


def test_swiglu_defaults_to_about_the_parameters_of_the_gelu_mlp():
    for width in (64, 128, 256, 768, 4096):
        gelu = GPTConfig(n_embd=width, n_head=4)
        swiglu = replace(gelu, mlp="swiglu")
        assert swiglu.hidden % 8 == 0 and swiglu.hidden >= 8 * width / 3
        ratio = param_breakdown(swiglu)["blocks"] / param_breakdown(gelu)["blocks"]
        assert 0.99 < ratio < 1.03, (width, ratio)


def test_a_llama_like_model_saves_and_loads_through_a_checkpoint(tmp_path):
    model = GPT(LLAMA_LIKE, seed=3).eval()
    tok = CharTokenizer.train("abcdefghijklmnopqrstuvwxyz0123456789 .,!")
    save_checkpoint(tmp_path / "m", model=model.state_dict(), model_config=model.config.to_dict(),
                    tokenizer=tok.state())
    again, _ = load_model(tmp_path / "m")
    assert again.config == LLAMA_LIKE
    idx = torch.randint(0, 40, (2, 9))
    assert torch.equal(again(idx)[0], model(idx)[0])


@pytest.mark.parametrize("change, words", [
    ({"n_kv_head": 3}, "not divisible by n_kv_head"),
    ({"n_kv_head": 0}, "n_kv_head"),
    ({"norm": "batchnorm"}, 'norm must be "layernorm" or "rmsnorm"'),
    ({"mlp": "relu"}, 'mlp must be "gelu" or "swiglu"'),
    ({"position": "alibi"}, 'position must be "learned" or "rope"'),
    ({"tie_embeddings": "yes"}, "tie_embeddings must be True or False"),
    ({"rope_theta": 0.5}, "rope_theta"),
    ({"norm_eps": 0}, "norm_eps"),
    ({"mlp_hidden": 0}, "mlp_hidden"),
    ({"n_embd": 36, "n_head": 4, "position": "rope", "n_kv_head": 2}, "must be even"),
])
def test_bad_options_are_one_line_errors(change, words):
    with pytest.raises(LslmError, match=words) as e:
        GPTConfig(**{**LLAMA_LIKE.to_dict(), **change})
    assert "\n" not in str(e.value)


def test_rope_theta_changes_the_rotation():
    a = GPT(replace(LLAMA_LIKE, rope_theta=10000.0), seed=0).eval()
    b = GPT(replace(LLAMA_LIKE, rope_theta=100.0), seed=0).eval()
    idx = torch.randint(0, 40, (1, 10))
    assert not torch.allclose(a(idx)[0], b(idx)[0])
    assert F.mse_loss(a(idx)[0][:, :1], b(idx)[0][:, :1]) < 1e-12  # position 0 is not turned at all


@pytest.mark.parametrize("name, shape, published", [
    # Touvron et al. 2023 (Llama 2): 7B; the Hugging Face checkpoint holds 6,738,415,616.
    ("Llama-2-7B", dict(n_kv_head=32, mlp_hidden=11008), 6_738_415_616),
    # Jiang et al. 2023 (Mistral 7B): 7.24B, with 8 key/value heads (grouped-query attention).
    ("Mistral-7B", dict(n_kv_head=8, mlp_hidden=14336), 7_241_732_096),
])
def test_published_open_models_count_right_on_paper(name, shape, published):
    config = GPTConfig(vocab_size=32000, block_size=4096, n_layer=32, n_head=32, n_embd=4096, bias=False,
                       position="rope", norm="rmsnorm", mlp="swiglu", tie_embeddings=False, **shape)
    assert count_params(config) == published, name
