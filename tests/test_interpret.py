"""lslm.interpret: the logit lens, head ablation, the induction probe, steering, paired prompts."""

import pytest
import torch

from lslm.errors import LslmError
from lslm.interpret import (
    ablate_heads,
    attention_maps,
    continuation_logprob,
    head_ablation_effect,
    induction_probe,
    induction_stripe,
    logit_lens,
    mean_loss,
    paired_prompt_probe,
    repeated_random_tokens,
    residual_stream,
    steer,
    steering_vector,
    token_losses,
    train_on_repeats,
)
from lslm.model import GPT, GPTConfig
from lslm.tokenizers.char import CharTokenizer


def small_gpt(seed: int = 0, **kw) -> GPT:
    torch.manual_seed(seed)
    config = dict(vocab_size=20, block_size=16, n_layer=2, n_head=4, n_embd=32, bias=False)
    config.update(kw)
    model = GPT(GPTConfig(**config)).eval()
    # Give the biases-free model some non-trivial weights, so heads differ and matter.
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model


@pytest.fixture(scope="module")
def model() -> GPT:
    return small_gpt()


@pytest.fixture(scope="module")
def idx() -> torch.Tensor:
    return torch.randint(0, 20, (3, 12), generator=torch.Generator().manual_seed(1))


def test_logit_lens_last_layer_is_the_models_output(model, idx):
    logits = model(idx)[0]
    lens_logits = logit_lens(model, idx, as_logits=True)
    assert lens_logits.shape == (3, 3, 12, 20)  # n_layer + 1 readings
    assert torch.equal(lens_logits[-1], logits)
    probs = logit_lens(model, idx)
    torch.testing.assert_close(probs[-1], torch.softmax(logits, dim=-1))
    torch.testing.assert_close(probs.sum(-1), torch.ones(3, 3, 12))
    # Row 0 reads the embeddings themselves: it must not be the final answer.
    assert not torch.allclose(probs[0], probs[-1], atol=1e-3)


def test_residual_stream_starts_with_the_embeddings(model, idx):
    stream = residual_stream(model, idx)
    assert stream.shape == (3, 3, 12, 32)
    emb = model.wte(idx) + model.wpe(torch.arange(12))
    torch.testing.assert_close(stream[0], emb)
    x, _ = model.blocks[0](emb)
    torch.testing.assert_close(stream[1], x)
    assert not any(m._forward_pre_hooks for m in model.modules())  # all hooks removed


def test_no_heads_ablated_changes_nothing_and_one_head_does(model, idx):
    base = model(idx)[0]
    with ablate_heads(model, []):
        assert torch.equal(model(idx)[0], base)
    with ablate_heads(model, [(1, 2)]):
        ablated = model(idx)[0]
    assert (ablated - base).abs().max() > 1e-4
    # The hook is gone after the block: the model is back to normal.
    assert torch.equal(model(idx)[0], base)
    assert not model.blocks[1].attn.c_proj._forward_pre_hooks


def test_ablation_matches_zeroing_the_heads_projection_columns(idx):
    model = small_gpt()
    with ablate_heads(model, [(0, 1)]):
        hooked = model(idx)[0]
    size = 32 // 4
    with torch.no_grad():
        model.blocks[0].attn.c_proj.weight[:, size : 2 * size] = 0.0
    torch.testing.assert_close(model(idx)[0], hooked)


def test_ablation_hook_removed_even_after_an_error(model, idx):
    with pytest.raises(RuntimeError):
        with ablate_heads(model, [(0, 0)]):
            raise RuntimeError("boom")
    assert not any(m._forward_pre_hooks for m in model.modules())


@pytest.mark.parametrize("heads", [[(2, 0)], [(0, 4)], [(-1, 0)], [(0,)], ["a"]])
def test_ablate_bad_heads(model, heads):
    with pytest.raises(LslmError, match="layer, head"):
        with ablate_heads(model, heads):
            pass


def test_head_ablation_effect(model, idx):
    effect = head_ablation_effect(model, idx)
    assert effect.shape == (2, 4)
    assert effect.abs().max() > 1e-4
    with ablate_heads(model, [(1, 3)]):
        expected = mean_loss(model, idx)
    assert abs(effect[1, 3].item() - (expected - mean_loss(model, idx))) < 1e-5


def test_token_losses_match_the_models_loss(model, idx):
    _, loss = model(idx[:, :-1], idx[:, 1:])
    assert token_losses(model, idx).shape == (3, 11)
    assert abs(mean_loss(model, idx) - loss.item()) < 1e-5
    with pytest.raises(LslmError, match="at least 2"):
        token_losses(model, idx[:, :1])


def test_steer_scale_zero_is_identity_and_hooks_go_away(model, idx):
    base = model(idx)[0]
    v = torch.randn(32)
    with steer(model, 1, v, scale=0.0):
        assert torch.equal(model(idx)[0], base)
    with steer(model, 1, v, scale=3.0):
        steered = model(idx)[0]
        stream = residual_stream(model, idx)
    assert (steered - base).abs().max() > 1e-3
    assert torch.equal(model(idx)[0], base)
    # It adds exactly scale * v to what block 1 reads.
    torch.testing.assert_close(stream[1], residual_stream(model, idx)[1] + 3.0 * v)


