"""Read text and judge it against the world: grammar, pronouns, staying on topic, and
story consistency.

Definitions (per story; stories are separated by a blank line, sentences end at ``.``,
``!`` or ``?``, or just after a closing quote, before a capital letter or a quote):

* **well formed**: the whole sentence matches one template of the world's grammar
  (``lslm.world.templates.STORY``), with every slot filled from the world's word lists,
  and every mention of one role resolving to the same character.
* **pronoun agreement**: each "he", "she", "him", "his", "her" refers to the most recently
  named character in the story (the generator's reference rule) and agrees with that
  character's gender. A pronoun with no one named before it disagrees. Judged on every
  pronoun, in well-formed sentences or not.
* **on topic**: a sentence after a story's first mentions, by name or by pronoun, a
  character the story introduced in an earlier sentence. A character is introduced by
  the words "named <Name>" (every introduction in the grammar reads "a baker named Tom"),
  so a name that just appears, never introduced, does not keep a story on topic. Rate
  over the sentences after each story's first.
* **consistent**: a well-formed sentence breaks none of the story's facts so far: a
  character appears only after being introduced and is introduced once; a thing is used
  only after it appears ("a kite") and only by its owner ("his kite"); nobody is in two
  places at once without going; two characters who deal with each other are in one place.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from functools import cache

from lslm.errors import LslmError
from lslm.world.grammar import (CATEGORIES, NAME_GENDER, PRONOUN_GENDER, SLOTS, WORD, Event,
                                Template, article, words_of)
from lslm.world.templates import QUESTIONS, STORY, SUMMARY

_SENTENCE_END = re.compile(r'(?<=[.!?])\s+(?=[A-Z"])|(?<=[.!?]")\s+(?=[A-Z"])')
_STORY_END = re.compile(r"\n\s*\n")  # a blank line (spaces or "\r" in it too)
_ROLE_GROUP = re.compile(r"^([AB])\d+$")


@cache
def vocabulary() -> frozenset[str]:
    """Every lower-cased word (``[A-Za-z]+``) the generator can write, in stories,
    summaries and questions."""
    return frozenset().union(*(words_of(t) for t in STORY + SUMMARY + QUESTIONS))


@dataclass
class PronounCheck:
    pronoun: str
    referent: str | None  # the most recently named character, None if nobody yet
    agrees: bool


@dataclass
class SentenceCheck:
    """What the checker found in one sentence."""

    text: str
    story: int  # which story of the text (0-based)
    index: int  # which sentence of its story
    well_formed: bool
    event: Event | None  # the sentence's meaning when it is well formed
    pronouns: list[PronounCheck]
    on_topic: bool | None  # None for a story's first sentence
    problems: list[str] = field(default_factory=list)  # consistency, for well-formed ones
    unknown_words: list[str] = field(default_factory=list)

    @property
    def consistent(self) -> bool:
        return self.well_formed and not self.problems


def _rate(hits: int, total: int) -> float:
    return hits / total if total else math.nan


@dataclass
class Report:
    """Per-sentence checks and the text's rates (``nan`` where nothing was measured,
    e.g. the pronoun rate of a text without pronouns)."""

    sentences: list[SentenceCheck]
    endings: list[str | None]  # each story's ending, "happy"/"sad", if its last sentence is one
    facts: set[tuple[str, str, str]]  # ("job", name, job), ("place", thing, place) stated

    @property
    def well_formed_rate(self) -> float:
        return _rate(sum(s.well_formed for s in self.sentences), len(self.sentences))

    @property
    def pronoun_agreement_rate(self) -> float:
        checks = [p for s in self.sentences for p in s.pronouns]
        return _rate(sum(p.agrees for p in checks), len(checks))

    @property
    def on_topic_rate(self) -> float:
        judged = [s.on_topic for s in self.sentences if s.on_topic is not None]
        return _rate(sum(judged), len(judged))

    @property
    def consistency_rate(self) -> float:
        """The share of well-formed sentences that break no fact of their story."""
        formed = [s for s in self.sentences if s.well_formed]
        return _rate(sum(not s.problems for s in formed), len(formed))

    @property
    def problems(self) -> list[str]:
        return [f"story {s.story}, sentence {s.index}: {p}"
                for s in self.sentences for p in s.problems]

    def metrics(self) -> dict[str, float]:
        return {"well_formed": self.well_formed_rate,
                "pronoun_agreement": self.pronoun_agreement_rate,
                "on_topic": self.on_topic_rate, "consistent": self.consistency_rate}


def sentences_of(text: str) -> list[list[str]]:
    """The text's stories (blank-line separated), each as its list of sentences."""
    stories = []
    for block in _STORY_END.split(text):
        block = " ".join(block.split())
        if block:
            stories.append(_SENTENCE_END.split(block))
    return stories


def parse(sentence: str, referents: dict[int, str | None]) -> tuple[Template, Event] | None:
    """The template ``sentence`` is an instance of, and its event; ``None`` if none.
    ``referents`` maps the offset of each name or pronoun to the character it means."""
    words = {w.lower() for w in WORD.findall(sentence)}
    for t in STORY:
        if not t.literals <= words:
            continue
        m = t.regex.fullmatch(sentence)
        if m is None:
            continue
        args, same = {}, True
        for group, value in m.groupdict().items():
            role = _ROLE_GROUP.match(group)
            if role:
                who = referents.get(m.start(group))
                same = same and args.get(role[1], who) == who
                args[role[1]] = who
            else:
                cat, key = SLOTS[group]
                phrases = CATEGORIES[cat].phrases
                args[key] = phrases.get(value) or phrases[value[0].lower() + value[1:]]
        if same:  # one role, one character: "Tom had a kite that she loved" is not "has"
            return t, Event(t.kind, {**args, **dict(t.fixed)})
    return None


