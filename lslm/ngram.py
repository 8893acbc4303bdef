"""An n-gram language model with interpolated Kneser-Ney smoothing: the baseline a GPT must beat.

An n-gram model predicts the next token from the ``order - 1`` tokens before it, by counting.
Kneser-Ney (Chen & Goodman 1999, "interpolated KN") fixes the two faults of raw counts:

* it takes a fixed ``discount`` D off every seen count and gives that mass to the
  next shorter context, so an unseen continuation never gets probability zero;
* below the top order it counts *continuations*, not occurrences: how many different
  tokens come before an n-gram. "Francisco" is frequent but follows only "San", so as a
  guess after an unfamiliar context it should be rare.

    P(w | h) = max(c(h w) - D, 0) / c(h)  +  D * N(h .) / c(h) * P(w | h minus its first token)

where ``c`` is the raw count at the top order and the continuation count below it, and
``N(h .)`` is how many different tokens follow ``h``. The recursion ends in a uniform
distribution over the vocabulary, so every token id has some probability. A context never
seen passes its whole mass to the shorter one.

Counts live in sorted numpy arrays of n-grams packed into int64 keys, so scoring a whole
validation text is a few vectorised look-ups per order (``NGramLM.log_probs``), and the
next-token distribution for sampling is one slice per order (``NGramLM.next_probs``).
``tests/test_world_model.py`` checks both against a dict-based version written out slowly.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from lslm.errors import LslmError, real_number, whole_number

MAX_ORDER = 8
MAX_KEY_BITS = 62  # keys are int64: order x bits per token must fit below the sign bit


def _as_ids(ids: Sequence[int] | np.ndarray, vocab_size: int, what: str) -> np.ndarray:
    arr = np.asarray(ids, dtype=np.int64).reshape(-1) if len(ids) else np.zeros(0, np.int64)
    if arr.size and (arr.min() < 0 or arr.max() >= vocab_size):
        raise LslmError(f"{what} holds token ids outside 0..{vocab_size - 1}: encode it with the "
                        "tokenizer the n-gram model was fitted with")
    return arr


def _group(keys: np.ndarray, weights: np.ndarray, shift: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For sorted n-gram ``keys``: each distinct context (key >> shift), the sum of ``weights``
    over its n-grams, and how many n-grams it has."""
    prefixes = keys >> shift
    ctx, start, n_types = np.unique(prefixes, return_index=True, return_counts=True)
    totals = np.add.reduceat(weights, start) if len(keys) else np.zeros(0, np.int64)
    return ctx, totals, n_types