def test_steer_last_position_and_generation(model):
    v = torch.zeros(32)
    v[0] = 50.0
    prompt = torch.tensor([[1, 2, 3]])
    plain = model.generate(prompt, 5, temperature=0)
    with steer(model, 2, v):  # 2 = n_layer: what the final LayerNorm reads
        pushed = model.generate(prompt, 5, temperature=0)
    assert plain.shape == pushed.shape == (1, 8)
    assert not torch.equal(plain, pushed)


def test_steer_bad_input(model):
    with pytest.raises(LslmError, match="shape"):
        with steer(model, 0, torch.zeros(5)):
            pass
    with pytest.raises(LslmError, match="from 0 to 2"):
        with steer(model, 3, torch.zeros(32)):
            pass


def test_steering_vector_is_a_mean_difference(model):
    a, b = [[1, 2, 3], [4, 5]], [[6, 7, 8, 9]]
    v = steering_vector(model, a, b, layer=1)
    rows_a = torch.cat([residual_stream(model, p)[1, 0] for p in a])
    expected = rows_a.mean(0) - residual_stream(model, b[0])[1, 0].mean(0)
    torch.testing.assert_close(v, expected)
    assert torch.equal(steering_vector(model, a, a, layer=1), torch.zeros(32))


def test_repeated_random_tokens():
    t = repeated_random_tokens(6, batch=4, vocab_size=10, seed=3)
    assert t.shape == (4, 12)
    assert torch.equal(t[:, :6], t[:, 6:])
    assert all(len(set(row[:6].tolist())) == 6 for row in t)  # no repeats within a half
    assert torch.equal(t, repeated_random_tokens(6, batch=4, vocab_size=10, seed=3))
    only = repeated_random_tokens(4, batch=2, token_ids=[7, 8, 9, 11, 12], seed=0)
    assert set(only.flatten().tolist()) <= {7, 8, 9, 11, 12}
    with pytest.raises(LslmError, match="vocab_size or token_ids"):
        repeated_random_tokens(4)


def test_induction_stripe_reads_the_right_cells():
    n = 4
    att = torch.zeros(2 * n, 2 * n)
    for t in range(n, 2 * n):
        att[t, t - n + 1] = 1.0
    assert induction_stripe(att, n).item() == 1.0
    assert induction_stripe(torch.eye(2 * n), n).item() == 0.0


def test_induction_probe_on_a_model_trained_to_copy():
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=26, block_size=16, n_layer=2, n_head=4, n_embd=64, bias=False))
    untrained = induction_probe(model, n=8, batch=32)
    losses, snaps = train_on_repeats(model, n=8, steps=150, lr=1e-2, keep=(0, 150))
    trained = induction_probe(model, n=8, batch=32)
    # Untrained: both halves are about a uniform guess. Trained: the repeat is copied.
    assert abs(untrained.copy_gain) < 0.3
    assert trained.copy_gain > 1.0, (trained.first_half_loss, trained.second_half_loss)
    assert trained.head_scores.max() > 0.3  # some head attends along the stripe
    assert untrained.head_scores.max() < 0.3
    assert trained.loss_by_position.shape == (15,)
    assert trained.attention.shape == (2, 4, 16, 16)
    assert set(snaps) == {0, 150} and len(losses) == 150
    assert not torch.equal(snaps[0]["wte.weight"], snaps[150]["wte.weight"])
    with pytest.raises(LslmError, match="block_size"):
        induction_probe(model, n=9)
    # The notebook's exercise: the head with the highest stripe score.
    from lslm.checks import check

    best = int(trained.head_scores.argmax())
    assert check("copy_head", (best // 4, best % 4), model=model, n=8)
    assert not check("copy_head", (best // 4, (best + 1) % 4), model=model, n=8)


def test_attention_maps_shape(model, idx):
    maps = attention_maps(model, idx)
    assert maps.shape == (2, 3, 4, 12, 12)
    torch.testing.assert_close(maps.sum(-1), torch.ones(2, 3, 4, 12))


def test_paired_prompt_probe():
    tok = CharTokenizer(list("abcdefghijklmnopqrst"))
    model = small_gpt()
    same = paired_prompt_probe(model, tok, [("abc", "abc")], ["de", "f"])
    assert torch.equal(same, torch.zeros(1, 2))
    gaps = paired_prompt_probe(model, tok, [("abc", "abd")], ["ef"])
    expected = continuation_logprob(model, tok, "abc", "ef") - continuation_logprob(model, tok, "abd", "ef")
    assert abs(gaps[0, 0].item() - expected) < 1e-5
    # ln p(c | prompt) is the sum over c's tokens, so it is at most 0 and adds up.
    lp_e = continuation_logprob(model, tok, "abc", "e")
    lp_ef = continuation_logprob(model, tok, "abc", "ef")
    assert lp_ef < lp_e < 0
    with torch.no_grad():
        logits = model(torch.tensor([tok.encode("abce")]))[0][0]
    by_hand = (torch.log_softmax(logits[2], -1)[tok.encode("e")[0]]
               + torch.log_softmax(logits[3], -1)[tok.encode("f")[0]])
    assert abs(lp_ef - by_hand.item()) < 1e-5
    # A long prompt is cropped to fit the block.
    assert continuation_logprob(model, tok, "abcd" * 10, "e") < 0
    with pytest.raises(LslmError, match="at least one token"):
        continuation_logprob(model, tok, "", "e")
