"""Measuring generated text: n-gram diversity, loops, and the model's own perplexity."""

import math

import pytest
import torch
import torch.nn.functional as F

from lslm.errors import LslmError
from lslm.generate import compare_methods, distinct_n, repeated_share, sample_perplexity
from lslm.model import GPT


def test_distinct_and_repeated_by_hand():
    assert distinct_n(["a b a b"], 2) == pytest.approx(2 / 3)  # (a b), (b a), (a b)
    assert distinct_n(["a b c", "a b d"], 1) == pytest.approx(4 / 6)
    assert distinct_n(["word"], 2) == 0.0  # no bigrams at all
    assert repeated_share("the cat the cat the cat", 2) == pytest.approx(3 / 5)
    assert repeated_share("one two three four", 2) == 0.0
    with pytest.raises(LslmError):
        distinct_n(["a"], 0)


@pytest.mark.parametrize("length", [10, 45])  # inside one block, and longer than block_size 16
def test_sample_perplexity_matches_a_slow_loop(tiny_config, length):
    torch.manual_seed(0)
    model = GPT(tiny_config(20, block_size=16)).eval()
    tokens = torch.randint(0, 20, (2, length))
    slow = []
    for t in range(3, length):  # each token scored with up to block_size tokens before it
        ctx = tokens[:, max(0, t - 16) : t]
        logp = F.log_softmax(model(ctx)[0][:, -1], dim=-1)
        slow.append(logp.gather(-1, tokens[:, t : t + 1]))
    by_hand = math.exp(-torch.cat(slow).mean().item())
    fast = sample_perplexity(model, tokens, prompt_len=3)
    if length <= 17:
        assert fast == pytest.approx(by_hand, rel=1e-5)
    else:  # long samples are scored with at least half a block of context, so close, not equal
        assert fast == pytest.approx(by_hand, rel=0.05)
    with pytest.raises(LslmError, match="prompt_len"):
        sample_perplexity(model, tokens, prompt_len=0)


def test_greedy_repeats_more_and_surprises_less_than_hot_sampling(char_data, tiny_config):
    from lslm.train import TrainConfig, Trainer

    tok, data = char_data
    torch.manual_seed(0)
    model = GPT(tiny_config(tok.vocab_size, block_size=32, n_embd=48))
    Trainer(model, tok, data, TrainConfig(max_iters=150, eval_interval=0, progress=False,
                                          batch_size=16, warmup_iters=10)).fit()
    rows = {r["method"]: r for r in compare_methods(
        model.eval(), tok, "Twinkle", {"greedy": {"temperature": 0.0}, "hot": {"temperature": 2.0}},
        num_samples=4, length=120)}
    greedy, hot = rows["greedy"], rows["hot"]
    assert len(set(greedy["samples"])) == 1  # greedy has no randomness
    assert greedy["perplexity"] < hot["perplexity"] / 2
    assert greedy["distinct_2"] < hot["distinct_2"]
