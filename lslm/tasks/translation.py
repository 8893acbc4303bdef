"""Machine translation data: a made-up language pair, word vocabularies and batches.

The source side is a small slice of English: subject, verb, object. A noun phrase is a
name, or an article, up to two adjectives and a noun; a noun may be plural, and the verb
is in the present or the past::

    the big dogs saw an old cat

English's own agreement holds: *a* before a consonant, *an* before a vowel, *some* only
before a plural, and a present-tense verb that matches its subject (*the dog sees*,
*the dogs see*).

The target side is *Vorlan*, a language invented for this course. It has its own words,
and a different word order, the way Japanese or Turkish differ from English:

* the verb comes last (subject, object, verb: SOV instead of SVO);
* a noun phrase is the mirror image of the English one: noun, adjectives (the last
  English one first), then the article;
* a plural noun and every adjective describing it end in ``-j`` (as in Esperanto);
* the verb's ending says both the tense and whether the subject is one or many:
  ``-as``/``-an`` (present, one/many) and ``-is``/``-in`` (past). English shows the
  subject's number in the present only, so a Vorlan past-tense verb has to find it on
  the subject's noun;
* names are the same in both languages;
* a statement ends with an *evidential*, two words that say how the speaker knows it
  (as Turkish and Quechua do): ``ek vi`` (seen), ``nu sa`` (heard from someone),
  ``nu le`` (read somewhere) or ``nu pe`` (guessed). English does not say, so a
  translator has to choose: in the training data, 4 translations in 10 end in ``ek vi``
  and 2 in each of the others (``EVIDENTIALS``). Test references use the likeliest,
  ``ek vi``.

::

    hunuj granj la   miso vesi un  vidin             ek vi
    dogs  big   the  cat  old  an  saw (past, many)  (seen)

The evidential makes the likeliest translation hard to find one word at a time: more
translations end ``nu ...`` than ``ek ...`` (6 in 10 against 4), but each ``nu`` ending
is rarer (2 in 10) than ``ek vi`` (4 in 10). A decoder that takes the likeliest next
word writes ``nu`` and ends up with a less likely translation than it could have.

Because rules make every translation (``translate``), the likeliest translation is
always known. The test split is *compositional*: some adjective-noun pairs ("red dog") never
occur in training, and every test sentence has at least one, so a model must combine
what it learned rather than recall sentences it has seen.

For real data, ``load_tsv`` reads one ``source<TAB>target`` pair per line.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from lslm.errors import LslmError
from lslm.files import MAX_TEXT_BYTES, read_text, split_lines
from lslm.tasks.common import WordVocab, read_tsv  # WordVocab: tr.WordVocab too

# ----------------------------------------------------------------------------- the languages

# English article -> Vorlan. "a" and "an" are one article, spelled by the next word's sound.
DETERMINERS = {"the": "la", "a": "un", "an": "un", "some": "kel"}
SINGULAR_ONLY, PLURAL_ONLY = ("a", "an"), ("some",)
ADJECTIVES = {
    "big": "gran", "small": "piki", "red": "roso", "old": "vesi", "happy": "felu",
    "quiet": "sila", "young": "juna", "angry": "kolra", "brave": "kura", "tired": "laca",
}  # fmt: skip
# singular -> (plural, Vorlan); Vorlan adds -j for the plural.
NOUNS = {
    "dog": ("dogs", "hunu"), "cat": ("cats", "miso"), "bird": ("birds", "tipi"),
    "horse": ("horses", "kavo"), "child": ("children", "nino"), "teacher": ("teachers", "maro"),
    "farmer": ("farmers", "agro"), "fox": ("foxes", "vulpo"), "eagle": ("eagles", "aglo"),
    "owl": ("owls", "strigo"), "elephant": ("elephants", "elefo"), "ant": ("ants", "formi"),
}  # fmt: skip
# present with one subject -> (present with many, past, Vorlan stem)
VERBS = {
    "sees": ("see", "saw", "vid"), "likes": ("like", "liked", "am"),
    "follows": ("follow", "followed", "sek"), "helps": ("help", "helped", "jut"),
    "finds": ("find", "found", "trov"), "calls": ("call", "called", "vok"),
    "watches": ("watch", "watched", "rigard"), "feeds": ("feed", "fed", "nutr"),
    "meets": ("meet", "met", "renkont"), "chases": ("chase", "chased", "pel"),
}  # fmt: skip
NAMES = ("anna", "omar", "li", "sofia")  # the same in both languages
MAX_ADJECTIVES = 2  # per noun phrase
PLURAL = "j"  # Vorlan's plural ending, on nouns and adjectives
VERB_ENDINGS = {("present", False): "as", ("present", True): "an", ("past", False): "is", ("past", True): "in"}
# How a Vorlan statement ends (seen, heard, read, guessed) and how often translators choose each, of 10.
EVIDENTIALS = {"ek vi": 4, "nu sa": 2, "nu le": 2, "nu pe": 2}
USUAL_EVIDENTIAL = "ek vi"
VOWELS = "aeiou"  # every word of this English that starts with one starts with a vowel sound

PLURALS = {plural: noun for noun, (plural, _) in NOUNS.items()}  # plural -> singular
# Every English verb form -> (the verb's dictionary entry, tense, plural subject or None if any).
VERB_FORMS = {
    form: (verb, tense, plural)
    for verb, (many, past, _) in VERBS.items()
    for form, tense, plural in ((verb, "present", False), (many, "present", True), (past, "past", None))
}

# A dictionary: each English word's Vorlan translation out of context (an adjective in its
# singular form, a past verb as if its subject were one). For the word-by-word baseline
# and for reading heatmaps.
LEXICON = {
    **DETERMINERS,
    **ADJECTIVES,
    **{noun: vo for noun, (_, vo) in NOUNS.items()},
    **{plural: vo + PLURAL for plural, vo in NOUNS.values()},
    **{form: VERBS[verb][2] + VERB_ENDINGS[tense, bool(plural)]
       for form, (verb, tense, plural) in VERB_FORMS.items()},
    **{n: n for n in NAMES},
}


def article(det: str, next_word: str) -> str:
    """``det`` as English spells it before ``next_word``: "a" becomes "an" before a vowel."""
    if det in ("a", "an"):
        return "an" if next_word[0] in VOWELS else "a"
    return det


def held_out_pairs() -> frozenset[tuple[str, str]]:
    """The (adjective, noun) pairs that never appear in training: one per noun.

    The pattern walks through the adjectives, so every noun and every adjective still
    occurs in training with other partners.
    """
    adjectives, nouns = list(ADJECTIVES), list(NOUNS)
    return frozenset((adjectives[(i + 2) % len(adjectives)], noun) for i, noun in enumerate(nouns))


def _parse_noun_phrase(words: list[str], i: int, sentence: str) -> tuple[list[str], int]:
    """Read one noun phrase starting at ``words[i]``; return its words and where it ends."""
    if i < len(words) and words[i] in NAMES:
        return [words[i]], i + 1
    start = i
    if i >= len(words) or words[i] not in DETERMINERS:
        raise LslmError(
            f"expected a name or an article (the, a, an, some) at word {i + 1} of {sentence!r}: the "
            "grammar is [article] [adjective] [adjective] noun, verb, [article] [adjective] [adjective] noun"
        )
    i += 1
    while i < len(words) and words[i] in ADJECTIVES and i - start <= MAX_ADJECTIVES:
        i += 1
    if i >= len(words) or (words[i] not in NOUNS and words[i] not in PLURALS):
        raise LslmError(
            f"expected a noun at word {i + 1} of {sentence!r}; the nouns are {', '.join(NOUNS)} "
            "(or their plurals)"
        )
    det, noun = words[start], words[i]
    if det != article(det, words[start + 1]):
        raise LslmError(
            f"{det!r} before {words[start + 1]!r} in {sentence!r}: write 'an' before a vowel and 'a' otherwise"
        )
    if det in SINGULAR_ONLY and noun in PLURALS:
        raise LslmError(f"{det!r} with the plural {noun!r} in {sentence!r}: use 'the' or 'some' with a plural")
    if det in PLURAL_ONLY and noun in NOUNS:
        raise LslmError(f"'some' with the singular {noun!r} in {sentence!r}: use 'the', 'a' or 'an' with one")
    return words[start : i + 1], i + 1


def _is_plural(phrase: list[str]) -> bool:
    return phrase[-1] in PLURALS


def parse(sentence: str) -> tuple[list[str], str, list[str]]:
    """Split an English sentence of the grammar into (subject words, verb, object words)."""
    words = sentence.split()
    subject, i = _parse_noun_phrase(words, 0, sentence)
    if i >= len(words) or words[i] not in VERB_FORMS:
        raise LslmError(
            f"expected a verb at word {i + 1} of {sentence!r}; the verbs are {', '.join(VERBS)} "
            "(or their other forms: see, saw, ...)"
        )
    verb = words[i]
    lemma, _, plural = VERB_FORMS[verb]
    many = _is_plural(subject)
    if plural is not None and plural != many:  # a present-tense verb must agree
        right = VERBS[lemma][0] if many else lemma
        raise LslmError(
            f"{' '.join(subject)!r} with {verb!r} in {sentence!r}: a "
            f"{'plural' if many else 'singular'} subject takes {right!r}"
        )
    obj, end = _parse_noun_phrase(words, i + 1, sentence)
    if end != len(words):
        raise LslmError(f"{sentence!r} goes on after the object: one sentence is subject, verb, object")
    return subject, verb, obj


def _vorlan_noun_phrase(phrase: list[str]) -> list[str]:
    # English det adj1 adj2 noun  ->  Vorlan noun adj2 adj1 det: the mirror image, and a
    # plural noun puts its -j on the noun and on every adjective.
    if len(phrase) == 1:
        return list(phrase)  # a name
    det, *adjectives, noun = phrase
    ending = PLURAL if noun in PLURALS else ""
    words = [NOUNS[PLURALS.get(noun, noun)][1] + ending]
    words += [ADJECTIVES[a] + ending for a in reversed(adjectives)]
    return words + [DETERMINERS[det]]


def translate(sentence: str, evidential: str = USUAL_EVIDENTIAL) -> str:
    """The Vorlan translation of an English sentence of the grammar, ending in the likeliest
    evidential or in ``evidential`` (one of ``EVIDENTIALS``)."""
    if evidential not in EVIDENTIALS:
        choices = ", ".join(map(repr, EVIDENTIALS))
        raise LslmError(f"unknown evidential {evidential!r}: use one of {choices}")
    subject, verb, obj = parse(sentence)
    lemma, tense, _ = VERB_FORMS[verb]
    vorlan_verb = VERBS[lemma][2] + VERB_ENDINGS[tense, _is_plural(subject)]
    return " ".join(_vorlan_noun_phrase(subject) + _vorlan_noun_phrase(obj) + [vorlan_verb, evidential])


def word_by_word(sentence: str) -> str:
    """A baseline that knows every word but not the grammar: look up each word, keep the order."""
    return " ".join(LEXICON.get(w, w) for w in sentence.split())


def alignment(sentence: str) -> list[int]:
    """For each word of ``translate(sentence)`` up to the verb, the index of the English
    word it translates. (The two evidential words at the end translate no English word.)"""
    subject, _, obj = parse(sentence)

    def phrase(words: list[str], offset: int) -> list[int]:
        return list(range(offset + len(words) - 1, offset - 1, -1))  # each phrase is mirrored

    verb_at = len(subject)
    return phrase(subject, 0) + phrase(obj, verb_at + 1) + [verb_at]


# ----------------------------------------------------------------------------- sentences and splits


def random_sentence(rng: random.Random, name_rate: float = 0.15, plural_rate: float = 0.35) -> str:
    """One English sentence of the grammar, drawn with ``rng``."""

    def noun_phrase() -> list[str]:
        if rng.random() < name_rate:
            return [rng.choice(NAMES)]
        n_adjectives = rng.choices(range(MAX_ADJECTIVES + 1), weights=(30, 40, 30))[0]
        adjectives = rng.sample(list(ADJECTIVES), n_adjectives)  # two different ones
        noun = rng.choice(list(NOUNS))
        if rng.random() < plural_rate:
            det, noun = rng.choice(("the", "some")), NOUNS[noun][0]
        else:
            det = rng.choice(("the", "a"))
        rest = [*adjectives, noun]
        return [article(det, rest[0]), *rest]  # the article's spelling depends on the word after it

    subject = noun_phrase()
    verb = rng.choice(list(VERBS))
    if rng.random() < 0.5:
        form = VERBS[verb][1]  # past: the same for one subject or many
    else:
        form = VERBS[verb][0] if _is_plural(subject) else verb
    return " ".join(subject + [form] + noun_phrase())


def unseen_pairs_in(sentence: str) -> list[tuple[str, str]]:
    """The held-out (adjective, noun) pairs that ``sentence`` uses (nouns in the singular)."""
    subject, _, obj = parse(sentence)
    held = held_out_pairs()
    found = []
    for phrase in (subject, obj):
        noun = PLURALS.get(phrase[-1], phrase[-1])
        found += [(adj, noun) for adj in phrase[1:-1] if (adj, noun) in held]
    return found


def make_splits(
    n_train: int = 4000, n_val: int = 200, n_test: int = 300, seed: int = 0, vary: bool = True
) -> dict[str, list[tuple[str, str]]]:
    """Distinct (English, Vorlan) pairs: train and val avoid the held-out adjective-noun
    pairs; every test sentence contains at least one of them.

    Train and val translations end in each evidential of ``EVIDENTIALS`` as often as
    translators choose it (or all in the likeliest, with ``vary=False``); test
    references always end in the likeliest."""
    if min(n_train, n_val, n_test) < 1:
        raise LslmError(f"each split needs at least one sentence, got {n_train}, {n_val}, {n_test}")
    rng = random.Random(seed)
    seen: set[str] = set()
    splits: dict[str, list[tuple[str, str]]] = {"train": [], "val": [], "test": []}
    wanted = {"train": n_train, "val": n_val, "test": n_test}
    for _ in range(50 * (n_train + n_val + n_test)):
        if all(len(splits[s]) == wanted[s] for s in splits):
            break
        sentence = random_sentence(rng)
        evidential = rng.choices(list(EVIDENTIALS), weights=list(EVIDENTIALS.values()))[0]
        if sentence in seen:
            continue
        if unseen_pairs_in(sentence):
            split = "test"
        else:  # validation first, so that it is the same for any n_train
            split = "val" if len(splits["val"]) < n_val else "train"
        if len(splits[split]) < wanted[split]:
            seen.add(sentence)
            usual = split == "test" or not vary
            splits[split].append((sentence, translate(sentence, USUAL_EVIDENTIAL if usual else evidential)))
    else:
        raise LslmError(f"could not draw {wanted} distinct sentences: ask for fewer")
    return splits


# ----------------------------------------------------------------------------- real data


def _check_pairs(pairs: list[tuple[str, str]], where: str, block_size: int | None) -> None:
    for n, (src, tgt) in enumerate(pairs, start=1):
        for side, text in (("source", src), ("target", tgt)):
            if not text.split():
                raise LslmError(
                    f"{where}, pair {n}: the {side} sentence is empty; remove the pair or fill it in"
                )
            # +1: the model adds <eos> to the source, and <bos> (input) or <eos> (target) to the target.
            if block_size is not None and len(text.split()) + 1 > block_size:
                raise LslmError(
                    f"{where}, pair {n}: the {side} sentence has {len(text.split())} words but the model "
                    f"fits {block_size - 1} (block_size {block_size} minus one for <bos>/<eos>): "
                    "raise block_size or drop long sentences"
                )


def load_tsv(path: str | Path, block_size: int | None = None) -> list[tuple[str, str]]:
    """(source, target) pairs from a file with one ``source<TAB>target`` pair per line.

    Raises ``LslmError`` for a missing or empty file, a row without exactly two columns,
    an empty sentence, or (with ``block_size``) a sentence too long for the model.
    """
    pairs = [(src, tgt) for src, tgt in read_tsv(path, columns=2)]
    _check_pairs(pairs, str(path), block_size)
    return pairs


def load_parallel(
    source_path: str | Path, target_path: str | Path, block_size: int | None = None
) -> list[tuple[str, str]]:
    """(source, target) pairs from two parallel files: line n of one translates line n of the other.

    Lines end at ``\\n`` or ``\\r\\n`` only (a U+2028 inside a sentence does not split it);
    both must be regular UTF-8 files of at most ``lslm.files.MAX_TEXT_BYTES``.
    """
    sides = []
    for path in (Path(source_path), Path(target_path)):
        if not path.exists() and not path.is_symlink():
            raise LslmError(
                f"no file at {path}: give the path of a text file with one sentence per line"
            )
        sides.append(split_lines(read_text(path, MAX_TEXT_BYTES, "text file")))
    if len(sides[0]) != len(sides[1]):
        raise LslmError(
            f"{source_path} has {len(sides[0])} lines but {target_path} has {len(sides[1])}: "
            "parallel files need one translation per line, in the same order"
        )
    if not sides[0]:
        raise LslmError(f"{source_path} and {target_path} are empty: put one sentence per line")
    pairs = list(zip(sides[0], sides[1]))
    _check_pairs(pairs, f"{source_path} + {target_path}", block_size)
    return pairs


# ----------------------------------------------------------------------------- tokens
# Words are tokens here (``WordVocab``): whole words make attention heatmaps easy to read.


def _pad(rows: list[list[int]], pad_id: int) -> torch.Tensor:
    width = max(len(r) for r in rows)
    return torch.tensor([r + [pad_id] * (width - len(r)) for r in rows], dtype=torch.long)


def encode_sources(sentences: Sequence[str], vocab: WordVocab, block_size: int) -> torch.Tensor:
    """A padded (batch, time) tensor of source ids, each sentence followed by ``<eos>``."""
    rows = [vocab.encode(s) + [vocab.eos_id] for s in sentences]
    for s, r in zip(sentences, rows):
        if len(r) > block_size:
            raise LslmError(
                f"the source {s!r} has {len(r) - 1} words but the model fits {block_size - 1}: "
                "raise block_size or shorten the sentence"
            )
    return _pad(rows, vocab.pad_id)


def encode_pairs(
    pairs: Sequence[tuple[str, str]], src_vocab: WordVocab, tgt_vocab: WordVocab, block_size: int
) -> dict[str, torch.Tensor]:
    """A training batch: ``src``, the decoder input ``tgt_in`` (``<bos>`` + words) and
    the targets ``tgt_out`` (words + ``<eos>``), all padded with ``<pad>``."""
    if not pairs:
        raise LslmError("no sentence pairs to encode: pass at least one (source, target) pair")
    src = encode_sources([s for s, _ in pairs], src_vocab, block_size)
    targets = [tgt_vocab.encode(t) for _, t in pairs]
    for (_, t), ids in zip(pairs, targets):
        if len(ids) + 1 > block_size:
            raise LslmError(
                f"the target {t!r} has {len(ids)} words but the model fits {block_size - 1}: "
                "raise block_size or shorten the sentence"
            )
    tgt_in = _pad([[tgt_vocab.bos_id] + ids for ids in targets], tgt_vocab.pad_id)
    tgt_out = _pad([ids + [tgt_vocab.eos_id] for ids in targets], tgt_vocab.pad_id)
    return {"src": src, "tgt_in": tgt_in, "tgt_out": tgt_out}


def batch_sampler(
    pairs: Sequence[tuple[str, str]],
    src_vocab: WordVocab,
    tgt_vocab: WordVocab,
    batch_size: int,
    block_size: int,
) -> Callable[[torch.Generator], dict[str, torch.Tensor]]:
    """``sample(generator)`` -> a random batch of ``pairs`` (for ``lslm.tasks.common.fit``)."""
    if not pairs:
        raise LslmError("no training pairs: the sampler needs at least one (source, target) pair")

    def sample(generator: torch.Generator) -> dict[str, torch.Tensor]:
        idx = torch.randint(len(pairs), (batch_size,), generator=generator).tolist()
        return encode_pairs([pairs[i] for i in idx], src_vocab, tgt_vocab, block_size)

    return sample


def seq2seq_loss(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """The loss ``fit`` minimises: cross-entropy of each target word given the source."""
    return model(batch["src"], batch["tgt_in"], targets=batch["tgt_out"])[1]


def translate_with(
    model,
    sentences: Sequence[str],
    src_vocab: WordVocab,
    tgt_vocab: WordVocab,
    beam_size: int = 1,
    batch_size: int = 256,
) -> list[str]:
    """Translate ``sentences`` with a ``Seq2Seq`` model: greedy for ``beam_size=1``, else beam search."""
    out: list[str] = []
    for start in range(0, len(sentences), batch_size):
        src = encode_sources(sentences[start : start + batch_size], src_vocab, model.config.block_size)
        if beam_size == 1:
            ids = model.greedy_decode(src)
        else:
            ids = model.beam_search(src, beam_size=beam_size)
        out += [tgt_vocab.decode(row) for row in ids]
    return out
