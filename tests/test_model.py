"""The GPT: shapes, exact parameter counts, causality, attention weights and generate()."""

import pytest
import torch

from lslm.errors import LslmError
from lslm.model import GPT, GPTConfig, count_params, next_token_probs, param_breakdown


def tiny(**kw) -> GPT:
    torch.manual_seed(0)
    cfg = dict(vocab_size=11, block_size=16, n_layer=2, n_head=2, n_embd=16)
    cfg.update(kw)
    return GPT(GPTConfig(**cfg)).eval()


def test_gpt2_small_has_124_439_808_parameters():
    cfg = GPTConfig.gpt2_small()
    assert count_params(cfg) == 124_439_808
    with torch.device("meta"):  # builds the real module without allocating 500 MB
        model = GPT(cfg)
    assert model.num_params() == 124_439_808


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("shape", [(1, 1, 8), (3, 4, 32), (2, 2, 24)])
def test_paper_count_matches_real_module(bias, shape):
    n_layer, n_head, n_embd = shape
    cfg = GPTConfig(vocab_size=50, block_size=20, n_layer=n_layer, n_head=n_head, n_embd=n_embd, bias=bias)
    assert count_params(cfg) == GPT(cfg).num_params()
    assert param_breakdown(cfg)["token_embedding"] == 50 * n_embd


def test_weights_are_tied():
    model = tiny()
    assert model.lm_head.weight is model.wte.weight


@pytest.mark.parametrize(
    "kw, words",
    [
        (dict(n_embd=30, n_head=4), "not divisible by n_head"),
        (dict(n_layer=0), "n_layer must be a positive"),
        (dict(dropout=1.5), "dropout"),
        (dict(vocab_size=2.5), "vocab_size"),
    ],
)
def test_config_errors_are_one_clear_line(kw, words):
    with pytest.raises(LslmError, match=words) as err:
        GPTConfig(**kw)
    assert "\n" not in str(err.value)


def test_config_round_trips_through_dict():
    cfg = GPTConfig(vocab_size=7, n_embd=8, n_head=2, bias=False, dropout=0.1)
    assert GPTConfig.from_dict(cfg.to_dict()) == cfg


def test_forward_is_logits_and_loss_and_features_give_the_attention():
    model = tiny()
    x = torch.randint(0, 11, (3, 9))
    logits, loss = model(x, x)
    assert logits.shape == (3, 9, 11) and loss.ndim == 0
    assert model(x)[1] is None and len(model(x)) == 2  # one shape, with or without targets
    hidden, attention = model.features(x, return_attention=True)
    assert len(attention) == 2
    for w in attention:
        assert w.shape == (3, 2, 9, 9)
        assert torch.allclose(w.sum(-1), torch.ones(3, 2, 9), atol=1e-5)
    # The weights path and the fused path give the same logits.
    assert torch.allclose(logits, model.lm_head(hidden), atol=1e-5)
    with pytest.raises(TypeError):
        model(x, x, return_attention=True)


def test_untrained_loss_is_near_uniform():
    model = tiny()
    x = torch.randint(0, 11, (4, 16))
    _, loss = model(x, x)
    assert abs(loss.item() - torch.log(torch.tensor(11.0)).item()) < 0.2


def test_future_tokens_do_not_change_the_past():
    model = tiny()
    x = torch.randint(0, 11, (1, 12))
    y = x.clone()
    y[0, 8:] = (y[0, 8:] + 1) % 11
    a, b = model(x)[0], model(y)[0]
    assert torch.allclose(a[0, :8], b[0, :8], atol=1e-6)
    assert not torch.allclose(a[0, 8:], b[0, 8:], atol=1e-4)


def test_too_long_input_is_a_clear_error():
    with pytest.raises(LslmError, match="block_size is 16"):
        tiny()(torch.zeros(1, 17, dtype=torch.long))


def test_generate_seed_length_and_context_crop():
    model = tiny()
    start = torch.zeros(2, 3, dtype=torch.long)
    a = model.generate(start, 30, seed=5)  # 33 tokens > block_size: must crop the context
    b = model.generate(start, 30, seed=5)
    c = model.generate(start, 30, seed=6)
    assert a.shape == (2, 33) and torch.equal(a[:, :3], start)
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_greedy_equals_argmax_and_top_k_1_and_tiny_top_p():
    model = tiny()
    idx = torch.tensor([[1, 2, 3]])
    greedy = model.generate(idx, 6, temperature=0)
    by_hand = idx
    for _ in range(6):
        by_hand = torch.cat([by_hand, model(by_hand)[0][:, -1].argmax(-1, keepdim=True)], 1)
    assert torch.equal(greedy, by_hand)
    assert torch.equal(model.generate(idx, 6, top_k=1, seed=0), greedy)
    assert torch.equal(model.generate(idx, 6, top_p=1e-6, seed=0), greedy)