def _lookup(table: np.ndarray, values: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """``values`` at the positions where ``queries`` occur in the sorted ``table``; 0 elsewhere."""
    if not len(table):
        return np.zeros(len(queries), dtype=values.dtype)
    pos = np.searchsorted(table, queries)
    pos = np.minimum(pos, len(table) - 1)
    return np.where(table[pos] == queries, values[pos], 0)


class NGramLM:
    """A token-level n-gram model with interpolated Kneser-Ney smoothing.

    ``order`` is n (3 looks at the two tokens before); ``discount`` is Kneser-Ney's D, one
    number for every order, or ``None`` to estimate one per order from the counts
    (D = n1 / (n1 + 2 n2), Ney et al. 1994, where n1 and n2 are how many n-grams occur
    once and twice).
    """

    def __init__(self, vocab_size: int, order: int = 4, discount: float | None = None):
        self.vocab_size = whole_number("vocab_size", vocab_size, minimum=1)
        self.order = whole_number("order", order, minimum=1, maximum=MAX_ORDER)
        self.bits = max(1, math.ceil(math.log2(self.vocab_size)))
        if self.bits * self.order > MAX_KEY_BITS:
            raise LslmError(f"order {self.order} with a vocabulary of {self.vocab_size:,} does not fit "
                            f"in 64-bit keys: use order <= {MAX_KEY_BITS // self.bits}")
        if discount is not None:
            discount = real_number("discount", discount, 0.0, 1.0, high_open=True)
            if discount == 0:
                raise LslmError("discount must be above 0: with none, an unseen token gets probability 0")
        self.fixed_discount = discount
        self.fitted = False

    # ----- fitting ---------------------------------------------------------------------
    def _keys(self, ids: np.ndarray, k: int) -> np.ndarray:
        """The packed key of every k-gram of ``ids``, in text order."""
        n = len(ids) - k + 1
        keys = np.zeros(max(n, 0), dtype=np.int64)
        for j in range(k):
            keys = (keys << self.bits) | ids[j : j + n]
        return keys

    def fit(self, ids: Sequence[int] | np.ndarray) -> "NGramLM":
        """Count every n-gram of ``ids`` (one stream of token ids) up to ``order``."""
        ids = _as_ids(ids, self.vocab_size, "the training text")
        if len(ids) < self.order:
            raise LslmError(f"the training text has {len(ids)} tokens, fewer than the order "
                            f"{self.order}: give a longer text")
        self.grams: list[np.ndarray] = []  # per order k (index k - 1): sorted k-gram keys
        self.counts: list[np.ndarray] = []  # their raw (top order) or continuation counts
        self.contexts: list[np.ndarray] = []  # sorted (k-1)-gram context keys
        self.totals: list[np.ndarray] = []  # per context: the sum of its counts
        self.types: list[np.ndarray] = []  # per context: how many different tokens follow
        self.discounts: list[float] = []
        mask = [(1 << (self.bits * k)) - 1 for k in range(self.order + 1)]
        for k in range(1, self.order + 1):
            if k == self.order:  # the top order counts occurrences
                grams, counts = np.unique(self._keys(ids, k), return_counts=True)
            else:  # lower orders count distinct tokens seen before: distinct (k+1)-grams, cut
                longer = np.unique(self._keys(ids, k + 1))
                grams, counts = np.unique(longer & mask[k], return_counts=True)
            counts = counts.astype(np.int64)
            ctx, totals, n_types = _group(grams, counts, self.bits)
            self.grams.append(grams)
            self.counts.append(counts)
            self.contexts.append(ctx)
            self.totals.append(totals)
            self.types.append(n_types.astype(np.int64))
            self.discounts.append(self._discount(counts))
        self.fitted = True
        return self

    def _discount(self, counts: np.ndarray) -> float:
        if self.fixed_discount is not None:
            return self.fixed_discount
        n1, n2 = int((counts == 1).sum()), int((counts == 2).sum())
        d = n1 / (n1 + 2 * n2) if n1 + n2 else 0.5
        return min(max(d, 0.1), 0.95)  # a degenerate count-of-counts must not zero a level

    def _check_fitted(self) -> None:
        if not self.fitted:
            raise LslmError("this n-gram model has not been fitted: call fit(ids) first")

    # ----- probabilities ---------------------------------------------------------------
    def next_probs(self, context: Sequence[int] | np.ndarray) -> np.ndarray:
        """P(w | context) for every token id w (float64, sums to 1); only the last
        ``order - 1`` tokens of ``context`` count."""
        self._check_fitted()
        ctx = _as_ids(context, self.vocab_size, "the context")[-(self.order - 1) :] if self.order > 1 \
            else np.zeros(0, np.int64)
        p = np.full(self.vocab_size, 1.0 / self.vocab_size)
        for k in range(1, len(ctx) + 2):  # unigram first, then longer and longer contexts
            h = 0
            for t in ctx[len(ctx) - (k - 1) :]:
                h = (h << self.bits) | int(t)
            i = np.searchsorted(self.contexts[k - 1], h)
            if i == len(self.contexts[k - 1]) or self.contexts[k - 1][i] != h:
                continue  # context never seen: keep the shorter context's distribution
            total, n_types, d = self.totals[k - 1][i], self.types[k - 1][i], self.discounts[k - 1]
            grams = self.grams[k - 1]
            lo, hi = np.searchsorted(grams, [h << self.bits, (h + 1) << self.bits])
            seen = np.zeros(self.vocab_size)
            seen[grams[lo:hi] & ((1 << self.bits) - 1)] = np.maximum(self.counts[k - 1][lo:hi] - d, 0)
            p = (seen + d * n_types * p) / total
        return p

    def log_probs(self, ids: Sequence[int] | np.ndarray) -> np.ndarray:
        """ln P(ids[i] | ids[:i]) for every i >= 1 of one stream of token ids (float64)."""
        self._check_fitted()
        ids = _as_ids(ids, self.vocab_size, "the text")
        targets = ids[1:]
        p = np.full(len(targets), 1.0 / self.vocab_size)
        for k in range(1, self.order + 1):
            # Position i (predicting ids[i + 1]) has a context of k - 1 tokens once i >= k - 2.
            first = k - 2 if k >= 2 else 0
            if first >= len(targets):
                break
            idx = np.arange(first, len(targets))
            h = np.zeros(len(idx), dtype=np.int64)
            for j in range(k - 1, 0, -1):  # the k - 1 tokens before the target, oldest first
                h = (h << self.bits) | ids[idx + 1 - j]
            total = _lookup(self.contexts[k - 1], self.totals[k - 1], h)
            n_types = _lookup(self.contexts[k - 1], self.types[k - 1], h)
            count = _lookup(self.grams[k - 1], self.counts[k - 1], (h << self.bits) | targets[idx])
            d = self.discounts[k - 1]
            seen = total > 0
            safe = np.where(seen, total, 1)
            new = (np.maximum(count - d, 0) + d * n_types * p[idx]) / safe
            p[idx] = np.where(seen, new, p[idx])
        return np.log(p)

    def nats(self, ids: Sequence[int] | np.ndarray) -> float:
        """Total negative log-likelihood of ``ids[1:]`` given what comes before, in nats."""
        return float(-self.log_probs(ids).sum())

    # ----- sampling --------------------------------------------------------------------
    def generate(self, prompt: Sequence[int], max_new_tokens: int, temperature: float = 1.0,
                 seed: int | None = None, stop: Sequence[int] | None = None) -> list[int]:
        """``prompt`` followed by up to ``max_new_tokens`` sampled ids (probabilities raised to
        1/temperature; 0 is greedy). Stops early once the ids end with ``stop``."""
        self._check_fitted()
        out = [int(i) for i in _as_ids(prompt, self.vocab_size, "the prompt")]
        max_new_tokens = whole_number("max_new_tokens", max_new_tokens, minimum=0)
        temperature = real_number("temperature", temperature, low=0.0)
        rng = np.random.default_rng(seed)
        stop = list(stop or [])
        for _ in range(max_new_tokens):
            p = self.next_probs(out)
            if temperature == 0:
                nxt = int(p.argmax())
            else:
                logp = np.log(np.maximum(p, 1e-300)) / temperature
                q = np.exp(logp - logp.max())
                nxt = int(rng.choice(self.vocab_size, p=q / q.sum()))
            out.append(nxt)
            if stop and out[-len(stop) :] == stop:
                break
        return out
