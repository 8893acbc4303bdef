"""lslm.summarize: the faithfulness judge, fact coverage and the baselines, on the story world."""

import random

import pytest

from lslm.errors import LslmError
from lslm.summarize import (TLDR, fact_coverage, faithful_share, is_faithful, lead_sentence,
                            random_sentence, summary_examples, summary_facts, summary_prompt,
                            summary_response, swap_names)
from lslm.tasks.metrics import rouge_l
from lslm.world import stories

STORIES = stories(300, seed=11)


def test_every_true_summary_is_faithful_and_covers_all_its_facts():
    for s in STORIES:
        assert is_faithful(s.summary, s), s.summary
        assert fact_coverage(s.summary, s) == 1.0


def test_swapping_the_two_names_keeps_rouge_high_but_is_caught():
    for s in STORIES:
        swapped = swap_names(s.summary, s)
        assert rouge_l(swapped, s.summary).fmeasure > 0.8
        false = {f.kind for f in summary_facts(swapped, s) if not f.true}
        assert {"hero", "helper"} <= false, swapped


def test_each_kind_of_false_fact_is_caught():
    s = STORIES[0]
    hero, helper = s.characters
    stranger = next(n for n in ("Zelda", "Ulrich") if n not in (hero.name, helper.name))
    other_place = next(p for p in ("castle", "beach") if p not in s.places)
    edits = {
        "helper": s.summary.replace(helper.name, stranger),
        "place": s.summary.replace(f"the {s.places[0]}", f"the {other_place}"),
        "job": s.summary.replace(f"a {hero.job},", "a clown," if hero.job != "clown" else "a cook,")
        .replace(f"an {hero.job},", "a clown,"),
    }
    for kind, edited in edits.items():
        assert edited != s.summary
        assert kind in {f.kind for f in summary_facts(edited, s) if not f.true}, edited


def test_the_ending_must_match_the_feeling():
    happy = next(s for s in STORIES if s.ending == "happy")
    sad = next(s for s in STORIES if s.ending == "sad")
    assert not is_faithful(happy.summary, sad) or happy.summary == sad.summary
    assert [f for f in summary_facts("In the end she was glad.", sad) if f.kind == "ending"][0].true is False
    assert [f for f in summary_facts("In the end she was glad.", happy) if f.kind == "ending"][0].true


def test_a_summary_that_states_nothing_is_not_faithful():
    s = STORIES[0]
    assert summary_facts("It was a day.", s) == []
    assert not is_faithful("It was a day.", s)
    assert fact_coverage("It was a day.", s) == 0.0


def test_lead_one_is_faithful_but_covers_little():
    leads = [lead_sentence(s) for s in STORIES]
    assert faithful_share(leads, STORIES) > 0.9
    assert sum(map(fact_coverage, leads, STORIES)) / len(STORIES) < 0.4


def test_the_baselines_and_prompt_are_what_they_say():
    s = STORIES[0]
    assert lead_sentence(s) == s.sentences[0]
    assert random_sentence(s, random.Random(0)) in s.sentences
    assert summary_prompt(s) == s.text + TLDR
    assert summary_response(s) == " " + s.summary + "\n"


def test_summary_examples_keep_the_ones_that_fit():
    encode = lambda text: text.split()  # noqa: E731 - one token per word is enough here
    examples = summary_examples(STORIES[:20], encode, 160)
    lengths = [len(summary_prompt(s).split()) + len(summary_response(s).split()) for s in STORIES[:20]]
    assert len(examples) == sum(n <= 161 for n in lengths) > 0


def test_bad_input_gets_one_line_errors():
    s = STORIES[0]
    for call in (lambda: summary_facts(3, s), lambda: summary_facts("x", "a story"),
                 lambda: faithful_share(["a"], []), lambda: summary_prompt("  ")):
        with pytest.raises(LslmError) as err:
            call()
        assert "\n" not in str(err.value)
