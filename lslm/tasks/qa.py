"""Extractive question answering: point at the answer inside a passage.

The model reads ``question [SEP] passage`` and, for every passage token, scores "the
answer starts here" and "the answer ends here" (a GPT backbone plus a two-number span
head). The question comes first so that, under causal attention, every passage token can
look back at it. The pieces, top to bottom:

* data: ``QAExample``, a seeded generator of passages about people (``make_qa_data``),
  and a loader for SQuAD-style JSON files (``load_squad``);
* words: ``tokenize`` (words with their character offsets) and ``QAVocab``;
* scoring: SQuAD's answer normalisation, ``is_exact_match`` and token ``f1`` for one
  answer, ``score`` for a whole set;
* the model: ``SpanQA``, its loss, ``predict`` and ``sentence_attention``.
"""

from __future__ import annotations

import json
import random
import re
import string
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from lslm.devices import model_device, to_device
from lslm.errors import LslmError, shown
from lslm.files import MAX_JSON_BYTES, read_json
from lslm.tasks.common import WordVocab
from lslm.utils import evaluating, seeded

PAD, UNK, SEP = "[PAD]", "[UNK]", "[SEP]"


@dataclass(frozen=True)
class QAExample:
    """One question about one passage, with the answer as a span of the passage.

    ``context[answer_start : answer_start + len(answer)] == answer``. ``support`` is the
    index of the passage sentence that holds the answer, when known; ``other_answers``
    are further acceptable answers (SQuAD's dev set lists several).
    """

    question: str
    context: str
    answer: str
    answer_start: int
    id: str = ""
    support: int | None = None
    relation: str = ""
    other_answers: tuple[str, ...] = ()

    @property
    def answers(self) -> tuple[str, ...]:
        return (self.answer, *self.other_answers)


# ---------------------------------------------------------------------------- data
NAMES = (
    "Anna", "Ben", "Carla", "David", "Elena", "Farid", "Grace", "Hugo",
    "Ines", "Jonas", "Kemal", "Lena", "Mario", "Nora", "Omar", "Priya",
)
CITIES = ("Paris", "Lima", "Oslo", "Cairo", "Tokyo", "Delhi", "Rome", "Quito",
          "New York", "Hong Kong")
COLOURS = ("red", "blue", "green", "yellow", "black", "white")
OBJECTS = ("car", "bike", "hat", "kite", "boat", "lamp")
JOBS = ("teacher", "doctor", "baker", "pilot", "farmer", "painter", "nurse", "chef")
AGES = tuple(str(a) for a in range(20, 60))

# relation -> (sentence template, question template, possible values). In every template
# the answer is the fourth word: a fixed offset from the name makes "look three words
# back for whose fact this is" one simple, learnable attention pattern.
RELATIONS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "city": ("{name} lives in {value}.", "Where does {name} live?", CITIES),
    "object": ("{name} has a {value}.", "What does {name} have?",
               tuple(f"{c} {o}" for c in COLOURS for o in OBJECTS)),
    "age": ("{name} is now {value}.", "How old is {name}?", AGES),
    "job": ("{name} is a {value}.", "What is the job of {name}?", JOBS),
}


def held_out_facts(seed: int = 0, test_frac: float = 0.25) -> set[tuple[str, str, str]]:
    """The (name, relation, value) facts kept for the test split, chosen with ``seed``.

    No training passage states one of these facts, so a test question can only be
    answered by reading, not by remembering "Anna lives in Oslo".
    """
    rng = random.Random(f"held-out-{seed}")
    return {(name, rel, value) for name in NAMES for rel, (_, _, values) in RELATIONS.items()
            for value in values if rng.random() < test_frac}


