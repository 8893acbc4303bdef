"""Machine translation data: a made-up language pair, word vocabularies and batches.

The source side is a small slice of English: subject, verb, object, each noun phrase
either a name or ``the/a``, up to two adjectives and a noun::

    the big dog sees a small cat

The target side is *Vorlan*, a language invented for this course. It has its own words,
and a different word order, the way Japanese or Turkish differ from English:

* the verb comes last (subject, object, verb: SOV instead of SVO);
* a noun phrase is the mirror image of the English one: noun, adjectives (the last
  English one first), then the article;
* names are the same in both languages.

::

    hunu gran la  miso piki un  vidas
    dog  big the  cat  small a  sees

Because a rule makes every translation (``translate``), the right answer is always
known. The test split is *compositional*: some adjective-noun pairs ("red dog") never
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

DETERMINERS = {"the": "la", "a": "un"}
ADJECTIVES = {
    "big": "gran", "small": "piki", "red": "roso", "old": "vesi", "happy": "felu", "quiet": "sila",
}  # fmt: skip
NOUNS = {
    "dog": "hunu", "cat": "miso", "bird": "tipi", "fish": "pesu",
    "horse": "kavo", "child": "nino", "teacher": "maro", "farmer": "agro",
}  # fmt: skip
VERBS = {
    "sees": "vidas", "likes": "amas", "follows": "sekas",
    "helps": "jutas", "finds": "trovas", "calls": "vokas",
}  # fmt: skip
NAMES = ("anna", "omar", "li", "sofia")  # the same in both languages
MAX_ADJECTIVES = 2  # per noun phrase

# Every word's translation, for the word-by-word baseline and for reading heatmaps.
LEXICON = {**DETERMINERS, **ADJECTIVES, **NOUNS, **VERBS, **{n: n for n in NAMES}}


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
            f"expected a name or 'the'/'a' at word {i + 1} of {sentence!r}: the grammar is "
            "[the|a] [adjective] [adjective] noun, verb, [the|a] [adjective] [adjective] noun"
        )
    i += 1
    while i < len(words) and words[i] in ADJECTIVES and i - start <= MAX_ADJECTIVES:
        i += 1
    if i >= len(words) or words[i] not in NOUNS:
        raise LslmError(
            f"expected a noun at word {i + 1} of {sentence!r}; the nouns are {', '.join(NOUNS)}"
        )
    return words[start : i + 1], i + 1


def parse(sentence: str) -> tuple[list[str], str, list[str]]:
    """Split an English sentence of the grammar into (subject words, verb, object words)."""
    words = sentence.split()
    subject, i = _parse_noun_phrase(words, 0, sentence)
    if i >= len(words) or words[i] not in VERBS:
        raise LslmError(
            f"expected a verb at word {i + 1} of {sentence!r}; the verbs are {', '.join(VERBS)}"
        )
    verb = words[i]
    obj, end = _parse_noun_phrase(words, i + 1, sentence)
    if end != len(words):
        raise LslmError(f"{sentence!r} goes on after the object: one sentence is subject, verb, object")
    return subject, verb, obj


def _vorlan_noun_phrase(phrase: list[str]) -> list[str]:
    # English det adj1 adj2 noun  ->  Vorlan noun adj2 adj1 det: the mirror image
    return [LEXICON[w] for w in reversed(phrase)]


def translate(sentence: str) -> str:
    """The true Vorlan translation of an English sentence of the grammar."""
    subject, verb, obj = parse(sentence)
    return " ".join(_vorlan_noun_phrase(subject) + _vorlan_noun_phrase(obj) + [VERBS[verb]])


def word_by_word(sentence: str) -> str:
    """A baseline that knows every word but not the grammar: look up each word, keep the order."""
    return " ".join(LEXICON.get(w, w) for w in sentence.split())


def alignment(sentence: str) -> list[int]:
    """For each target word of ``translate(sentence)``, the index of the source word it translates."""
    subject, verb, obj = parse(sentence)

    def phrase(words: list[str], offset: int) -> list[int]:
        return list(range(offset + len(words) - 1, offset - 1, -1))  # each phrase is mirrored

    verb_at = len(subject)
    return phrase(subject, 0) + phrase(obj, verb_at + 1) + [verb_at]


# ----------------------------------------------------------------------------- sentences and splits


def random_sentence(rng: random.Random, name_rate: float = 0.2) -> str:
    """One English sentence of the grammar, drawn with ``rng``."""

    def noun_phrase() -> list[str]:
        if rng.random() < name_rate:
            return [rng.choice(NAMES)]
        n_adjectives = rng.choices(range(MAX_ADJECTIVES + 1), weights=(35, 40, 25))[0]
        adjectives = rng.sample(list(ADJECTIVES), n_adjectives)  # two different ones
        return [rng.choice(list(DETERMINERS)), *adjectives, rng.choice(list(NOUNS))]

    return " ".join(noun_phrase() + [rng.choice(list(VERBS))] + noun_phrase())


def unseen_pairs_in(sentence: str) -> list[tuple[str, str]]:
    """The held-out (adjective, noun) pairs that ``sentence`` uses."""
    subject, _, obj = parse(sentence)
    held = held_out_pairs()
    return [(adj, p[-1]) for p in (subject, obj) for adj in p[1:-1] if (adj, p[-1]) in held]


def make_splits(
    n_train: int = 4000, n_val: int = 200, n_test: int = 300, seed: int = 0
) -> dict[str, list[tuple[str, str]]]:
    """Distinct (English, Vorlan) pairs: train and val avoid the held-out adjective-noun
    pairs; every test sentence contains at least one of them."""
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
        if sentence in seen:
            continue
        if unseen_pairs_in(sentence):
            split = "test"
        else:  # validation first, so that it is the same for any n_train
            split = "val" if len(splits["val"]) < n_val else "train"
        if len(splits[split]) < wanted[split]:
            seen.add(sentence)
            splits[split].append((sentence, translate(sentence)))
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
