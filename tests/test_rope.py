"""RoPE (rotary position embedding): the rotation against a slow written-out version and
against Hugging Face's Llama, its relative-position property, and a GPT that uses it."""

import math

import pytest
import torch

from lslm.attention import apply_rope
from lslm.errors import LslmError
from lslm.model import GPT, GPTConfig, count_params


def slow_rope(x: torch.Tensor, start: int, base: float = 10000.0) -> torch.Tensor:
    """Each position, each pair (i, i + d/2), turned by its own 2x2 rotation matrix."""
    out = torch.empty_like(x, dtype=torch.float64)
    d = x.size(-1)
    for t in range(x.size(-2)):
        for i in range(d // 2):
            theta = (start + t) * base ** (-2 * i / d)
            rot = torch.tensor([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]],
                               dtype=torch.float64)
            pair = torch.stack((x[..., t, i], x[..., t, i + d // 2]), dim=-1).double()
            turned = pair @ rot.T
            out[..., t, i], out[..., t, i + d // 2] = turned[..., 0], turned[..., 1]
    return out


@pytest.mark.parametrize("start", [0, 5])
def test_rope_matches_the_written_out_rotation(start):
    x = torch.randn(2, 3, 7, 8, generator=torch.Generator().manual_seed(start))
    assert torch.allclose(apply_rope(x, start).double(), slow_rope(x, start), atol=1e-5)
    assert torch.allclose(apply_rope(x, start).norm(dim=-1), x.norm(dim=-1), atol=1e-5)  # a rotation


def test_rope_matches_hugging_face_llama():
    llama = pytest.importorskip("transformers.models.llama.modeling_llama")
    q, k = torch.randn(2, 4, 9, 16), torch.randn(2, 4, 9, 16)
    angles = torch.arange(9.0)[:, None] * 10000.0 ** (-torch.arange(0, 16, 2).float() / 16)
    emb = torch.cat((angles, angles), dim=-1)[None]  # Llama's layout: the angles twice
    hf_q, hf_k = llama.apply_rotary_pos_emb(q, k, emb.cos(), emb.sin())
    assert torch.allclose(apply_rope(q), hf_q, atol=1e-5) and torch.allclose(apply_rope(k), hf_k, atol=1e-5)


def test_rope_scores_depend_only_on_the_distance():
    g = torch.Generator().manual_seed(1)
    q, k = torch.randn(1, 1, 1, 32, generator=g), torch.randn(1, 1, 1, 32, generator=g)
    scores = {}
    for m, n in [(3, 1), (10, 8), (40, 38), (5, 5), (9, 9)]:
        scores[(m, n)] = (apply_rope(q, m) * apply_rope(k, n)).sum().item()
    assert scores[(3, 1)] == pytest.approx(scores[(10, 8)], abs=1e-4) == pytest.approx(scores[(40, 38)], abs=1e-4)
    assert scores[(5, 5)] == pytest.approx((q * k).sum().item(), abs=1e-4)  # distance 0: no turn at all
    assert scores[(3, 1)] != pytest.approx(scores[(5, 5)], abs=1e-3)


def rope_gpt(**kw) -> GPT:
    cfg = dict(vocab_size=13, block_size=16, n_layer=2, n_head=2, n_embd=16, position="rope")
    return GPT(GPTConfig(**{**cfg, **kw}), seed=0).eval()


def test_a_rope_gpt_has_no_position_embedding_and_counts_right():
    model = rope_gpt()
    assert not hasattr(model, "wpe")
    assert model.num_params() == count_params(model.config)
    learned = GPTConfig(vocab_size=13, block_size=16, n_layer=2, n_head=2, n_embd=16)
    assert count_params(learned) - count_params(model.config) == 16 * 16


def test_a_rope_gpt_never_looks_ahead_and_its_cache_changes_nothing():
    model = rope_gpt()
    x = torch.randint(0, 13, (2, 12), generator=torch.Generator().manual_seed(0))
    y = x.clone()
    y[:, 8:] = (y[:, 8:] + 1) % 13
    assert torch.allclose(model(x)[0][:, :8], model(y)[0][:, :8], atol=1e-6)
    # Positions matter: the same tokens in another order give other logits at the end.
    assert not torch.allclose(model(x)[0][:, -1], model(x.flip(1))[0][:, -1], atol=1e-4)
    prompt = x[:, :3]
    with_cache = model.generate(prompt, 20, temperature=0, use_cache=True)  # slides past block_size
    without = model.generate(prompt, 20, temperature=0, use_cache=False)
    assert torch.equal(with_cache, without)


@pytest.mark.parametrize("kw, words", [(dict(position="alibi"), 'position must be "learned" or "rope"'),
                                       (dict(n_embd=18, n_head=6), "must be even")])
def test_bad_position_settings_are_one_line(kw, words):
    with pytest.raises(LslmError, match=words) as err:
        GPTConfig(**{"vocab_size": 5, "position": "rope", **kw})
    assert "\n" not in str(err.value)


def test_lslm_train_makes_a_rope_model_and_resume_keeps_it(tmp_path, capsys):
    from lslm.checkpoint import load_model
    from lslm.cli import main

    out = tmp_path / "run"
    small = ["--n-layer", "1", "--n-head", "2", "--n-embd", "16", "--block-size", "16", "--batch-size", "2",
             "--eval-interval", "0", "--no-progress"]
    assert main(["train", "--out", str(out), "--position", "rope", "--max-iters", "2", *small]) == 0
    model, _ = load_model(out)
    assert model.config.position == "rope" and not hasattr(model, "wpe")
    assert main(["train", "--out", str(out), "--resume", "--position", "learned", "--max-iters", "3"]) != 0
    assert "--position" in capsys.readouterr().err
    assert main(["train", "--out", str(out), "--resume", "--position", "rope", "--max-iters", "3",
                 "--no-progress"]) == 0