def make_passage(rng: random.Random, pools: dict[str, list], n_sentences: int,
                 mixed: bool = True) -> QAExample:
    """One passage of ``n_sentences`` facts about different people, and a question.

    ``pools["support"]`` and ``pools["distractor"]`` map each relation to the facts that
    role may use. Relations are picked uniformly, then a fact of that relation. The asked
    relation appears in at least two sentences (so the question type alone does not find
    the answer), and every sentence is about a different person (so the name does).
    """
    relation = rng.choice(list(RELATIONS))
    name, _, answer = rng.choice(pools["support"][relation])
    support = rng.randrange(n_sentences)
    twin = rng.choice([i for i in range(n_sentences) if i != support])  # same relation
    facts, used = {support: (name, relation, answer)}, {name, (relation, answer)}
    for i in range(n_sentences):
        rel = relation if i == twin or not mixed else rng.choice(list(RELATIONS))
        while i not in facts:  # rejection sampling: quick, the pools are large
            fact = rng.choice(pools["distractor"][rel])
            if fact[0] not in used and fact[1:] not in used:
                facts[i] = fact
                used.update((fact[0], fact[1:]))
    sentences = [RELATIONS[rel][0].format(name=n, value=v) for n, rel, v in
                 (facts[i] for i in range(n_sentences))]
    sentence_start = sum(len(s) + 1 for s in sentences[:support])
    answer_start = sentence_start + sentences[support].index(answer, len(name))
    question = RELATIONS[relation][1].format(name=name)
    return QAExample(question, " ".join(sentences), answer, answer_start, support=support,
                     relation=relation)


def make_qa_data(n_train: int = 4000, n_test: int = 500, seed: int = 0,
                 sentences: tuple[int, ...] = (3, 4), mixed: bool = True,
                 ) -> tuple[list[QAExample], list[QAExample]]:
    """A deterministic synthetic QA set: ``(train, test)`` lists of ``QAExample``.

    Each passage has 3 or 4 one-line facts about different people (where they live, what
    they have, how old they are, their job); with ``mixed=False`` every sentence of a
    passage states the same kind of fact. Test questions ask about held-out facts
    (``held_out_facts(seed)``), combinations of person and value no training passage
    contains.
    """
    if n_train < 0 or n_test < 0:
        raise LslmError(f"n_train and n_test must be >= 0, got {n_train} and {n_test}")
    if not sentences or min(sentences) < 2 or max(sentences) > len(NAMES):
        raise LslmError(f"sentences must be passage lengths between 2 and {len(NAMES)}, got {sentences}")
    held_out = held_out_facts(seed)
    by_relation = {"train": {r: [] for r in RELATIONS}, "test": {r: [] for r in RELATIONS}}
    for name in NAMES:
        for rel, (_, _, values) in RELATIONS.items():
            for value in values:
                split = "test" if (name, rel, value) in held_out else "train"
                by_relation[split][rel].append((name, rel, value))
    rng = random.Random(seed)
    splits = []
    for split, n in (("train", n_train), ("test", n_test)):
        # Distractors always come from the training facts; only a test answer is new.
        pools = {"support": by_relation[split], "distractor": by_relation["train"]}
        examples = []
        for i in range(n):
            ex = make_passage(rng, pools, rng.choice(sentences), mixed)
            examples.append(replace(ex, id=f"{split}-{i}"))
        splits.append(examples)
    return splits[0], splits[1]