def test_stop_ids_end_generation_once_every_row_has_written_one_and_change_no_token():
    model = tiny()
    idx = torch.tensor([[1, 2, 3], [4, 5, 6]])
    full = model.generate(idx, 12, temperature=0)[:, 3:]
    first = [row.tolist() for row in full]
    stop = first[0][4]  # a token row 0 writes at step 5
    got = model.generate(idx, 12, temperature=0, stop_ids=[stop])[:, 3:]
    ends = [row.index(stop) + 1 if stop in row else 12 for row in first]
    assert got.size(1) == max(ends)  # it ran until the last row wrote a stop token
    assert torch.equal(got, full[:, : got.size(1)])  # and every token is the one it wrote without
    never = model.generate(idx, 12, temperature=0, stop_ids=[])
    assert never.size(1) == 15


def test_next_token_probs_top_k_and_top_p():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    p = next_token_probs(logits, top_k=2)
    assert torch.allclose(p, torch.tensor([[0.625, 0.375, 0.0, 0.0]]), atol=1e-6)
    p = next_token_probs(logits, top_p=0.8)  # 0.5 + 0.3 reaches 0.8: keep two
    assert torch.allclose(p, torch.tensor([[0.625, 0.375, 0.0, 0.0]]), atol=1e-6)
    p = next_token_probs(logits, top_p=0.81)  # needs a third token
    assert (p > 0).sum() == 3
    hot = next_token_probs(logits, temperature=100.0)
    assert hot.max() - hot.min() < 0.02  # high temperature flattens


@pytest.mark.parametrize("kw", [dict(temperature=-1), dict(top_k=0), dict(top_p=0.0), dict(top_p=1.5)])
def test_generate_rejects_bad_settings(kw):
    with pytest.raises(LslmError):
        tiny().generate(torch.zeros(1, 1, dtype=torch.long), 2, **kw)


def test_kv_cache_generates_the_same_tokens(tiny_config):
    from lslm.attention import KVCache

    torch.manual_seed(3)
    model = GPT(tiny_config(50, block_size=16)).eval()
    prompt = torch.randint(0, 50, (2, 5))
    # 30 new tokens run past block_size (16), so the window slides and the cache restarts.
    for kwargs in ({"temperature": 0}, {"temperature": 1.0, "top_k": 10, "seed": 4}):
        slow = model.generate(prompt, 30, use_cache=False, **kwargs)
        fast = model.generate(prompt, 30, use_cache=True, **kwargs)
        assert torch.equal(slow, fast)
    cache = KVCache(model.config.n_layer)
    idx = torch.randint(0, 50, (1, 9))
    logits_full = model(idx)[0]
    step_logits = [model(idx[:, :5], cache=cache)[0]] + [model(idx[:, t : t + 1], cache=cache)[0]
                                                           for t in range(5, 9)]
    assert torch.allclose(torch.cat(step_logits, dim=1), logits_full, atol=1e-5)
    with pytest.raises(LslmError, match="block_size"):
        model(torch.zeros(1, 8, dtype=torch.long), cache=cache)  # 9 cached + 8 > 16


def test_features_feed_the_lm_head(tiny_config):
    model = GPT(tiny_config(30)).eval()
    idx = torch.randint(0, 30, (2, 10))
    hidden, attention = model.features(idx)
    assert hidden.shape == (2, 10, model.config.n_embd) and attention is None
    assert torch.allclose(model.lm_head(hidden), model(idx)[0])
    _, attention = model.features(idx, return_attention=True)
    assert len(attention) == model.config.n_layer and attention[0].shape == (2, 2, 10, 10)


def test_gelu_approx_is_gpt2s_tanh_gelu(tiny_config):
    import torch.nn.functional as F

    with pytest.raises(LslmError, match="gelu_approx"):
        tiny_config(30, gelu_approx="fast")
    exact, tanh = GPT(tiny_config(30)), GPT(tiny_config(30, gelu_approx="tanh"))
    tanh.load_state_dict(exact.state_dict())
    x = torch.randn(1, 3, exact.config.n_embd)
    mlp = tanh.blocks[0].mlp
    by_hand = mlp.c_proj(0.5 * mlp.c_fc(x) * (1 + torch.tanh((2 / torch.pi) ** 0.5 * (mlp.c_fc(x) + 0.044715 * mlp.c_fc(x) ** 3))))
    assert torch.allclose(mlp(x), by_hand, atol=1e-6)
    assert not torch.equal(exact.blocks[0].mlp(x), mlp(x))
    assert GPTConfig.from_dict({"vocab_size": 5}).gelu_approx == "none"  # old checkpoints load


