"""Write stories from a seed, each with its structured truth.

A story is planned first (who, what, where, which obstacle, happy or sad: a list of
events to tell), then rendered through the templates of ``lslm.world.templates``. Keeping
the two apart is what makes the counterfactual twin exact: the twin renders the same plan
with every character swapped for the partner name of the other gender, and the same
random choices of wording.
"""

from __future__ import annotations

import random
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from itertools import islice

from lslm.errors import LslmError, real_number, shown, whole_number
from lslm.world import lexicon as lx
from lslm.world.grammar import (ALL_NOUNS, NAME_GENDER, PARTNER, Character, Event, Reference,
                                Template, article, render)
from lslm.world.templates import QUESTIONS, STORY, SUMMARY

SEPARATOR = "\n\n"  # between stories (and canaries) in a corpus; a story is one line
NOUN_KIND = {n: name for name, kind in lx.KINDS.items() for n in kind.nouns}
GIFTS = tuple(n for kind in lx.KINDS.values() if kind.gift for n in kind.nouns)
PLACE = {p.name: p for p in lx.PLACES}
MAX_HELDOUT = 1000  # per kind of fact: far below the ~8,000 pairs of each


@dataclass
class WorldConfig:
    """Knobs of the story world; every one is off by default.

    ``sad_fraction``: the share of stories that end sadly.
    ``pronoun_skew``: ``None`` (a character's pronoun is "she" half the time whatever the
    job), a number ``s`` in [0, 1] (every job in ``lexicon.STEREOTYPED`` gets its
    stereotyped pronoun with probability ``s``), or ``{"nurse": 0.8, ...}`` (the
    probability of "she" for each job named).
    ``counterfactual``: every story is followed by its twin with all genders swapped, so
    an even number of stories has exactly as many "he" as "she" for every job.
    ``heldout_jobs`` / ``heldout_places``: how many name -> job and object -> place facts
    never appear in ``stories`` (see ``heldout_facts`` and ``heldout_stories``), chosen
    by ``heldout_seed``.
    ``canaries``: ``{"Mia's secret number is 4817.": 5}`` plants each text that many
    times in ``corpus_text``, as its own paragraph; none may be longer than
    ``max_canary_chars`` (a canary must fit in one training block).
    """

    sad_fraction: float = 0.3
    pronoun_skew: float | Mapping[str, float] | None = None
    counterfactual: bool = False
    heldout_jobs: int = 0
    heldout_places: int = 0
    heldout_seed: int = 0
    canaries: Mapping[str, int] | None = None
    max_canary_chars: int = 256

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ``LslmError`` on the first bad value."""
        real_number("sad_fraction", self.sad_fraction, 0, 1)
        skew = self.pronoun_skew
        if isinstance(skew, Mapping):
            for job, p in skew.items():
                if job not in lx.JOBS:
                    raise LslmError(f"pronoun_skew names the job {shown(job)}, which the world "
                                    f"lacks: use jobs from lslm.world.lexicon.JOBS")
                real_number(f"pronoun_skew[{job!r}]", p, 0, 1)
        elif skew is not None:
            if isinstance(skew, (str, bytes)):
                raise LslmError(f"pronoun_skew must be None, a number in [0, 1] or a dict "
                                f"{{job: probability of 'she'}}, got {shown(skew)}")
            real_number("pronoun_skew", skew, 0, 1)
        if not isinstance(self.counterfactual, bool):
            raise LslmError(f"counterfactual must be True or False, got "
                            f"{shown(self.counterfactual)}")
        whole_number("heldout_jobs", self.heldout_jobs, 0, MAX_HELDOUT)
        whole_number("heldout_places", self.heldout_places, 0, MAX_HELDOUT)
        whole_number("heldout_seed", self.heldout_seed)
        limit = whole_number("max_canary_chars", self.max_canary_chars, 1)
        if self.canaries is None:
            return
        if not isinstance(self.canaries, Mapping) or not self.canaries:
            raise LslmError("canaries must be a non-empty dict {canary text: repeats}, "
                            f"got {shown(self.canaries)}")
        for text, repeats in self.canaries.items():
            if not isinstance(text, str) or not text.strip():
                raise LslmError(f"a canary must be a non-empty string, got {shown(text)}")
            if not text.isascii() or not text.isprintable() or text != text.strip():
                raise LslmError(f"canary {shown(text)} must be one line of printable ASCII "
                                "without surrounding spaces")
            if len(text) > limit:
                raise LslmError(f"canary {shown(text)} has {len(text)} characters, more than "
                                f"max_canary_chars={limit}: shorten it or raise max_canary_chars")
            if whole_number(f"repeats of canary {shown(text)}", repeats) < 1:
                raise LslmError(f"canary {shown(text)} repeats {repeats} times: plant it at "
                                "least once, or leave it out")

    def she_probability(self, job: str) -> float:
        skew = self.pronoun_skew
        if skew is None:
            return 0.5
        if isinstance(skew, Mapping):
            return float(skew.get(job, 0.5))
        if job not in lx.STEREOTYPED:
            return 0.5
        return float(skew) if lx.STEREOTYPED[job] == "she" else 1.0 - float(skew)


def _checked(config: WorldConfig | None) -> WorldConfig:
    if config is None:
        return WorldConfig()
    if not isinstance(config, WorldConfig):
        raise LslmError(f"config must be a WorldConfig, got {shown(config)}")
    config.validate()  # again: a field may have been changed since it was made
    return config


# --------------------------------------------------------------------------- truth
@dataclass(frozen=True)
class Question:
    kind: str  # who, where, what, why, job
    question: str
    answer: str  # a span of the story's text


@dataclass
class Story:
    """One story and everything true about it.

    ``events`` holds one ``Event`` per sentence (what ``check_text`` reads back from
    ``text``); ``combination`` is (hero's name, place, goal), the unit ``split`` holds out;
    ``facts`` are ("job", name, job) and ("place", thing, place) world facts it states;
    ``twin`` marks the gender-swapped copy of the story before it.
    """

    text: str
    sentences: list[str]
    events: list[Event]
    summary: str
    questions: list[Question]
    ending: str  # "happy" or "sad"
    characters: list[Character]
    places: list[str]
    objects: list[str]
    animals: list[str]
    combination: tuple[str, str, str]
    facts: frozenset[tuple[str, str, str]]
    twin: bool = False


# --------------------------------------------------------------------------- planning
@dataclass
class _Plan:
    cast: dict[str, Character]
    values: dict[str, str]  # the story's main choices: obj, place, verb, obstacle, ...
    specs: list[tuple[str, dict[str, str], dict[str, str]]] = field(default_factory=list)
    happy: bool = True


def heldout_facts(config: WorldConfig | None = None) -> frozenset[tuple[str, str, str]]:
    """The world facts ``stories`` never states: ("job", name, job) and ("place", thing,
    place). A name's fact comes with its partner's (the counterfactual twin's)."""
    config = _checked(config)
    rng = random.Random(f"heldout:{config.heldout_seed}")
    names, places = sorted(NAME_GENDER), [p.name for p in lx.PLACES]
    facts = set()
    for i in rng.sample(range(len(names) * len(lx.JOBS)), config.heldout_jobs):
        name, job = names[i // len(lx.JOBS)], lx.JOBS[i % len(lx.JOBS)]
        facts |= {("job", name, job), ("job", PARTNER[name], job)}
    for i in rng.sample(range(len(ALL_NOUNS) * len(places)), config.heldout_places):
        facts.add(("place", ALL_NOUNS[i // len(places)], places[i % len(places)]))
    return frozenset(facts)


def _character(rng: random.Random, config: WorldConfig, held: frozenset,
               avoid: set[str]) -> Character:
    while True:  # a held-out pair or a taken name is rare: try again
        job = rng.choice(lx.JOBS)
        gender = "she" if rng.random() < config.she_probability(job) else "he"
        name = rng.choice(lx.FEMALE_NAMES if gender == "she" else lx.MALE_NAMES)
        if name not in avoid and ("job", name, job) not in held:
            return Character(name, gender, job)


def _plan(rng: random.Random, config: WorldConfig, held: frozenset,
          force: tuple[str, str, str] | None = None) -> _Plan:
    if force and force[0] == "job":
        a = Character(force[1], NAME_GENDER[force[1]], force[2])
    else:
        a = _character(rng, config, held, set())
    b = _character(rng, config, held, {a.name})
    obj = force[1] if force and force[0] == "place" else rng.choice(ALL_NOUNS)
    kind = lx.KINDS[NOUN_KIND[obj]]
    place = force[2] if force and force[0] == "place" else rng.choice(lx.PLACES).name
    while ("place", obj, place) in held and not force:
        place = rng.choice(lx.PLACES).name
    verb = rng.choice(kind.verbs)[0]
    v = dict(obj=obj, place=place, verb=verb, obstacle=rng.choice(kind.obstacles),
             when=rng.choice(lx.WHEN), adj=rng.choice(kind.looks),
             good=rng.choice(lx.GOOD_FEELINGS), bad=rng.choice(lx.BAD_FEELINGS))
    plan = _Plan({"A": a, "B": b}, v, happy=rng.random() >= config.sad_fraction)

    def say(kind: str, p: float = 1.0, **extra: str) -> None:
        if p >= 1 or rng.random() < p:
            filt = {"obstacle": v["obstacle"], "mood": "happy" if plan.happy else "sad"}
            sad = kind in ("because", "still_sad") or (kind == "end" and not plan.happy)
            plan.specs.append((kind, filt, {**v, "feeling": v["bad" if sad else "good"], **extra}))

    say("intro", job=a.job)
    say("trait", 0.4, trait=rng.choice(lx.TRAITS))
    say("work", 0.5, job=a.job)
    friend = rng.random() < 0.35
    if friend:
        say("friend", job=b.job)
    say("has")
    say("goal")
    if friend:
        say("go_together")
    else:
        say(rng.choice(("go", "take")))
    where = PLACE[place].kind
    say("scene", 0.5, animal=rng.choice(lx.ANIMALS[where]), look=rng.choice(lx.ANIMAL_LOOKS))
    if not friend:
        say("meet", job=b.job)
    say("admire", 0.3)
    for kind in ("problem", "because", "ask", "reply"):
        say(kind)
    if plan.happy:
        say("fix")
        say("glad")
        if rng.random() < 0.5:
            if verb not in lx.SOLO_VERBS and rng.random() < 0.3:
                say("play_goal")
            else:
                say("play", activity=rng.choice(lx.ACTIVITIES[where]))
        gift = rng.choice(GIFTS)
        if gift != obj:
            say("gift", 0.3, obj2=gift, adj2=rng.choice(lx.KINDS[NOUN_KIND[gift]].looks))
        say("end", job=a.job)
    else:
        say("fail")
        say("still_sad", 0.7)
        say("sorry", 0.5)
        say("end", job=a.job)
    return plan


# -------------------------------------------------------------------------- rendering
_BY_KIND: dict[str, list[Template]] = {}
for _t in STORY + SUMMARY + QUESTIONS:
    _BY_KIND.setdefault(_t.kind, []).append(_t)


def _say(kind: str, filt: dict[str, str], args: dict, ref: Reference,
         rng: random.Random) -> tuple[str, dict[str, str]]:
    options = [t for t in _BY_KIND[kind] if all(filt.get(k) == v for k, v in t.fixed)]
    start = rng.randrange(len(options))
    for i in range(len(options)):  # the first form, from a random start, that the rule allows
        said = render(options[(start + i) % len(options)], args, ref, rng)
        if said is not None:
            return said
    raise AssertionError(f"no template of kind {kind!r} can be said here")  # a grammar bug


def _render(plan: _Plan, cast: dict[str, Character], rng: random.Random, twin: bool) -> Story:
    v = plan.values
    ref, sentences, events, why = Reference(), [], [], ""
    for kind, filt, values in plan.specs:
        text, args = _say(kind, filt, {**values, **cast}, ref, rng)
        sentences.append(text)
        events.append(Event(kind, args))
        if kind == "because":
            why = text[text.index(" because ") + 1 : -1]
    a, b = cast["A"], cast["B"]
    mood = "happy" if plan.happy else "sad"
    both = {**v, **cast, "job": a.job, "feeling": v["good"] if plan.happy else v["bad"]}
    summary, _ = _say("summary", {"obstacle": v["obstacle"], "mood": mood}, both, Reference(), rng)
    asked = {"who": ({"mood": mood}, b.name), "where": ({}, f"the {v['place']}"),
             "what": ({}, f"{article(v['adj'])} {v['obj']}"), "why": ({}, why),
             "job": ({}, article(b.job))}
    questions = [Question(k, _say(k, filt, {**both, "feeling": v["bad"]}, Reference(), rng)[0],
                          answer) for k, (filt, answer) in asked.items()]
    objects = [v["obj"]] + [e.args["obj2"] for e in events if "obj2" in e.args]
    animals = [e.args["animal"] for e in events if "animal" in e.args]
    return Story(
        text=" ".join(sentences), sentences=sentences, events=events, summary=summary,
        questions=questions, ending=mood, characters=[a, b], places=[v["place"]],
        objects=objects, animals=animals,
        combination=(a.name, v["place"], f"{v['verb']} {v['obj']}"),
        facts=frozenset({("job", a.name, a.job), ("job", b.name, b.job),
                         ("place", v["obj"], v["place"])}),
        twin=twin)


def _stream(seed: int, config: WorldConfig, held: frozenset,
            force: list | None = None) -> Iterator[Story]:
    i = 0
    while True:
        rng = random.Random(f"{seed}:{i}")
        plan = _plan(rng, config, held, rng.choice(force) if force else None)
        yield _render(plan, plan.cast, random.Random(f"{seed}:{i}:words"), twin=False)
        if config.counterfactual:  # same plan, same wording choices, every gender swapped
            swapped = {role: c.swapped() for role, c in plan.cast.items()}
            yield _render(plan, swapped, random.Random(f"{seed}:{i}:words"), twin=True)
        i += 1


def iter_stories(seed: int = 0, config: WorldConfig | None = None) -> Iterator[Story]:
    """Stories without end, the same for the same seed and config (see ``stories``)."""
    config = _checked(config)
    return _stream(whole_number("seed", seed), config, heldout_facts(config))


def stories(n: int, seed: int = 0, config: WorldConfig | None = None) -> list[Story]:
    """``n`` stories from ``seed``: the same seed and config always give the same stories.

    None states a held-out fact (``heldout_facts``). With ``config.counterfactual`` every
    other story is the gender-swapped twin of the one before it.
    """
    n = whole_number("n", n, 1)
    return list(islice(iter_stories(seed, config), n))


def heldout_stories(n: int, seed: int = 0, config: WorldConfig | None = None) -> list[Story]:
    """``n`` stories that each state at least one held-out fact: a test set of world facts
    the training stories never saw. Needs ``heldout_jobs`` or ``heldout_places`` > 0."""
    n = whole_number("n", n, 1)
    config = _checked(config)
    held = heldout_facts(config)
    if not held:
        raise LslmError("no facts are held out: set heldout_jobs or heldout_places in the "
                        "WorldConfig")
    return list(islice(_stream(whole_number("seed", seed), config, held, sorted(held)), n))


def corpus_text(n: int, seed: int = 0, config: WorldConfig | None = None) -> str:
    """``n`` stories as one text for language-model training: one story per line, a blank
    line between stories (``SEPARATOR``), plain ASCII. Canaries from ``config`` are their
    own paragraphs at places drawn from ``seed``; each appears exactly as often as asked."""
    config = _checked(config)
    texts = [s.text for s in stories(n, seed, config)]
    planted: dict[int, list[str]] = {}
    rng = random.Random(f"{seed}:canaries")
    for canary, repeats in (config.canaries or {}).items():
        for _ in range(repeats):
            planted.setdefault(rng.randrange(len(texts) + 1), []).append(canary)
    blocks = []
    for i in range(len(texts) + 1):
        blocks += planted.get(i, [])
        if i < len(texts):
            blocks.append(texts[i])
    text = SEPARATOR.join(blocks) + "\n"
    for canary, repeats in (config.canaries or {}).items():
        if text.count(canary) != repeats:
            raise LslmError(f"canary {shown(canary)} occurs {text.count(canary)} times, not "
                            f"{repeats}: choose a canary that the stories or another canary "
                            "cannot contain (e.g. one with digits)")
    return text


COMBINATION = ("hero", "place", "goal")  # the parts of ``Story.combination``


def _bucket(key: tuple[str, ...], seed: int) -> float:
    """Where in [0, 1) a combination falls: the same for every story that has it."""
    return zlib.crc32("|".join((str(seed), *key)).encode()) / 2**32


def split(n: int, seed: int = 0, config: WorldConfig | None = None, val_frac: float = 0.1,
          test_frac: float = 0.1, by: tuple[str, ...] = COMBINATION) -> dict[str, list[Story]]:
    """``n`` stories cut into train/val/test by whole combinations: every story with one
    combination of ``by`` (by default hero's name x place x goal) lands in the same part,
    so a test combination never occurs in train. A coarser ``by``, e.g. ``("place",)``,
    holds out whole places. Each part gets its share of ``n`` exactly (at least one)."""
    n = whole_number("n", n, 3)
    if isinstance(by, str) or not by or not set(by) <= set(COMBINATION) or len(set(by)) != len(by):
        raise LslmError(f"by must be a non-empty tuple of distinct names from {COMBINATION}, "
                        f"got {shown(by)}")
    pick = [COMBINATION.index(name) for name in by]
    val_frac = real_number("val_frac", val_frac, 0, 1, high_open=True)
    test_frac = real_number("test_frac", test_frac, 0, 1, high_open=True)
    if val_frac + test_frac >= 1 or val_frac == 0 or test_frac == 0:
        raise LslmError(f"val_frac and test_frac must be above 0 and sum below 1, got "
                        f"{val_frac:g} and {test_frac:g}")
    want = {"val": max(1, round(n * val_frac)), "test": max(1, round(n * test_frac))}
    want["train"] = n - want["val"] - want["test"]
    if want["train"] < 1:
        raise LslmError(f"n={n} leaves no story for train: use a larger n or smaller fractions")
    cut_val, cut_test = want["val"] / n, (want["val"] + want["test"]) / n
    parts: dict[str, list[Story]] = {"train": [], "val": [], "test": []}
    for story in islice(iter_stories(seed, config), 100 * n + 10_000):
        u = _bucket(tuple(story.combination[i] for i in pick), seed)
        part = "val" if u < cut_val else "test" if u < cut_test else "train"
        if len(parts[part]) < want[part]:
            parts[part].append(story)
            if all(len(parts[k]) == want[k] for k in parts):
                return parts
    short = [k for k in parts if len(parts[k]) < want[k]]
    raise LslmError(f"could not fill the {' and '.join(short)} part: too few combinations of "
                    f"{by} fall there; use a finer `by`, another seed or other fractions")
