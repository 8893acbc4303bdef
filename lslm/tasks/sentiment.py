"""Sentiment analysis: is a short review positive or negative?

Four parts, top to bottom:

1. ``make_reviews``: a seeded generator of one-sentence reviews with known labels and
   three phenomena a bag of words gets wrong: negation ("was not good"), intensifiers
   ("was very bad") and contrast ("the food was bad, but the staff was great": the
   clause after "but" decides). Its test split holds (adjective, phenomenon) pairs that
   training never shows, so a model must generalise, not memorise.
2. Loaders for data people bring: a TSV file of ``text<TAB>label`` lines and a folder
   per label (``root/pos/*.txt``, ``root/neg/*.txt``).
3. ``SentimentClassifier``: a GPT backbone (pretrained or random) with a linear head on
   the hidden state of the last real token, plus training, prediction and accuracy.
4. Explanations: attention from the classification position to each word, and
   occlusion (delete a word, watch the prediction move).
"""

from __future__ import annotations

import random
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from lslm.devices import model_device
from lslm.errors import LslmError
from lslm.files import MAX_TEXT_BYTES, read_text
from lslm.model import GPT
from lslm.tokenizers import Tokenizer
from lslm.utils import evaluating, seeded

LABELS = ("neg", "pos")  # index 0 and 1 of the classifier's output

# ---------------------------------------------------------------------------------------
# 1. The generator
# ---------------------------------------------------------------------------------------

POSITIVE = ("good", "great", "nice", "lovely", "fine", "superb", "pleasant", "perfect",
            "wonderful", "excellent", "amazing", "brilliant")
NEGATIVE = ("bad", "awful", "poor", "terrible", "horrible", "dull", "boring", "nasty",
            "dreadful", "weak", "mediocre", "lousy")
NOUNS = ("food", "service", "movie", "room", "staff", "music", "book", "coffee", "show",
         "hotel", "phone", "game", "plot", "view", "menu", "bed")
DETERMINERS = ("the", "this", "our", "my")
INTENSIFIERS = ("very", "really", "so", "truly", "extremely")
NEGATIONS = ("was not", "wasn't", "was never")
KINDS = ("plain", "intensified", "negated", "contrast")
DEFAULT_MIX = {"plain": 0.2, "intensified": 0.2, "negated": 0.3, "contrast": 0.3}


@dataclass(frozen=True)
class Review:
    """One generated sentence with its ground truth.

    ``kind`` is the construction of the sentence; ``adjective`` is the adjective whose
    polarity (flipped by a negation) decides the label, the one after "but" in a contrast.
    ``held_out`` says whether the sentence uses an (adjective, phenomenon) pair that the
    training split never contains.
    """

    text: str
    label: str
    kind: str
    adjective: str
    held_out: bool


@dataclass
class ReviewData:
    """Train, validation and test reviews, and the (adjective, phenomenon) pairs held out."""

    train: list[Review]
    val: list[Review]
    test: list[Review]
    held_out: dict[str, str]  # adjective -> "negated" or "contrast"


def polarity(adjective: str) -> str:
    """``"pos"`` or ``"neg"``: the label of "the food was <adjective>."."""
    if adjective in POSITIVE:
        return "pos"
    if adjective in NEGATIVE:
        return "neg"
    raise LslmError(
        f"{adjective!r} is not one of the generator's adjectives: use one of POSITIVE or NEGATIVE"
    )


def held_out_pairs(seed: int = 0) -> dict[str, str]:
    """Which adjective never appears with which phenomenon in training.

    A third of each polarity's adjectives is never negated in training, another third is
    never the decisive (after "but") adjective of a contrast; the last third is seen in
    every construction. Both polarities lose the same number, so neither is favoured.
    """
    rng = random.Random(f"held-out-{seed}")
    held = {}
    for words in (POSITIVE, NEGATIVE):
        shuffled = list(words)
        rng.shuffle(shuffled)
        third = len(shuffled) // 3
        held.update({w: "negated" for w in shuffled[:third]})
        held.update({w: "contrast" for w in shuffled[third : 2 * third]})
    return held