# ------------------------------------------------------------------------ SQuAD JSON
def load_squad(path: str | Path, block_size: int | None = None) -> list[QAExample]:
    """Read a SQuAD-style JSON file: ``data -> paragraphs -> context, qas``.

    Each ``qas`` entry has ``question``, ``answers`` (a list of ``{"text", "answer_start"}``;
    the first is the training target) and optionally ``id`` (a string or a number). With
    ``block_size``, a question plus passage that would not fit in the model's context is an
    error.

    The file must be a regular UTF-8 file of at most ``lslm.files.MAX_JSON_BYTES``. Every
    field is checked for its type, and every answer to lie inside its passage (an
    ``answer_start`` below 0 is an error, not an index from the end). Messages say where
    in the file a problem is, without quoting the file.
    """
    path = Path(path)
    if not path.exists() and not path.is_symlink():
        raise LslmError(f"no SQuAD file at {path}: check the path")
    raw = read_json(path, MAX_JSON_BYTES, "SQuAD JSON file")

    def need(obj, key: str, kind: type, where: str):
        if not isinstance(obj, dict) or not isinstance(obj.get(key), kind):
            raise LslmError(f"{path}: {where} needs a {key!r} field holding a {kind.__name__} "
                            "(the SQuAD layout is data -> paragraphs -> context, qas)")
        return obj[key]

    examples = []
    for a, article in enumerate(need(raw, "data", list, "the top level")):
        for p, para in enumerate(need(article, "paragraphs", list, f"data[{a}]")):
            where = f"data[{a}].paragraphs[{p}]"
            context = need(para, "context", str, where)
            for q, qa in enumerate(need(para, "qas", list, where)):
                qwhere = f"{where}.qas[{q}]"
                question = need(qa, "question", str, qwhere)
                answers = need(qa, "answers", list, qwhere)
                if not answers:
                    raise LslmError(f"{path}: {qwhere} has no answers: give at least one "
                                    "{\"text\", \"answer_start\"}")
                texts, starts = [], []
                for k, ans in enumerate(answers):
                    awhere = f"{qwhere}.answers[{k}]"
                    text = need(ans, "text", str, awhere)
                    start = need(ans, "answer_start", int, awhere)
                    if isinstance(start, bool) or not text:
                        raise LslmError(f"{path}: {awhere} needs a non-empty 'text' and a whole "
                                        "number 'answer_start'")
                    # A negative start would slice from the end of the passage: refuse it.
                    if not 0 <= start <= len(context) - len(text) or \
                            context[start : start + len(text)] != text:
                        found = context.find(text)
                        hint = f"the text is at {found}" if found >= 0 else "the text is not in the context"
                        raise LslmError(f"{path}: {awhere} is not at answer_start={shown(start)} "
                                        f"({hint}): fix answer_start")
                    texts.append(text)
                    starts.append(start)
                qid = qa.get("id")
                qid = f"{a}-{p}-{q}" if qid is None else qid
                if isinstance(qid, bool) or not isinstance(qid, (str, int)):
                    raise LslmError(f"{path}: {qwhere} has an 'id' that is not a string or a number")
                # json.loads refuses integers too long to print, so str() is safe here.
                ex = QAExample(question, context, texts[0], starts[0], id=str(qid),
                               other_answers=tuple(texts[1:]))
                if block_size is not None:
                    n = input_length(ex)
                    if n > block_size:
                        raise LslmError(f"{path}: {qwhere} needs {n} tokens (question, [SEP], "
                                        f"passage) but block_size is {block_size}: use a larger "
                                        "block_size or shorter passages")
                examples.append(ex)
    if not examples:
        raise LslmError(f"{path} holds no questions: 'data' must list articles with "
                        "paragraphs and qas")
    return examples


def write_squad(examples: Sequence[QAExample], path: str | Path, title: str = "lslm") -> Path:
    """Write ``examples`` as a SQuAD-style JSON file (one paragraph per passage)."""
    paragraphs: dict[str, list] = {}
    for ex in examples:
        paragraphs.setdefault(ex.context, []).append(
            {"id": ex.id, "question": ex.question,
             "answers": [{"text": ex.answer, "answer_start": ex.answer_start}]})
    data = {"version": "1.1", "data": [{"title": title, "paragraphs": [
        {"context": c, "qas": qas} for c, qas in paragraphs.items()]}]}
    path = Path(path)
    path.write_text(json.dumps(data, indent=1), encoding="utf-8")
    return path


# -------------------------------------------------------------------------- words
_WORD = re.compile(r"\w+|[^\w\s]")


def tokenize(text: str) -> list[tuple[str, int, int]]:
    """Words and punctuation marks of ``text`` with their character offsets (start, end)."""
    return [(m.group(), m.start(), m.end()) for m in _WORD.finditer(text)]


def input_length(ex: QAExample) -> int:
    """Tokens in the model input ``question [SEP] passage``."""
    return len(tokenize(ex.question)) + 1 + len(tokenize(ex.context))


class QAVocab(WordVocab):
    """The task modules' ``WordVocab`` with ``[PAD]``, ``[UNK]``, ``[SEP]`` first, then the
    words of the training set in the order they first appear (no start or end token: the
    model points at a span, it writes nothing)."""

    PAD, UNK = PAD, UNK  # this module's "[PAD]" and "[UNK]"
    BOS = EOS = None
    SPECIALS = (PAD, UNK, SEP)
    SORT = False

    @classmethod
    def build(cls, examples: Sequence[QAExample]) -> "QAVocab":
        """The words (as ``tokenize`` splits them) of every question and passage."""
        return cls(w for ex in examples for text in (ex.question, ex.context)
                   for w, _, _ in tokenize(text))