def test_residual_sublayer_is_x_plus_dropout_of_sublayer_of_norm():
    import torch.nn.functional as F

    from lslm.attention import CausalSelfAttention
    from lslm.model import MLP, LayerNorm, Residual

    norm, mlp, residual = LayerNorm(16, bias=True), MLP(16, 64), Residual(0.3)
    with torch.no_grad():
        norm.weight.uniform_(0.5, 1.5)
        norm.bias.normal_()
    x = torch.randn(2, 5, 16)
    torch.manual_seed(1)
    got = residual.train()(x, norm, mlp)
    torch.manual_seed(1)
    assert torch.equal(got, x + F.dropout(mlp(norm(x)), 0.3, training=True))
    assert torch.equal(residual.eval()(x, norm, mlp), x + mlp(norm(x)))
    # A sublayer that returns (output, weights), as attention does, hands its weights on.
    attn = CausalSelfAttention(16, 2).eval()
    y, weights = residual(x, norm, attn, return_weights=True)
    a, expected = attn(norm(x), return_weights=True)
    assert torch.equal(y, x + a) and torch.equal(weights, expected)


def test_block_drops_out_where_it_always_did():
    """Attention dropout inside, then residual dropout on each sublayer's output: the same
    random draws, in the same order, as the block written out."""
    import torch.nn.functional as F

    from lslm.model import Block

    block = Block(GPTConfig(vocab_size=11, block_size=16, n_layer=1, n_head=2, n_embd=16, dropout=0.2))
    block.train()
    x = torch.randn(2, 7, 16)
    torch.manual_seed(3)
    got, _ = block(x)
    torch.manual_seed(3)
    a, _ = block.attn(block.ln_1(x))
    h = x + F.dropout(a, 0.2)
    assert torch.equal(got, h + F.dropout(block.mlp(block.ln_2(h)), 0.2))


def test_a_seed_gives_the_same_weights_and_leaves_the_global_rng_alone(tiny_config):
    cfg = tiny_config(30)
    before = torch.random.get_rng_state()
    a, b, c = GPT(cfg, seed=5), GPT(cfg, seed=5), GPT(cfg, seed=6)
    assert torch.equal(torch.random.get_rng_state(), before)
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))
    assert not torch.equal(a.wte.weight, c.wte.weight)
    assert a.lm_head.weight is a.wte.weight
    # Without a seed the model draws from the global generator, as torch.manual_seed(5) set it.
    torch.manual_seed(5)
    d = GPT(cfg)
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), d.state_dict().values()))
    assert not torch.equal(torch.random.get_rng_state(), before)


def test_initialisation_is_gpt2s_and_shared():
    from lslm.model import init_weights
    from lslm.seq2seq import Seq2Seq

    assert not hasattr(GPT, "_init_weights") and not hasattr(GPT, "from_pretrained")
    assert GPT.num_params is Seq2Seq.num_params  # one implementation
    model = GPT(GPTConfig(vocab_size=64, block_size=64, n_layer=4, n_head=4, n_embd=128), seed=0)
    std = {name: p.std().item() for name, p in model.named_parameters() if p.dim() == 2}
    assert abs(std["wte.weight"] - 0.02) < 0.001 and abs(std["blocks.0.attn.c_attn.weight"] - 0.02) < 0.001
    # The layers that write into the residual stream start smaller: 0.02 / sqrt(2 * n_layer).
    assert abs(std["blocks.3.mlp.c_proj.weight"] - 0.02 / 8 ** 0.5) < 0.0005
    assert all(p.abs().sum() == 0 for name, p in model.named_parameters() if name.endswith("c_fc.bias"))
    init_weights(model, n_blocks=8)
    assert abs(model.blocks[0].attn.c_proj.weight.std().item() - 0.02 / 4) < 0.0005


def test_seeded_initial_weights_stay_what_they_were():
    """Stored notebook results come from seeded models: a change to how the model is built
    that moves its initial weights shows up here first. (Seq2Seq's seeding is tested in
    tests/test_seq2seq.py; notebook 08 is re-run whenever its initial weights change.)"""
    gpt = GPT(GPTConfig(vocab_size=11, block_size=16, n_layer=2, n_head=2, n_embd=16), seed=0)
    got = [gpt.wte.weight[0, :3].tolist(), gpt.blocks[1].mlp.c_proj.weight[0, :2].tolist()]
    expected = [0.0071779, 0.007819, 0.0150499, -0.0033307, 0.0079011]
    assert torch.allclose(torch.tensor(sum(got, [])), torch.tensor(expected), atol=1e-6)


