"""Exposure, extraction, deduplication and DP-SGD (lslm.privacy), each against a slow,
written-out version on a tiny model."""

import math

import pytest
import torch

from lslm.errors import LslmError
from lslm.model import GPT, GPTConfig
from lslm.privacy import (Canary, DPConfig, DPTrainLoop, deduplicate, dp_gradient, exposure,
                          exposure_by_ranking, extract, per_example_grads, text_logprobs)
from lslm.loop import TrainConfig
from lslm.tokenizers import train_tokenizer

TEXT = "Mia's secret number is 42. Tom likes red kites. " * 20 + "0123456789 " * 5


@pytest.fixture(scope="module")
def tok():
    return train_tokenizer("char", TEXT)


def tiny(vocab: int, seed: int = 0) -> GPT:
    return GPT(GPTConfig(vocab_size=vocab, block_size=48, n_layer=1, n_head=2, n_embd=16), seed=seed).eval()


def _loss(net, batch):
    return net(*batch)[1]


def test_exposure_ranks_all_candidates_like_the_written_out_ranking(tok):
    model = tiny(tok.vocab_size)
    canary = Canary("Mia's secret number is ", "42")
    fast = exposure(model, tok, canary)
    assert fast.exact and fast.space == 100
    assert fast.exposure == pytest.approx(exposure_by_ranking(model, tok, canary), abs=1e-9)
    assert fast.exposure == pytest.approx(math.log2(100) - math.log2(fast.rank))


def test_text_logprobs_matches_one_text_at_a_time(tok):
    model = tiny(tok.vocab_size, seed=3)
    texts = ["Tom likes red kites.", "Mia's secret number is 42.", "red"]
    batched = text_logprobs(model, tok, texts, batch_size=2)
    for t, got in zip(texts, batched):
        ids = tok.encode(t)
        with torch.no_grad():
            logits, _ = model(torch.tensor([ids]))
        logp = torch.log_softmax(logits[0].double(), -1)
        want = sum(logp[i, ids[i + 1]].item() for i in range(len(ids) - 1))
        assert got.item() == pytest.approx(want, abs=1e-6)


def test_a_memorized_secret_has_the_highest_exposure_and_is_extracted(tok):
    torch.manual_seed(0)
    model = tiny(tok.vocab_size)
    canary = Canary("Mia's secret number is ", "42")
    ids = torch.tensor([tok.encode(canary.text)])
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    before = exposure(model, tok, canary).exposure
    model.train()
    for _ in range(150):
        loss = model(ids[:, :-1], ids[:, 1:])[1]
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    after = exposure(model, tok, canary)
    assert after.rank == 1 and after.exposure == pytest.approx(math.log2(100))
    assert after.exposure > before + 2
    assert extract(model, tok, canary) == "42"


def test_a_space_too_large_to_rank_is_estimated_by_sampling_and_says_so(tok):
    model = tiny(tok.vocab_size)
    canary = Canary("Mia's secret number is ", "4242424242")  # 10^10 candidates
    got = exposure(model, tok, canary, samples=200)
    assert not got.exact and "estimated" in got.method and "max_exact" in got.method
    assert 0 <= got.exposure <= math.log2(canary.space)


@pytest.mark.parametrize("kwargs, message", [
    (dict(prefix="", secret="42"), "prefix"),
    (dict(prefix="Mia's number is ", secret="4a"), "alphabet"),
    (dict(prefix="Mia's number is ", secret=""), "non-empty secret"),
])
def test_a_bad_canary_gets_one_line_saying_what_to_do(kwargs, message):
    with pytest.raises(LslmError, match=message) as e:
        Canary(**kwargs)
    assert "\n" not in str(e.value)


def test_a_canary_longer_than_the_block_is_refused(tok):
    model = tiny(tok.vocab_size)
    with pytest.raises(LslmError, match="block_size"):
        exposure(model, tok, Canary("Tom likes red kites. " * 3, "42"))


def test_deduplicate_keeps_the_first_copy_of_each_paragraph():
    text = "a b\n\nsecret 1\n\nc d\n\nsecret 1\n\nsecret 1\n\ne"
    out, removed = deduplicate(text)
    assert out == "a b\n\nsecret 1\n\nc d\n\ne" and removed == 2
    assert deduplicate(out) == (out, 0)
    with pytest.raises(LslmError):
        deduplicate(["not", "text"])