@dataclass
class _State:
    """What a story has said so far."""

    jobs: dict[str, str] = field(default_factory=dict)
    where: dict[str, str] = field(default_factory=dict)
    owner: dict[str, str] = field(default_factory=dict)

    def apply(self, t: Template, args: dict[str, str | None]) -> list[str]:
        problems = []
        new = {args[e.split()[1]] for e in t.effects if e.startswith("intro ")}
        for role in t.roles:
            who = args[role]
            if who is None:
                problems.append("a pronoun refers to no one named before it")
            elif who not in self.jobs and who not in new:
                problems.append(f"{who} appears before being introduced")
        if len(t.roles) == 2 and args["A"] is not None and args["A"] == args["B"]:
            problems.append(f"{args['A']} plays both parts of the sentence")
        for effect in t.effects:
            op, *names = effect.split()
            vals = [n if n == "home" else args.get(n) for n in names]
            if None not in vals:
                problems += getattr(self, "_" + op)(*vals)
        return problems

    def _intro(self, who: str, job: str) -> list[str]:
        seen = who in self.jobs
        self.jobs.setdefault(who, job)
        return [f"{who} is introduced twice"] if seen else []

    def _isjob(self, who: str, job: str) -> list[str]:
        known = self.jobs.get(who, job)
        return [] if known == job else [f"{who} is {article(known)}, not {article(job)}"]

    def _at(self, who: str, place: str) -> list[str]:
        was = self.where.setdefault(who, place)
        if was != place:
            self.where[who] = place
            return [f"{who} is in two places at once: the {was} and the {place}"]
        return []

    def _go(self, who: str, place: str) -> list[str]:
        self.where[who] = place
        return []

    def _new(self, thing: str, who: str) -> list[str]:
        seen = thing in self.owner
        self.owner[thing] = who
        return [f"there is already a {thing} in this story"] if seen else []

    def _own(self, who: str, thing: str) -> list[str]:
        if thing not in self.owner:
            return [f"the {thing} is used before it exists"]
        owner = self.owner[thing]
        return [] if owner == who else [f"the {thing} is {owner}'s, not {who}'s"]

    def _use(self, thing: str) -> list[str]:
        return [] if thing in self.owner else [f"the {thing} is used before it exists"]

    def _near(self, one: str, other: str) -> list[str]:
        a, b = self.where.get(one), self.where.get(other)
        return [f"{one} and {other} are in different places: the {a} and the {b}"] \
            if a and b and a != b else []


def _story(index: int, sentences: list[str], report: Report) -> None:
    state, last, introduced = _State(), None, set()
    vocab = vocabulary()
    for k, sentence in enumerate(sentences):
        referents, pronouns, named, new, previous = {}, [], set(), set(), ""
        for m in WORD.finditer(sentence):  # the reference rule, word by word
            w = m.group()
            if w in NAME_GENDER:
                last = referents[m.start()] = w
                named.add(w)
                if previous == "named":
                    new.add(w)
            elif w.lower() in PRONOUN_GENDER:
                referents[m.start()] = last
                agrees = last is not None and NAME_GENDER[last] == PRONOUN_GENDER[w.lower()]
                pronouns.append(PronounCheck(w.lower(), last, agrees))
            previous = w
        mentioned = named | {p.referent for p in pronouns if p.referent}
        on_topic = None if k == 0 else bool(mentioned & introduced)
        introduced |= new
        parsed = parse(sentence, referents)
        unknown = [w for w in WORD.findall(sentence) if w.lower() not in vocab]
        check = SentenceCheck(sentence, index, k, parsed is not None, parsed and parsed[1],
                              pronouns, on_topic, unknown_words=unknown)
        if parsed:
            t, event = parsed
            check.problems = state.apply(t, event.args)
            for effect in t.effects:
                op, who, what = (effect.split() + ["", ""])[:3]
                if op in ("intro", "isjob") and event.args.get(who):
                    report.facts.add(("job", event.args[who], event.args[what]))
            if "obj" in event.args and "place" in event.args:
                report.facts.add(("place", event.args["obj"], event.args["place"]))
        report.sentences.append(check)
    final = report.sentences[-1].event if sentences else None
    report.endings.append(final.args.get("mood") if final and final.kind == "end" else None)


def check_text(text: str) -> Report:
    """Judge ``text`` (one or more stories, a blank line between them) against the world:
    see this module's docstring for what each check means."""
    if not isinstance(text, str):
        raise LslmError(f"check_text needs a str of text, got {type(text).__name__}: decode "
                        "bytes first (text.decode('utf-8'))")
    stories = sentences_of(text)
    if not stories:
        raise LslmError("the text holds no sentences: give at least one sentence to check")
    report = Report([], [], set())
    for i, sentences in enumerate(stories):
        _story(i, sentences, report)
    return report
