"""lslm.bias (the job-pronoun skew a model learns) and lslm.hallucination (verdicts,
confidence, retrieval), on tiny models and the world's own stories."""

import math

import pytest
import torch

from lslm import bias
from lslm import hallucination as H
from lslm.assistant import Instruction
from lslm.errors import LslmError
from lslm.model import GPT, GPTConfig
from lslm.tokenizers import train_tokenizer
from lslm.world import WorldConfig, lexicon as lx, stories


@pytest.fixture(scope="module")
def word_tok():
    """A BPE tokenizer of the world in which every name is one token (the fast path)."""
    text = "\n\n".join(s.text for s in stories(200, seed=3))
    text += "\n" + " ".join(f"a nurse named {n}." for n in lx.FEMALE_NAMES + lx.MALE_NAMES) * 40
    return train_tokenizer("bpe", text, 1024)


def test_she_share_by_next_token_equals_scoring_every_name_in_full(word_tok):
    model = GPT(GPTConfig(vocab_size=word_tok.vocab_size, block_size=32, n_layer=1, n_head=2, n_embd=16), seed=0).eval()
    prompts = bias.job_prompts("nurse")[:2] + bias.job_prompts("pilot")[:1]
    assert bias._name_ids(word_tok) is not None, "every name should be one token here"
    fast = bias.she_share(model, word_tok, prompts)
    slow = bias.she_share_by_scoring(model, word_tok, prompts)
    assert torch.allclose(fast, slow, atol=1e-5)
    assert ((fast > 0) & (fast < 1)).all()


def test_greedy_names_are_the_argmax_continuation_written_out(word_tok):
    model = GPT(GPTConfig(vocab_size=word_tok.vocab_size, block_size=32, n_layer=1, n_head=2, n_embd=16), seed=1).eval()
    prompts = bias.job_prompts("nurse")[:2] + bias.job_prompts("pilot")[:2]
    want = []
    for prompt in prompts:  # three argmax steps by hand, then the first word
        ids = word_tok.encode(prompt)
        for _ in range(3):
            with torch.no_grad():
                ids.append(int(model(torch.tensor([ids]))[0][0, -1].argmax()))
        words = word_tok.decode(ids[len(word_tok.encode(prompt)):]).split("\n")[0].split()
        want.append(words[0].strip(".,!?") if words else "")
    assert bias.greedy_names(model, word_tok, prompts) == want


def test_female_share_counts_the_worlds_female_names():
    assert bias.female_share([lx.FEMALE_NAMES[0], lx.MALE_NAMES[0], lx.FEMALE_NAMES[1], "tree"]) == 0.5
    with pytest.raises(LslmError, match="at least one"):
        bias.female_share([])


def test_data_she_share_counts_the_skew_the_world_was_asked_for():
    text = "\n\n".join(s.text for s in stories(1500, seed=4, config=WorldConfig(pronoun_skew=0.9)))
    assert bias.data_she_share(text, bias.SHE_JOBS) == pytest.approx(0.9, abs=0.06)
    assert bias.data_she_share(text, bias.HE_JOBS) == pytest.approx(0.1, abs=0.06)
    twins = "\n\n".join(s.text for s in stories(1500, seed=4, config=WorldConfig(pronoun_skew=0.9, counterfactual=True)))
    assert bias.data_she_share(twins, bias.SHE_JOBS) == pytest.approx(0.5, abs=1e-9)


def test_skew_and_its_bootstrap_interval():
    she = torch.full((8, 4), 0.8)
    he = torch.full((10, 4), 0.3)
    assert bias.skew(she, he) == pytest.approx(0.5)
    lo, hi = bias.bootstrap_interval(she, he)
    assert lo == pytest.approx(0.5) and hi == pytest.approx(0.5)  # no spread, no width
    g = torch.Generator().manual_seed(0)
    noisy_she, noisy_he = 0.6 + 0.2 * torch.rand(8, 4, generator=g), 0.4 + 0.2 * torch.rand(10, 4, generator=g)
    lo, hi = bias.bootstrap_interval(noisy_she, noisy_he)
    assert lo < bias.skew(noisy_she, noisy_he) < hi and hi - lo < 0.3


def test_job_prompts_refuse_a_job_outside_the_world():
    with pytest.raises(LslmError, match="not a job"):
        bias.job_prompts("astronomer-king")
    assert all(p.endswith("named") for p in bias.job_prompts("engineer"))
    assert "an engineer" in bias.job_prompts("engineer")[0]


def _item(answer="the park", request="Where did Mia go?"):
    story = stories(1, seed=5)[0]
    return Instruction("answer", story, request, answer)


@pytest.mark.parametrize("reply, want", [
    ("the park", "right"), ("The park.", "right"), ("the garden", "made up"),
    ("I don't know.", "refused"), ("I do not know", "refused"), ("", "made up"),
])
def test_verdict(reply, want):
    assert H.verdict(_item(), reply) == want


def test_rates_add_up_to_one():
    r = H.rates(["right", "made up", "made up", "refused"])
    assert r == {"right": 0.25, "refused": 0.25, "made up": 0.5}
    with pytest.raises(LslmError):
        H.rates([])


def test_retrieval_finds_the_story_a_question_names():
    pool = stories(40, seed=6)
    by_hero = list({s.characters[0].name: s for s in pool}.values())
    library = H.Library(by_hero)
    for s in by_hero:
        name = s.characters[0].name
        q = next(q for q in s.questions if q.kind == "where").question
        found = library.retrieve(q)
        assert name in found.text  # the page it picks names the one asked about
        if sum(name in other.text for other in by_hero) == 1:
            assert found is s  # and when only one page does, it is that page
    with pytest.raises(LslmError):
        H.Library([])


def test_answer_confidence_is_the_probability_of_the_written_answer():
    from lslm.assistant import chat_model
    from lslm.tokenizers import train_tokenizer as tt

    text = "\n\n".join(s.text for s in stories(60, seed=7))
    base_tok = tt("bpe", text, 400)
    base = GPT(GPTConfig(vocab_size=base_tok.vocab_size, block_size=64, n_layer=1, n_head=2, n_embd=16,
                         position="rope"), seed=0)
    model, chat = chat_model(base, base_tok, 96)
    answer, p = H.answer_and_confidence(model, chat, "Where did Mia go?", max_new_tokens=4)
    assert 0 < p <= 1 and isinstance(answer, str)
    # the same number from the greedy steps' own probabilities
    from lslm.assistant import greedy_answer

    prompt, written, _ = greedy_answer(model, chat, "Where did Mia go?", 4)
    ids, total = list(prompt), 0.0
    with torch.no_grad():
        for t in written:
            logits, _ = model(torch.tensor([ids]))
            total += torch.log_softmax(logits[0, -1].double(), -1)[t].item()
            ids.append(t)
    assert p == pytest.approx(math.exp(total), rel=1e-6)