def _slow_dp_gradient(model, x, y, clip, noise, generator):
    """DP-SGD written out: one backward pass per example, clip, sum, add noise, average."""
    names = [n for n, _ in model.named_parameters()]
    total = {n: torch.zeros_like(p) for n, p in model.named_parameters()}
    for i in range(len(x)):
        model.zero_grad()
        model(x[i:i + 1], y[i:i + 1])[1].backward()
        grads = {n: p.grad.detach().clone() for n, p in model.named_parameters()}
        norm = math.sqrt(sum(g.double().pow(2).sum().item() for g in grads.values()))
        factor = min(1.0, clip / (norm + 1e-12))
        for n in names:
            total[n] += grads[n] * factor
    return {n: (total[n] + noise * clip * torch.randn(total[n].shape, generator=generator)) / len(x) for n in names}


@pytest.mark.parametrize("clip, noise", [(0.05, 0.0), (0.05, 0.7), (1e6, 0.0)])
def test_dp_gradient_equals_one_backward_pass_per_example(tok, clip, noise):
    model = tiny(tok.vocab_size, seed=1).train()
    g = torch.Generator().manual_seed(0)
    x = torch.randint(tok.vocab_size, (4, 12), generator=g)
    y = torch.randint(tok.vocab_size, (4, 12), generator=g)
    fast = dp_gradient(per_example_grads(model, _loss, (x, y)), DPConfig(clip, noise),
                       torch.Generator().manual_seed(5))
    slow = _slow_dp_gradient(model, x, y, clip, noise, torch.Generator().manual_seed(5))
    for name in slow:
        assert torch.allclose(fast[name], slow[name], atol=1e-5), name


def test_without_clipping_or_noise_dp_gradient_is_the_ordinary_batch_gradient(tok):
    model = tiny(tok.vocab_size, seed=2).train()
    x = torch.randint(tok.vocab_size, (3, 10))
    y = torch.randint(tok.vocab_size, (3, 10))
    fast = dp_gradient(per_example_grads(model, _loss, (x, y)), DPConfig(clip=1e9, noise=0.0))
    model.zero_grad()
    model(x, y)[1].backward()
    for name, p in model.named_parameters():
        assert torch.allclose(fast[name], p.grad, atol=1e-6), name


def test_every_clipped_example_moves_the_gradient_by_at_most_clip(tok):
    model = tiny(tok.vocab_size, seed=4).train()
    x = torch.randint(tok.vocab_size, (5, 10))
    per = per_example_grads(model, _loss, (x, x))
    one = {n: g[:1] for n, g in per.items()}
    out = dp_gradient(one, DPConfig(clip=0.01, noise=0.0))
    assert math.sqrt(sum(g.pow(2).sum().item() for g in out.values())) == pytest.approx(0.01, rel=1e-4)


def test_dp_train_loop_trains_and_is_repeatable(tok):
    ids = torch.tensor(tok.encode(TEXT))

    def run():
        model = tiny(tok.vocab_size, seed=0)
        g = torch.Generator().manual_seed(0)

        def batch():
            starts = torch.randint(len(ids) - 17, (4,), generator=g)
            x = torch.stack([ids[s:s + 16] for s in starts])
            return x, torch.stack([ids[s + 1:s + 17] for s in starts])

        cfg = TrainConfig(max_iters=30, lr=1e-2, warmup_iters=3, eval_interval=0)
        loop = DPTrainLoop(model, _loss, batch, cfg, DPConfig(clip=1.0, noise=0.1), seed=0)
        loop.fit()
        return loop.history["train_loss"]

    a, b = run(), run()
    assert a == b
    assert sum(a[-5:]) / 5 < sum(a[:5]) / 5


def test_dp_train_loop_refuses_gradient_accumulation(tok):
    with pytest.raises(LslmError, match="grad_accum"):
        DPTrainLoop(tiny(tok.vocab_size), _loss, lambda: None, TrainConfig(grad_accum=2), DPConfig())


@pytest.mark.parametrize("kwargs", [dict(clip=0.0), dict(clip=-1.0), dict(noise=-0.1), dict(clip="1")])
def test_bad_dp_settings_are_refused(kwargs):
    with pytest.raises(LslmError):
        DPConfig(**kwargs)


@pytest.mark.parametrize("position", ["learned", "rope"])
def test_text_logprobs_reads_a_shared_prefix_once_with_the_same_result(tok, position):
    model = GPT(GPTConfig(vocab_size=tok.vocab_size, block_size=48, n_layer=2, n_head=2, n_embd=16,
                          position=position), seed=5).eval()
    texts = [f"Mia's secret number is {d}{e}." for d in "0123" for e in "789"] + ["Mia's secret number is 4."]
    shared = text_logprobs(model, tok, texts)
    one_by_one = torch.cat([text_logprobs(model, tok, [t]) for t in texts])  # no prefix to share
    assert torch.allclose(shared, one_by_one, atol=1e-6)