def _clause(rng: random.Random, adjective: str, negated: bool, intensified: bool) -> tuple[str, str]:
    """'the food was very good' and its label."""
    subject = f"{rng.choice(DETERMINERS)} {rng.choice(NOUNS)}"
    verb = rng.choice(NEGATIONS) if negated else "was"
    adverb = f"{rng.choice(INTENSIFIERS)} " if intensified else ""
    label = polarity(adjective)
    if negated:
        label = "pos" if label == "neg" else "neg"
    return f"{subject} {verb} {adverb}{adjective}", label


def _review(rng: random.Random, kind: str, label: str, held: dict[str, str]) -> Review:
    """One sentence of ``kind`` whose label is ``label``."""
    negated = kind == "negated" or (kind == "contrast" and rng.random() < 0.3)
    # The adjective's own polarity is the label, unless a negation flips it.
    own = label if not negated else ("neg" if label == "pos" else "pos")
    adjective = rng.choice(POSITIVE if own == "pos" else NEGATIVE)
    intensified = kind == "intensified" or (kind != "plain" and rng.random() < 0.3)
    text, got = _clause(rng, adjective, negated, intensified)
    uses = {"negated"} if negated else set()
    if kind == "contrast":
        # The first clause has the opposite sentiment (that is what "but" signals).
        first_label = "neg" if label == "pos" else "pos"
        first_negated = rng.random() < 0.3
        first_own = first_label if not first_negated else label
        first_adj = rng.choice(POSITIVE if first_own == "pos" else NEGATIVE)
        first, _ = _clause(rng, first_adj, first_negated, rng.random() < 0.3)
        text = f"{first}, but {text}"
        uses.add("contrast")
        # A negated first clause also shows "not <first_adj>" to the model.
        held_first = first_negated and held.get(first_adj) == "negated"
    else:
        held_first = False
    if got != label:  # only possible when an adjective sits in both word lists
        raise LslmError(
            f"{adjective!r} is in both POSITIVE and NEGATIVE, so its label is ambiguous: "
            "keep each adjective in only one of the two lists"
        )
    is_held = held.get(adjective) in uses or held_first
    return Review(f"{text}.", label, kind, adjective, is_held)


def make_reviews(
    n_train: int = 2000,
    n_val: int = 300,
    n_test: int = 600,
    seed: int = 0,
    mix: dict[str, float] | None = None,
    max_chars: int = 64,
) -> ReviewData:
    """Generate labelled reviews; the same arguments always give the same data.

    ``mix`` sets the share of each kind ("plain", "intensified", "negated", "contrast").
    Labels are balanced in expectation. ``train`` and ``val`` use only the pairs seen in
    training; ``test`` holds only sentences with a held-out pair (see ``held_out_pairs``),
    so test accuracy measures generalisation. No sentence is longer than ``max_chars``
    (the pretrained model reads 64 characters), and no text appears in two splits.
    """
    mix = dict(DEFAULT_MIX if mix is None else mix)
    unknown = set(mix) - set(KINDS)
    if unknown:
        raise LslmError(f"unknown kinds {sorted(unknown)} in mix: use only {', '.join(KINDS)}")
    if any(v < 0 for v in mix.values()) or sum(mix.values()) <= 0:
        raise LslmError("mix shares must be >= 0 with a positive sum, e.g. {'plain': 1.0}")
    if min(n_train, n_val, n_test) < 0:
        raise LslmError("n_train, n_val and n_test must be >= 0")
    if n_test and not {"negated", "contrast"} & {k for k, v in mix.items() if v > 0}:
        raise LslmError(
            "the test split needs negated or contrast sentences: give one of them a share in mix"
        )
    held = held_out_pairs(seed)
    rng = random.Random(seed)
    kinds, weights = zip(*mix.items())
    want = {"train": n_train, "val": n_val, "test": n_test}
    splits: dict[str, list[Review]] = {name: [] for name in want}
    seen: set[str] = set()
    tries = 0
    while any(len(splits[s]) < n for s, n in want.items()):
        tries += 1
        if tries > 200 * (n_train + n_val + n_test) + 10_000:
            raise LslmError("could not make enough distinct reviews: ask for fewer, or raise max_chars")
        kind = rng.choices(kinds, weights)[0]
        r = _review(rng, kind, rng.choice(LABELS), held)
        if len(r.text) > max_chars or r.text in seen:
            continue
        if r.held_out:
            target = "test"
        else:
            target = "train" if len(splits["train"]) < n_train else "val"
        if len(splits[target]) < want[target]:
            splits[target].append(r)
            seen.add(r.text)
    return ReviewData(splits["train"], splits["val"], splits["test"], held)


