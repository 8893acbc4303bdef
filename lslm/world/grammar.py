"""The world's grammar: a closed set of sentence templates that both writes and reads.

A template is a sentence with slots, e.g. ``"{A} took {A:p} {obj} to the {place}."``.
The generator fills the slots to write a sentence; the checker turns the same template
into a regular expression to read one back. Because one definition serves both, every
generated sentence parses, and a parse gives back exactly the event the generator meant.

Character slots name a role (``A`` the hero, ``B`` the helper) and a form:

``{A}``   subject: the name, or "he"/"she"      ``{A:o}`` object: the name, or "him"/"her"
``{A:p}`` possessive: "Tom's", or "his"/"her"   ``{A:n}`` always the name
``{A:s}`` always the subject pronoun

**The reference rule.** A pronoun refers to the most recently named character in the
story (a name anywhere, quoted speech included). The writer uses a pronoun only for that
character, so no pronoun is ever ambiguous, and the checker resolves pronouns the same way.

Other slots (``{obj}``, ``{at_place}``, ...) take a phrase from a closed list; ``SLOTS``
says which list, and under which name the value goes into the sentence's event.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cached_property

from lslm.world import lexicon as lx

# ------------------------------------------------------------------------- characters
PRONOUN_FORMS = {"he": {"": "he", "s": "he", "o": "him", "p": "his"},
                 "she": {"": "she", "s": "she", "o": "her", "p": "her"}}
PRONOUN_GENDER = {"he": "he", "him": "he", "his": "he", "she": "she", "her": "she"}
NAME_GENDER = {**dict.fromkeys(lx.FEMALE_NAMES, "she"), **dict.fromkeys(lx.MALE_NAMES, "he")}
PARTNER = {**dict(zip(lx.FEMALE_NAMES, lx.MALE_NAMES)), **dict(zip(lx.MALE_NAMES, lx.FEMALE_NAMES))}


@dataclass(frozen=True)
class Character:
    """A named person of the world: ``gender`` is the subject pronoun, "he" or "she"."""

    name: str
    gender: str
    job: str

    def swapped(self) -> "Character":
        """The same role with the partner name and the other pronoun (same job)."""
        return Character(PARTNER[self.name], "he" if self.gender == "she" else "she", self.job)


# ------------------------------------------------------------------------- categories
def article(word: str) -> str:
    return ("an " if word[0] in "aeiou" else "a ") + word


@dataclass(frozen=True)
class Category:
    """A closed list of phrases; each phrase stands for one value (``"an old"`` -> ``"old"``)."""

    phrases: dict[str, str]  # surface -> value

    @cached_property
    def surface(self) -> dict[str, str]:
        return {v: k for k, v in self.phrases.items()}

    @cached_property
    def pattern(self) -> str:
        # Longest first, so that a phrase never stops at a shorter phrase it starts with.
        return "|".join(re.escape(p) for p in sorted(self.phrases, key=len, reverse=True))

    @cached_property
    def pattern_capitalized(self) -> str:
        return "|".join(re.escape(p[0].upper() + p[1:])
                        for p in sorted(self.phrases, key=len, reverse=True))


def _same(items: Iterable[str]) -> Category:
    return Category({w: w for w in items})


ALL_NOUNS = tuple(n for kind in lx.KINDS.values() for n in kind.nouns)
ALL_ANIMALS = tuple(a for group in lx.ANIMALS.values() for a in group)
GOAL_VERBS = tuple(dict.fromkeys(v for kind in lx.KINDS.values() for v in kind.verbs))
CATEGORIES: dict[str, Category] = {
    "a_job": Category({article(j): j for j in lx.JOBS}),
    "job": _same(lx.JOBS),
    "place": _same(p.name for p in lx.PLACES),
    "at_place": Category({f"{p.prep} the {p.name}": p.name for p in lx.PLACES}),
    "obj": _same(ALL_NOUNS),
    "a_adj": Category({article(a): a for a in lx.THING_LOOKS}),
    "a_look": Category({article(a): a for a in lx.ANIMAL_LOOKS}),
    "animal": _same(ALL_ANIMALS),
    "verb": Category({base: base for base, _ in GOAL_VERBS}),
    "verbed": Category({past: base for base, past in GOAL_VERBS if base not in lx.SOLO_VERBS}),
    "trait": _same(lx.TRAITS),
    "good": _same(lx.GOOD_FEELINGS),
    "bad": _same(lx.BAD_FEELINGS),
    "activity": _same(a for group in lx.ACTIVITIES.values() for a in group),
    "work": Category({phrase: job for job, phrase in lx.WORK.items()}),
    "when": _same(lx.WHEN),
}
# slot name -> (category, the event argument its value is stored under)
SLOTS: dict[str, tuple[str, str]] = {
    "a_job": ("a_job", "job"), "job": ("job", "job"),
    "place": ("place", "place"), "at_place": ("at_place", "place"),
    "obj": ("obj", "obj"), "obj2": ("obj", "obj2"),
    "a_adj": ("a_adj", "adj"), "a_adj2": ("a_adj", "adj2"),
    "a_look": ("a_look", "look"), "animal": ("animal", "animal"),
    "verb": ("verb", "verb"), "verbed": ("verbed", "verb"),
    "trait": ("trait", "trait"), "good": ("good", "feeling"), "bad": ("bad", "feeling"),
    "activity": ("activity", "activity"), "work": ("work", "job"), "when": ("when", "when"),
}
ROLES = ("A", "B")
_NAMES_PATTERN = "|".join(sorted(NAME_GENDER, key=len, reverse=True))


# -------------------------------------------------------------------------- templates
@dataclass(frozen=True)
class Piece:
    """Literal ``text``, or a slot: a character ``role`` with its ``form``, or a ``slot`` name."""

    text: str = ""
    role: str = ""
    form: str = ""
    slot: str = ""


_SLOT = re.compile(r"\{([^{}]+)\}")


def parse_pieces(text: str) -> tuple[Piece, ...]:
    """A template's text cut into literal text and slots."""
    pieces = []
    for i, part in enumerate(_SLOT.split(text)):
        if i % 2 == 0:
            if part:
                pieces.append(Piece(text=part))
        elif part.split(":")[0] in ROLES:
            role, _, form = part.partition(":")
            if form not in ("", "o", "p", "n", "s"):
                raise ValueError(f"bad character form in {text!r}")
            pieces.append(Piece(role=role, form=form))
        elif part in SLOTS:
            pieces.append(Piece(slot=part))
        else:
            raise ValueError(f"unknown slot {part!r} in {text!r}")
    return tuple(pieces)