@dataclass
class Encoded:
    """One example as the model sees it. ``start``/``end`` index the answer's first and
    last token in ``ids``; ``offsets`` give each passage token's place in the context."""

    ids: list[int]
    words: list[str]
    passage_start: int
    offsets: list[tuple[int, int]]
    start: int
    end: int


def encode(ex: QAExample, vocab: QAVocab, block_size: int) -> Encoded:
    """``question [SEP] passage`` as ids, with the answer span in token positions."""
    q = tokenize(ex.question)
    p = tokenize(ex.context)
    words = [w for w, _, _ in q] + [SEP] + [w for w, _, _ in p]
    if len(words) > block_size:
        raise LslmError(f"example {ex.id or ex.question!r} needs {len(words)} tokens but "
                        f"block_size is {block_size}: use a larger block_size or shorter passages")
    p0 = len(q) + 1
    a0, a1 = ex.answer_start, ex.answer_start + len(ex.answer)
    inside = [i for i, (_, s, e) in enumerate(p) if s < a1 and e > a0]  # tokens overlapping the answer
    if not inside:
        raise LslmError(f"example {ex.id!r}: the answer {ex.answer!r} covers no whole token of the passage")
    return Encoded(vocab.encode(words), words, p0, [(s, e) for _, s, e in p],
                   p0 + inside[0], p0 + inside[-1])


def sentence_spans(words: Sequence[str], passage_start: int) -> list[tuple[int, int]]:
    """Token ranges [start, end) of the passage's sentences (split after . ! ?)."""
    spans, start = [], passage_start
    for i in range(passage_start, len(words)):
        if words[i] in ".!?":
            spans.append((start, i + 1))
            start = i + 1
    if start < len(words):
        spans.append((start, len(words)))
    return spans


# ------------------------------------------------------------------------ scoring
_PUNCTUATION = set(string.punctuation)


def normalize_answer(text: str) -> str:
    """SQuAD's normalisation: lower case, drop punctuation and the articles a/an/the,
    collapse white space."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def is_exact_match(prediction: str, gold: str | Sequence[str]) -> bool:
    """Whether the normalised prediction equals a normalised gold answer (one of several).

    One answer's verdict; ``score`` averages it over a set of answers, and
    ``lslm.tasks.metrics.exact_match`` is the corpus percentage used for translations.
    """
    golds = [gold] if isinstance(gold, str) else gold
    return any(normalize_answer(prediction) == normalize_answer(g) for g in golds)


def f1(prediction: str, gold: str | Sequence[str]) -> float:
    """Token-overlap F1 between prediction and gold (the best over several golds).

    precision = shared tokens / predicted tokens, recall = shared tokens / gold tokens,
    F1 = 2PR / (P + R); tokens are the words after ``normalize_answer``.
    """
    golds = [gold] if isinstance(gold, str) else gold
    best = 0.0
    pred = normalize_answer(prediction).split()
    for g in golds:
        ref = normalize_answer(g).split()
        if not pred or not ref:
            best = max(best, float(pred == ref))
            continue
        shared = sum((Counter(pred) & Counter(ref)).values())
        if shared:
            precision, recall = shared / len(pred), shared / len(ref)
            best = max(best, 2 * precision * recall / (precision + recall))
    return best


def score(predictions: Sequence[str], examples: Sequence[QAExample]) -> dict[str, float]:
    """Mean exact match and F1 (as fractions) of ``predictions`` against ``examples``."""
    if len(predictions) != len(examples) or not examples:
        raise LslmError(f"got {len(predictions)} predictions for {len(examples)} examples: "
                        "give one prediction per example (and at least one)")
    n = len(examples)
    return {"exact_match": sum(is_exact_match(p, e.answers) for p, e in zip(predictions, examples)) / n,
            "f1": sum(f1(p, e.answers) for p, e in zip(predictions, examples)) / n}


def first_sentence_baseline(ex: QAExample) -> str:
    """The trivial answer: the passage's first sentence, whatever the question."""
    return re.split(r"(?<=[.!?])\s", ex.context, maxsplit=1)[0]


