"""Text summarization on the story world, judged by the world's own truth.

Every story of ``lslm.world`` comes with its true two-sentence summary, so a summarizer can be
scored two ways:

* **ROUGE** (``lslm.tasks.metrics.rouge``): how many words and word sequences the summary
  shares with the true one. Cheap and standard, but blind to meaning: swap two names and the
  score barely moves.
* **Faithfulness** (``summary_facts``, ``is_faithful``): each fact the summary states, checked
  against what is true of the story: the characters it names and their roles, the job it
  gives the hero, the place, the thing, and how the story ended. ``fact_coverage`` is the
  other side: how many of the true summary's facts a summary gets right.

The prompt is GPT-2's trick (Radford et al. 2019, section 3.6): the story, then "TL;DR:",
and the model's continuation is its summary. The baselines are the first sentence (lead-1) and
a random sentence of the story.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from typing import Sequence

from lslm.errors import LslmError
from lslm.finetune import Example, encode_example
from lslm.world import Story
from lslm.world import lexicon as lx

TLDR = "\nTL;DR:"  # what follows the story in the prompt; the summary starts after it

_NAMES = frozenset(lx.FEMALE_NAMES + lx.MALE_NAMES)
_JOBS = frozenset(lx.JOBS)
_PLACES = frozenset(p.name for p in lx.PLACES)
_THINGS = frozenset(noun for kind in lx.KINDS.values() for noun in kind.nouns)
_GOOD, _BAD = frozenset(lx.GOOD_FEELINGS), frozenset(lx.BAD_FEELINGS)
_WORD = re.compile(r"[A-Za-z]+")
_HELPER = re.compile(r"\b([A-Z][a-z]+) (?:helped|tried to help)\b")
_HERO_JOB = re.compile(r"^\s*([A-Z][a-z]+), an? ([a-z]+),")


def summary_prompt(story: Story | str) -> str:
    """The story followed by "TL;DR:" (the model writes the summary after it)."""
    return _text(story) + TLDR


def summary_response(story: Story) -> str:
    """What a summarizer is trained to write after the prompt: the true summary, one line."""
    return " " + story.summary + "\n"


def summary_examples(stories: Sequence[Story], encode, block_size: int) -> list[Example]:
    """(prompt, true summary) training examples of the stories that fit in ``block_size``
    tokens (a few of the longest stories do not, and are left out)."""
    out = []
    for story in stories:
        try:
            out.append(encode_example(encode, summary_prompt(story), summary_response(story), block_size))
        except LslmError:
            continue
    return out


def lead_sentence(story: Story) -> str:
    """The lead-1 baseline: the story's first sentence."""
    return story.sentences[0]


def random_sentence(story: Story, rng: random.Random) -> str:
    """A baseline that knows nothing: one of the story's sentences at random."""
    return rng.choice(story.sentences)


@dataclass(frozen=True)
class Fact:
    """One claim a summary makes, and whether the story's truth bears it out."""

    kind: str  # hero, helper, name, job, place, thing, ending
    said: str
    true: bool


def summary_facts(summary: str, story: Story) -> list[Fact]:
    """The facts ``summary`` states about ``story``, each checked against the truth.

    A name must be one of the story's characters; the first name is the hero's, and the name
    before "helped" / "tried to help" the helper's; "NAME, a JOB," must be that character's
    job; a place or a thing must be the story's; a good feeling must end a happy story and a
    bad one a sad story.
    """
    if not isinstance(summary, str):
        raise LslmError(f"a summary must be a str, got a {type(summary).__name__}")
    if not isinstance(story, Story):
        raise LslmError("summary_facts needs the lslm.world Story the summary is about")
    hero, helper = story.characters[0], story.characters[1]
    jobs = {c.name: c.job for c in story.characters}
    words = _WORD.findall(summary)
    facts: list[Fact] = []
    names = [w for w in words if w in _NAMES]
    if names:
        facts.append(Fact("hero", names[0], names[0] == hero.name))
    for name in dict.fromkeys(names[1:]):
        if name != hero.name:
            facts.append(Fact("name", name, name in jobs))
    if (m := _HELPER.search(summary)) and m.group(1) in _NAMES:
        facts.append(Fact("helper", m.group(1), m.group(1) == helper.name))
    if (m := _HERO_JOB.match(summary)) and m.group(2) in _JOBS:
        facts.append(Fact("job", f"{m.group(1)}, a {m.group(2)}", jobs.get(m.group(1)) == m.group(2)))
    for w in dict.fromkeys(words):
        if w in _PLACES:
            facts.append(Fact("place", w, w in story.places))
        elif w in _THINGS:
            facts.append(Fact("thing", w, w in story.objects))
        elif w in _GOOD or w in _BAD:
            facts.append(Fact("ending", w, (w in _GOOD) == (story.ending == "happy")))
    return facts


def is_faithful(summary: str, story: Story) -> bool:
    """True when the summary states at least one fact and every fact it states is true."""
    facts = summary_facts(summary, story)
    return bool(facts) and all(f.true for f in facts)


def faithful_share(summaries: Sequence[str], stories: Sequence[Story]) -> float:
    """The share of summaries that are faithful to their stories."""
    if len(summaries) != len(stories) or not summaries:
        raise LslmError(f"got {len(summaries)} summaries for {len(stories)} stories: give one "
                        "summary per story, at least one")
    return sum(is_faithful(s, st) for s, st in zip(summaries, stories)) / len(stories)


def fact_coverage(summary: str, story: Story) -> float:
    """The share of the true summary's facts that ``summary`` states correctly: 1 for the
    true summary, low for one that is faithful but says little (the first sentence)."""
    truth = {(f.kind, f.said) for f in summary_facts(story.summary, story)}
    said = {(f.kind, f.said) for f in summary_facts(summary, story) if f.true}
    return len(truth & said) / len(truth)


def swap_names(summary: str, story: Story) -> str:
    """The summary with the hero's and the helper's names swapped: nearly every word is still
    right, so ROUGE stays high, but it says the wrong one wanted and the wrong one helped."""
    a, b = story.characters[0].name, story.characters[1].name
    return re.sub(rf"\b({a}|{b})\b", lambda m: b if m.group(1) == a else a, summary)


def _text(story: Story | str) -> str:
    if isinstance(story, Story):
        return story.text
    if isinstance(story, str) and story.strip():
        return story
    raise LslmError("give a Story or its text as a non-empty str")