@dataclass(frozen=True)
class Template:
    """One sentence form: its event ``kind``, fixed event arguments (e.g. the obstacle)
    and the ``effects`` the checker applies to the story's state when it reads one."""

    kind: str
    text: str
    fixed: tuple[tuple[str, str], ...] = ()
    effects: tuple[str, ...] = ()

    @cached_property
    def pieces(self) -> tuple[Piece, ...]:
        return parse_pieces(self.text)

    @cached_property
    def roles(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(p.role for p in self.pieces if p.role))

    @cached_property
    def literals(self) -> frozenset[str]:
        """Lower-cased words of the literal text: a sentence lacking one cannot match."""
        return frozenset(w.lower() for p in self.pieces for w in WORD.findall(p.text))

    @cached_property
    def regex(self) -> re.Pattern:
        parts, seen, start = [], set(), True
        for i, p in enumerate(self.pieces):
            if p.text:
                parts.append(re.escape(p.text))
            elif p.role:
                pron = {"": ("he", "she"), "s": ("he", "she"), "o": ("him", "her"),
                        "p": ("his", "her"), "n": ()}[p.form]
                if start:
                    pron = tuple(w.capitalize() for w in pron)
                names = f"(?:{_NAMES_PATTERN})'s" if p.form == "p" else f"(?:{_NAMES_PATTERN})"
                alts = ([] if p.form == "s" else [names]) + list(pron)
                parts.append(f"(?P<{p.role}{i}>{'|'.join(alts)})")
            else:
                cat = CATEGORIES[SLOTS[p.slot][0]]
                if p.slot in seen:
                    parts.append(f"(?P={p.slot})")
                else:
                    alts = cat.pattern_capitalized if start else cat.pattern
                    parts.append(f"(?P<{p.slot}>{alts})")
                    seen.add(p.slot)
            # Still at the sentence's start while nothing but punctuation came before.
            start = start and not p.role and not p.slot and not re.search("[A-Za-z]", p.text)
        return re.compile("".join(parts))


WORD = re.compile(r"[A-Za-z]+")


@dataclass
class Reference:
    """Who a pronoun would refer to now: the most recently named character."""

    last: str | None = None


def render(t: Template, args: dict[str, object], ref: Reference, rng: random.Random,
           pronoun_p: float = 0.6) -> tuple[str, dict[str, str]] | None:
    """The sentence ``t`` says with ``args`` (roles -> ``Character``, argument names ->
    values), following the reference rule; ``None`` when it cannot (a forced pronoun for a
    character who is not the most recently named). Returns the text and the event arguments.

    A free character slot becomes a pronoun when the reference rule allows one: always if
    the character was mentioned earlier in this sentence, else with probability ``pronoun_p``.
    ``ref`` is updated only when the sentence can be said.
    """
    out, event, last, mentioned = [], {}, ref.last, set()
    for p in t.pieces:
        if p.text:
            out.append(p.text)
        elif p.role:
            c: Character = args[p.role]
            event[p.role] = c.name
            may = last == c.name
            if p.form == "s" and not may:
                return None
            use_pronoun = p.form == "s" or (p.form != "n" and may and (
                c.name in mentioned or rng.random() < pronoun_p))
            if use_pronoun:
                out.append(PRONOUN_FORMS[c.gender][p.form])
            else:
                out.append(c.name + "'s" if p.form == "p" else c.name)
                last = c.name
            mentioned.add(c.name)
        else:
            cat, key = SLOTS[p.slot]
            value = args[key]
            event[key] = value
            out.append(CATEGORIES[cat].surface[value])
    ref.last = last
    text = "".join(out)
    first = re.search("[A-Za-z]", text).start()
    return text[:first] + text[first].upper() + text[first + 1:], {**event, **dict(t.fixed)}


def words_of(t: Template) -> set[str]:
    """Every lower-cased word ``t`` can produce."""
    found = set(t.literals)
    for p in t.pieces:
        if p.role:
            found |= {n.lower() for n in NAME_GENDER}
            if p.form == "p":
                found.add("s")  # "Tom's" is the words "tom" and "s"
            if p.form != "n":
                found |= {PRONOUN_FORMS[g][p.form] for g in ("he", "she")}
        elif p.slot:
            found |= {w.lower() for phrase in CATEGORIES[SLOTS[p.slot][0]].phrases
                      for w in WORD.findall(phrase)}
    return found


@dataclass
class Event:
    """One sentence's meaning: its ``kind`` and arguments (``A``/``B`` hold names)."""

    kind: str
    args: dict[str, str] = field(default_factory=dict)