# ------------------------------------------------------ argument checks (issue 14)
@pytest.mark.parametrize("change", [
    {"bias": "no"}, {"bias": 1}, {"n_layer": 2.0}, {"n_layer": True}, {"n_embd": "16"},
    {"vocab_size": None}, {"dropout": float("nan")}, {"dropout": 1.0}, {"dropout": -0.1},
    {"dropout": "0.1"}, {"dropout": True}, {"gelu_approx": ["tanh"]}, {"block_size": 2**40},
])
def test_config_checks_types_not_only_values(change):
    cfg = {**dict(vocab_size=11, block_size=16, n_layer=2, n_head=2, n_embd=16), **change}
    with pytest.raises(LslmError) as err:
        GPTConfig(**cfg)
    assert "\n" not in str(err.value)


def test_config_takes_numpy_numbers_and_stores_plain_ones():
    import json

    import numpy as np

    cfg = GPTConfig(vocab_size=np.int64(11), n_layer=np.int32(2), dropout=np.float32(0.25))
    assert type(cfg.vocab_size) is int and type(cfg.dropout) is float
    json.dumps(cfg.to_dict())


@pytest.mark.parametrize("prompt, kwargs, message", [
    (torch.zeros(1, 0, dtype=torch.long), {}, "no tokens"),
    (torch.zeros(0, 3, dtype=torch.long), {}, "no tokens"),
    (torch.tensor([[1, 11]]), {}, "0..10"),
    (torch.tensor([[-1, 2]]), {}, "0..10"),
    (torch.zeros(1, 2), {}, "float32"),
    (torch.zeros(1, 2, 2, dtype=torch.long), {}, "3-D"),
    ([[1, 2]], {}, "list"),
    (torch.tensor([[1]]), {"max_new_tokens": -1}, "max_new_tokens"),
    (torch.tensor([[1]]), {"max_new_tokens": 2.5}, "max_new_tokens"),
    (torch.tensor([[1]]), {"temperature": float("nan")}, "temperature"),
    (torch.tensor([[1]]), {"temperature": float("inf")}, "temperature"),
    (torch.tensor([[1]]), {"temperature": "hot"}, "temperature"),
    (torch.tensor([[1]]), {"top_k": 0}, "top_k"),
    (torch.tensor([[1]]), {"top_k": 1.5}, "top_k"),
    (torch.tensor([[1]]), {"top_p": float("nan")}, "top_p"),
    (torch.tensor([[1]]), {"top_p": 0.0}, "top_p"),
    (torch.tensor([[1]]), {"seed": -1}, "seed"),
    (torch.tensor([[1]]), {"seed": 2**64}, "seed"),
    (torch.tensor([[1]]), {"use_cache": "yes"}, "use_cache"),
    (torch.tensor([[1]]), {"stop_ids": [11]}, "stop_ids"),
    (torch.tensor([[1]]), {"stop_ids": 3}, "stop_ids"),
    (torch.tensor([[1]]), {"stop_ids": ["a"]}, "stop_ids"),
])
def test_generate_refuses_bad_arguments_with_one_line(prompt, kwargs, message):
    model = tiny()
    with pytest.raises(LslmError, match=message) as err:
        model.generate(prompt, **{"max_new_tokens": 2, **kwargs})
    assert "\n" not in str(err.value)


def test_generate_takes_a_1d_prompt_as_one_sequence():
    model = tiny()
    flat = model.generate(torch.tensor([1, 2, 3]), 4, temperature=0)
    batched = model.generate(torch.tensor([[1, 2, 3]]), 4, temperature=0)
    assert flat.shape == (7,) and torch.equal(flat, batched[0])
    assert model.generate(torch.tensor([1], dtype=torch.int32), 0).dtype == torch.long


def test_forward_refuses_mismatched_targets_and_ids_outside_the_vocabulary():
    model = tiny()
    x = torch.randint(0, 11, (2, 5))
    for targets, message in ((x[:, :4], "shaped like the input"), (x.float(), "int64"),
                             (torch.full_like(x, 11), "target ids must be in 0..10"),
                             (torch.full_like(x, -5), "target ids must be in 0..10")):
        with pytest.raises(LslmError, match=message) as err:
            model(x, targets)
        assert "\n" not in str(err.value)
    with pytest.raises(LslmError, match="token ids must be in 0..10"):
        model(torch.full_like(x, 11))
    with pytest.raises(LslmError, match="batch"):
        model(x[0])
    assert model(x, x)[1].isfinite()  # the ordinary call still works