# -------------------------------------------------------------------------- model
class SpanQA(nn.Module):
    """A GPT backbone and a span head: two scores (start, end) per token."""

    def __init__(self, backbone: nn.Module, seed: int | None = None):
        super().__init__()
        self.backbone = backbone
        with seeded(seed):  # a seed leaves the caller's random numbers alone
            self.span = nn.Linear(backbone.config.n_embd, 2)

    def forward(
        self, idx: torch.Tensor, passage_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(start, end)`` logits, each (B, T); positions outside the passage get -inf.

        The backbone's attention weights come from ``backbone.features(idx, return_attention=True)``.
        """
        hidden, _ = self.backbone.features(idx)
        logits = self.span(hidden).masked_fill(~passage_mask.unsqueeze(-1), float("-inf"))
        start, end = logits.unbind(-1)
        return start, end


def collate(batch: Sequence[Encoded]) -> dict[str, torch.Tensor]:
    """Pad a list of ``Encoded`` to one batch (padding goes at the end: causal attention
    means no real token ever looks at it)."""
    t = max(len(e.ids) for e in batch)
    idx = torch.zeros(len(batch), t, dtype=torch.long)
    mask = torch.zeros(len(batch), t, dtype=torch.bool)
    for i, e in enumerate(batch):
        idx[i, : len(e.ids)] = torch.tensor(e.ids)
        mask[i, e.passage_start : len(e.ids)] = True
    return {"idx": idx, "passage_mask": mask,
            "start": torch.tensor([e.start for e in batch]),
            "end": torch.tensor([e.end for e in batch])}


def span_loss(model: SpanQA, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """The mean of two cross-entropies: of the true start position and of the true end
    position (halving the sum, as BERT's SQuAD model does, keeps the loss on the scale of
    one softmax over the passage)."""
    start, end = model(batch["idx"], batch["passage_mask"])
    return (F.cross_entropy(start, batch["start"]) + F.cross_entropy(end, batch["end"])) / 2


def best_spans(start: torch.Tensor, end: torch.Tensor, max_len: int = 8) -> list[tuple[int, int]]:
    """For each row, the (s, e) with s <= e < s + max_len that maximises start[s] + end[e]."""
    t = start.size(-1)
    pair = start.unsqueeze(-1) + end.unsqueeze(-2)  # (B, T, T): row s, column e
    allowed = torch.ones(t, t, dtype=torch.bool, device=start.device).triu().tril(max_len - 1)
    pair = pair.masked_fill(~allowed, float("-inf"))
    flat = pair.flatten(1).argmax(dim=1)
    return [(int(i) // t, int(i) % t) for i in flat]


@torch.no_grad()
def predict(model: SpanQA, examples: Sequence[QAExample], vocab: QAVocab, block_size: int,
            max_len: int = 8, batch_size: int = 256) -> list[str]:
    """The model's answer text for each example (a span of its passage)."""
    answers = []
    with evaluating(model):
        for i in range(0, len(examples), batch_size):
            chunk = examples[i : i + batch_size]
            encoded = [encode(ex, vocab, block_size) for ex in chunk]
            b = to_device(collate(encoded), model_device(model))
            for ex, e, (s, t) in zip(chunk, encoded,
                                     best_spans(*model(b["idx"], b["passage_mask"]), max_len)):
                (c0, _), (_, c1) = e.offsets[s - e.passage_start], e.offsets[t - e.passage_start]
                answers.append(ex.context[c0:c1])
    return answers


@torch.no_grad()
def sentence_attention(model: SpanQA, ex: QAExample, vocab: QAVocab,
                       block_size: int) -> torch.Tensor:
    """How much attention the passage's last token gives each passage sentence.

    With the question first, causal attention lets the passage read the question but not
    the other way round. The last token is the one place that has read the question and
    can see every sentence, so its attention shows where the model looks for the answer.
    Returns (n_layer, n_head, n_sentences); a row sums to at most 1 (the rest of the
    attention lands on the question and ``[SEP]``).
    """
    e = encode(ex, vocab, block_size)
    b = to_device(collate([e]), model_device(model))
    with evaluating(model):
        _, attention = model.backbone.features(b["idx"], return_attention=True)
    last = torch.stack([a[0, :, -1] for a in attention]).cpu()  # (layers, heads, T)
    return torch.stack([last[..., s:t].sum(-1)
                        for s, t in sentence_spans(e.words, e.passage_start)], dim=-1)