def pairs(reviews: Sequence[Review]) -> list[tuple[str, str]]:
    """``(text, label)`` pairs, the format the loaders return."""
    return [(r.text, r.label) for r in reviews]


# ---------------------------------------------------------------------------------------
# 2. Loading your own data
# ---------------------------------------------------------------------------------------


def check_examples(
    examples: Sequence[tuple[str, str]], labels: Sequence[str] = LABELS, where: str = "the data"
) -> list[tuple[str, str]]:
    """``examples`` as a list, after checking it is non-empty with known labels and text."""
    examples = list(examples)
    if not examples:
        raise LslmError(f"{where} holds no examples: give at least one text with its label")
    for i, (text, label) in enumerate(examples):
        if label not in labels:
            raise LslmError(
                f"example {i} of {where} has label {label!r}, which is not one of the model's labels "
                f"{tuple(labels)}: fix the label, or build the classifier with "
                f"labels={tuple(labels) + (label,)}"
            )
        if not text.strip():
            raise LslmError(f"example {i} of {where} has an empty text: remove it")
    return examples


def load_tsv(path: str | Path, labels: Sequence[str] = LABELS) -> list[tuple[str, str]]:
    """Read ``text<TAB>label`` lines into ``(text, label)`` pairs.

    Labels are stripped of surrounding spaces and compared as written (``pos`` is not
    ``Pos``).
    """
    from lslm.tasks.common import read_tsv

    rows = read_tsv(path, columns=2)
    if rows[0][1] not in labels and rows[0][1].lower() == "label":
        raise LslmError(
            f"the first line of {path} looks like a header {rows[0]}: delete it, every line is an example"
        )
    examples = [(text, label.strip()) for text, label in rows]
    return check_examples(examples, labels, where=str(path))


def load_folder(root: str | Path, labels: Sequence[str] = LABELS) -> list[tuple[str, str]]:
    """Read a folder per label, one example per ``.txt`` file: ``root/pos/a.txt`` is positive.

    Each file must be a regular UTF-8 file (a device or FIFO named ``.txt`` is an error).

    Files are read in sorted order, so the result is the same on every machine. A
    subfolder whose name is not a label is an error (a typo would silently drop data).
    """
    root = Path(root)
    if not root.is_dir():
        raise LslmError(
            f"{root} is not a folder: give a folder with one subfolder per label ({', '.join(labels)})"
        )
    examples = []
    for sub in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        if sub.name not in labels:
            raise LslmError(
                f"folder {sub} is not one of the labels {tuple(labels)}: rename it, "
                "or pass labels=... that include it"
            )
        for file in sorted(sub.glob("*.txt")):
            text = read_text(file, MAX_TEXT_BYTES, "text file").strip()  # regular files only
            if not text:
                raise LslmError(f"{file} is empty: remove it or write the review into it")
            examples.append((text, sub.name))
    return check_examples(examples, labels, where=str(root))


