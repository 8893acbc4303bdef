"""The "check yourself" helper: right answers pass, wrong ones get a hint and no exception."""

import math

import pytest

from lslm.checks import EXERCISES, check
from lslm.errors import LslmError
from lslm.model import GPTConfig


def test_right_answer_passes(capsys):
    assert check("uniform_loss", math.log(65), vocab_size=65)
    assert "Correct" in capsys.readouterr().out


@pytest.mark.parametrize("answer, words", [(None, "Not answered yet"), (65, "too high"), (0.1, "too low"),
                                           ("four", "not a number")])
def test_wrong_or_missing_answers_explain(capsys, answer, words):
    assert not check("uniform_loss", answer, vocab_size=65)
    assert words in capsys.readouterr().out


def test_param_count_is_exact():
    cfg = GPTConfig(vocab_size=65, block_size=64, n_layer=4, n_head=4, n_embd=128, bias=False)
    c, v, b, n = 128, 65, 64, 4
    by_hand = v * c + b * c + n * (2 * c + 12 * c * c) + c
    assert check("param_count", by_hand, config=cfg)
    assert not check("param_count", by_hand + 1, config=cfg)


def test_unknown_exercise_lists_the_known_ones():
    with pytest.raises(LslmError, match="uniform_loss"):
        check("nope", 1)
    assert {"uniform_loss", "param_count"} <= set(EXERCISES)


def test_verdict_shows_nothing_more_in_a_notebook():
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()  # formats a cell's last value as a notebook would
    verdict = check("uniform_loss", 1.0, vocab_size=65)
    assert shell.display_formatter.format(verdict) == ({}, {})
    assert shell.display_formatter.format(True)[0]["text/plain"] == "True"  # a bool would show
    assert not verdict and check("uniform_loss", math.log(65), vocab_size=65)


def test_non_numeric_answers_must_match_exactly(capsys):
    from lslm.checks import exercise

    exercise("_test_words", "Which tokens?", "read them off")(lambda: ["not", "Good"])
    try:
        assert check("_test_words", ("NOT", " good "))  # lists == tuples; case and spaces ignored
        assert not check("_test_words", ["good", "not"])  # order matters
        assert "not it" in capsys.readouterr().out
    finally:
        EXERCISES.pop("_test_words")


def test_every_topic_module_registers_on_import():
    import pkgutil

    import lslm.checks

    # code (how a function is checked), coding (the coding exercises) and solutions are not topics
    topics = [m.name for m in pkgutil.iter_modules(lslm.checks.__path__)
              if m.name not in ("registry", "code", "coding", "solutions")]
    assert "basics" in topics
    solvers = {ex.solve.__module__ for ex in EXERCISES.values()}
    assert {f"lslm.checks.{t}" for t in topics} <= solvers
    assert {ex.cases.__module__ for ex in lslm.checks.CODE_EXERCISES.values()} == {"lslm.checks.coding"}


def test_pronouns_that_disagree_counts_by_the_worlds_reference_rule(capsys):
    from lslm.checks import check

    opening = "Once upon a time, there was a cook named Tom."
    assert EXERCISES["pronouns_that_disagree"].solve(story=opening + " He was happy.") == 0
    assert EXERCISES["pronouns_that_disagree"].solve(story=opening + " She lost her hat.") == 2
    # A pronoun means the most recently named character: after "Mia", "she" is right; in
    # "Tom gave her", "her" means Tom, who was named last, so it is wrong.
    story = opening + " He had a friend named Mia, who was a nurse. She smiled. Tom gave her a hat."
    assert EXERCISES["pronouns_that_disagree"].solve(story=story) == 1
    assert check("pronouns_that_disagree", 1, story=story)
    assert not check("pronouns_that_disagree", 0, story=story)


def test_summarization_exercises_score_the_answers_of_the_library(capsys):
    from lslm.world import stories

    assert EXERCISES["rouge1_recall"].solve(hypothesis="the cat", reference="The cat sat down.") == 0.5
    s = stories(1, seed=3)[0]
    helper = s.characters[1].name
    stranger = next(n for n in ("Zelda", "Ulrich") if n not in {c.name for c in s.characters})
    assert EXERCISES["false_facts"].solve(summary=s.summary, story=s) == 0
    edited = s.summary.replace(helper, stranger)
    assert EXERCISES["false_facts"].solve(summary=edited, story=s) == 2  # a stranger, the wrong helper
    assert check("false_facts", 2, summary=edited, story=s)
    assert not check("false_facts", 1, summary=edited, story=s)


def test_assistant_exercises_agree_with_the_written_out_formulas():
    import math

    assert EXERCISES["lora_parameters"].solve(n_in=256, n_out=768, r=8) == 8 * (256 + 768)
    assert EXERCISES["lora_parameters"].solve(n_in=10, n_out=3, r=2) == 26
    margin = 0.5 * ((-2.0 + 2.5) - (-3.0 + 2.5))
    got = EXERCISES["dpo_loss_of_a_pair"].solve(policy_chosen=-2.0, policy_rejected=-3.0, ref_chosen=-2.5,
                                                ref_rejected=-2.5, beta=0.5)
    assert got == pytest.approx(math.log(1 + math.exp(-margin)), abs=1e-6)


def test_the_kv_cache_exercise_agrees_with_a_real_cache():
    import torch

    from lslm.attention import KVCache
    from lslm.model import GPT, GPTConfig

    config = GPTConfig(vocab_size=20, block_size=16, n_layer=3, n_head=4, n_embd=32, n_kv_head=2, position="rope")
    cache = KVCache(config.n_layer)
    GPT(config, seed=0).eval()(torch.zeros(1, 10, dtype=torch.long), cache=cache)
    measured = sum(t.numel() * t.element_size() for t in cache.keys + cache.values) / 10  # float32: 4 bytes
    assert EXERCISES["kv_cache_bytes"].solve(n_layer=3, n_kv_head=2, head_size=8, bytes_per_number=4) == measured
    # Llama 2 70B (80 layers, 8 key/value heads of 128, bfloat16): 320 KiB per token.
    assert EXERCISES["kv_cache_bytes"].solve(n_layer=80, n_kv_head=8, head_size=128, bytes_per_number=2) == 320 * 1024


def test_the_image_tokens_exercise_agrees_with_the_models_prefix():
    from lslm.vision import pictures
    from lslm.vlm import TinyVLM, vlm_config

    for size, patch in ((32, 8), (32, 4), (32, 16)):
        model = TinyVLM(vlm_config(block_size=80), image_size=size, patch=patch)
        tokens = model.image_tokens(pictures(1, size=size)[0].image[None])
        assert EXERCISES["image_tokens"].solve(image_size=size, patch=patch) == tokens.size(1)
    assert EXERCISES["image_tokens"].solve(image_size=224, patch=14) == 256  # PaliGemma at 224 pixels
    assert not check("image_tokens", 448 // 14, image_size=448, patch=14)  # one side is not the grid