def encode_texts(
    texts: Sequence[str], tokenizer: Tokenizer, block_size: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids padded on the right into a (batch, longest) tensor, and each text's length.

    Padding on the right is safe for a causal model: no real token can see the padding
    after it, so the last real token's hidden state is the same with or without it.
    A text longer than ``block_size`` tokens is an error, not silently cut: cutting the
    end could remove the "but ..." clause that decides the label.
    """
    if not texts:
        raise LslmError("no texts to encode: give at least one")
    encoded = []
    for i, text in enumerate(texts):
        ids = tokenizer.encode(text)
        if not ids:
            raise LslmError(f"text {i} is empty: remove it")
        if len(ids) > block_size:
            raise LslmError(
                f"text {i} is {len(ids)} tokens long but the model reads at most {block_size} "
                f"(block_size): shorten it or split it into sentences ({text[:30]!r}...)"
            )
        encoded.append(ids)
    lengths = torch.tensor([len(ids) for ids in encoded])
    idx = torch.zeros(len(encoded), int(lengths.max()), dtype=torch.long)
    for row, ids in enumerate(encoded):
        idx[row, : len(ids)] = torch.tensor(ids)
    return idx, lengths


# ---------------------------------------------------------------------------------------
# 3. The classifier
# ---------------------------------------------------------------------------------------


def pool_hidden(hidden: torch.Tensor, lengths: torch.Tensor, pool: str = "last") -> torch.Tensor:
    """One vector per text from (batch, time, channels) features whose rows are padded after
    ``lengths`` real tokens: the last real token's ("last"), or the mean over the real tokens
    only ("mean"; the padding must not count)."""
    if pool == "last":
        return hidden[torch.arange(hidden.size(0), device=hidden.device), lengths - 1]
    real = (torch.arange(hidden.size(1), device=hidden.device) < lengths[:, None]).unsqueeze(-1)
    return (hidden * real).sum(1) / lengths[:, None].to(hidden.dtype)


class SentimentClassifier(nn.Module):
    """A GPT body with a classification head instead of the language-model head.

    The GPT is causal, so only the last real token has read the whole text; its hidden
    state (after the final LayerNorm) goes through one linear layer to a score per label.
    """

    def __init__(
        self, backbone: GPT, tokenizer: Tokenizer, labels: Sequence[str] = LABELS, pool: str = "last"
    ):
        super().__init__()
        if pool not in ("last", "mean"):
            raise LslmError(f"pool must be 'last' or 'mean', got {pool!r}")
        self.pool = pool
        if len(labels) < 2 or len(set(labels)) != len(labels):
            raise LslmError(f"a classifier needs at least two distinct labels, got {tuple(labels)}")
        self.backbone = backbone
        self.tokenizer = tokenizer
        self.labels = tuple(labels)
        self.head = nn.Linear(backbone.config.n_embd, len(labels))
        nn.init.normal_(self.head.weight, std=0.02)
        nn.init.zeros_(self.head.bias)

    @property
    def block_size(self) -> int:
        return self.backbone.config.block_size

    def forward(
        self, idx: torch.Tensor, lengths: torch.Tensor, return_attention: bool = False
    ) -> tuple[torch.Tensor, list[torch.Tensor] | None]:
        """Scores (batch, labels), and the attention maps if asked for."""
        hidden, attention = self.backbone.features(idx, return_attention=return_attention)
        return self.head(pool_hidden(hidden, lengths, self.pool)), attention

    def encode(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        return encode_texts(texts, self.tokenizer, self.block_size)

    @torch.no_grad()
    def probs(self, texts: Sequence[str], batch_size: int = 256) -> torch.Tensor:
        """Probability of each label, (len(texts), labels)."""
        out, device = [], model_device(self)
        with evaluating(self):
            for start in range(0, len(texts), batch_size):
                idx, lengths = (t.to(device) for t in self.encode(texts[start : start + batch_size]))
                out.append(F.softmax(self(idx, lengths)[0], dim=-1))
        if not out:
            raise LslmError("no texts to classify: give at least one")
        return torch.cat(out).cpu()  # on the CPU, wherever the model runs

    def predict(self, texts: Sequence[str]) -> list[str]:
        """The likeliest label of each text."""
        return [self.labels[i] for i in self.probs(texts).argmax(dim=-1).tolist()]


def classifier(
    tokenizer: Tokenizer, backbone: GPT, pretrained: bool = True, seed: int = 0, pool: str = "last"
) -> SentimentClassifier:
    """A classifier on a copy of ``backbone``: its trained weights, or the same network
    freshly initialised (``pretrained=False``), for a fair from-scratch comparison."""
    import copy

    # The same seed gives the same head (and from-scratch body); the global generator is
    # seeded only inside the block, so the caller's random numbers are left as they were.
    with seeded(seed):
        body = copy.deepcopy(backbone) if pretrained else GPT(backbone.config)
        return SentimentClassifier(body, tokenizer, pool=pool)


def train_classifier(
    model: SentimentClassifier,
    examples: Sequence[tuple[str, str]],
    steps: int = 150,
    batch_size: int = 32,
    lr: float = 5e-4,
    seed: int = 0,
    progress: bool = False,
) -> list[float]:
    """Fine-tune every weight on ``(text, label)`` examples; returns the loss at each step.

    ``progress=True`` shows a progress bar.
    """
    from lslm.tasks.common import fit

    examples = check_examples(examples, model.labels, where="the training examples")
    idx, lengths = model.encode([t for t, _ in examples])
    targets = torch.tensor([model.labels.index(label) for _, label in examples])

    def sample_batch(gen: torch.Generator):
        rows = torch.randint(len(examples), (min(batch_size, len(examples)),), generator=gen)
        width = int(lengths[rows].max())  # trim the padding the batch does not need
        return idx[rows, :width], lengths[rows], targets[rows]

    def loss_fn(m: SentimentClassifier, batch) -> torch.Tensor:
        x, n, y = batch
        return F.cross_entropy(m(x, n)[0], y)

    return fit(model, loss_fn, sample_batch, steps, lr=lr, seed=seed, progress=progress)


def accuracy(model: SentimentClassifier, examples: Sequence[tuple[str, str]]) -> float:
    """The share of ``examples`` whose label the model predicts."""
    examples = check_examples(examples, model.labels)
    predicted = model.predict([t for t, _ in examples])
    return sum(p == label for p, (_, label) in zip(predicted, examples)) / len(examples)


def majority_baseline(train_labels: Sequence[str], test_labels: Sequence[str]) -> float:
    """Accuracy on ``test_labels`` of always guessing the most common training label.

    Ties go to the label that sorts first, so the answer is the same on every run.
    """
    if not train_labels or not test_labels:
        raise LslmError("majority_baseline needs non-empty train and test labels")
    counts = Counter(train_labels)
    top = max(sorted(counts), key=lambda label: counts[label])
    return sum(label == top for label in test_labels) / len(test_labels)


def confusion(
    model: SentimentClassifier, examples: Sequence[tuple[str, str]]
) -> torch.Tensor:
    """Counts[true, predicted] over ``examples``, rows and columns in ``model.labels`` order."""
    examples = check_examples(examples, model.labels)
    predicted = model.predict([t for t, _ in examples])
    counts = torch.zeros(len(model.labels), len(model.labels), dtype=torch.long)
    for p, (_, label) in zip(predicted, examples):
        counts[model.labels.index(label), model.labels.index(p)] += 1
    return counts


# ---------------------------------------------------------------------------------------
# 4. Which words drive the decision?
# ---------------------------------------------------------------------------------------


def word_spans(text: str) -> list[tuple[str, int, int]]:
    """``(word, start, end)`` for each word and each punctuation mark of ``text``.

    "wasn't" stays one word; "good," gives "good" and ",".
    """
    return [(m.group(), m.start(), m.end()) for m in re.finditer(r"[\w']+|[^\w\s]", text)]


@torch.no_grad()
def word_attention(
    model: SentimentClassifier, text: str, layers: Sequence[int] | None = None
) -> list[tuple[str, float]]:
    """How much the classification position (the last character) attends to each word.

    Attention weights of the chosen ``layers`` (default: all) are averaged over heads
    and layers, then the characters of each word are summed. The weights on spaces are
    left out, so the words' shares add up to a little under 1.
    """
    idx, lengths = (t.to(model_device(model)) for t in model.encode([text]))
    with evaluating(model):
        _, attention = model(idx, lengths, return_attention=True)
    layers = range(len(attention)) if layers is None else layers
    row = torch.stack([attention[i][0, :, -1, :] for i in layers]).mean(dim=(0, 1))  # (T,)
    return [(w, row[a:b].sum().item()) for w, a, b in word_spans(text)]


def without_word(text: str, index: int) -> str:
    """``text`` with its ``index``-th word (``word_spans`` order) and one space removed."""
    spans = word_spans(text)
    _, a, b = spans[index]
    if b < len(text) and text[b] == " ":
        b += 1
    elif a > 0 and text[a - 1] == " ":
        a -= 1
    return text[:a] + text[b:]


@torch.no_grad()
def occlusion(model: SentimentClassifier, text: str, label: str = "pos") -> list[tuple[str, float]]:
    """For each word: how much deleting it changes P(``label``), new minus old.

    A large drop means the word was pushing towards ``label``; a large rise means it
    was holding the prediction back. Unlike attention, this measures an effect on the
    output directly (at the price of one forward pass per word).
    """
    if label not in model.labels:
        raise LslmError(f"label {label!r} is not one of the model's labels {model.labels}")
    k = model.labels.index(label)
    return occlusion_effects(lambda texts: model.probs(texts)[:, k], text)


def occlusion_effects(prob: Callable[[list[str]], torch.Tensor], text: str) -> list[tuple[str, float]]:
    """``occlusion`` for any scorer: ``prob(texts)`` gives one probability per text; for each
    word of ``text``, the probability without that word minus the probability with it."""
    spans = word_spans(text)
    p = prob([text] + [without_word(text, i) for i in range(len(spans))])
    return [(w, float(p[i + 1] - p[0])) for i, (w, _, _) in enumerate(spans)]


def draw_words(
    ax, words: Sequence[tuple[str, float]], title: str = "", signed: bool = False,
    scale: float | None = None,
) -> None:
    """Draw a sentence on ``ax`` with each word's background coloured by its weight.

    ``signed=True`` colours negative weights blue and positive ones red (for occlusion).
    ``scale`` is the weight drawn at full colour (larger ones are clipped to it); by
    default the sentence's largest weight, which makes even tiny weights look strong, so
    give a fixed scale (1.0 for a change of probability) to compare sentences.
    """
    import matplotlib.pyplot as plt

    if scale is not None and not scale > 0:
        raise LslmError(f"scale must be a positive number, got {scale!r}")
    top = scale or max((abs(v) for _, v in words), default=1.0) or 1.0
    cmap = plt.get_cmap("RdBu_r" if signed else "Oranges")
    ax.set_axis_off()
    ax.set_title(title, fontsize=10, loc="left")
    previous = None
    for word, value in words:
        share = max(-1.0, min(1.0, value / top))
        shade = 0.5 + 0.5 * share if signed else 0.85 * share
        strong = abs(share) > 0.6  # white text on the darkest backgrounds
        style = dict(fontsize=12, family="monospace", va="center", color="white" if strong else "black",
                     bbox=dict(facecolor=cmap(shade), edgecolor="none", pad=2.0))
        if previous is None:
            previous = ax.text(0.0, 0.5, word, transform=ax.transAxes, **style)
        else:  # placed just right of the previous word, whatever the figure's size
            gap = 5 if word in ",.!?" else 9
            previous = ax.annotate(word, xy=(1, 0.5), xycoords=previous, xytext=(gap, 0),
                                   textcoords="offset points", **style)


__all__ = [
    "LABELS", "Review", "ReviewData", "SentimentClassifier", "accuracy", "check_examples",
    "classifier", "confusion", "draw_words", "encode_texts", "held_out_pairs", "load_folder",
    "load_tsv", "majority_baseline", "make_reviews", "occlusion", "pairs", "polarity",
    "train_classifier", "word_attention", "word_spans", "without_word",
]
