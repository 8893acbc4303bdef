"""Made-up answers: ask about stories a model never saw, without the story, and count how
often it answers anyway; then give it the story by retrieval and count again.

The world knows every answer, so each reply is one of three things: right, a refusal
("I don't know"), or made up (a confident wrong fact).

* ``closed_book``: the question alone, with no story before it.
* ``answer_and_confidence``: the assistant's greedy answer and the probability it gave
  that answer (the product of its tokens' probabilities): how sure it sounded.
* ``verdict``: "right", "refused" or "made up".
* ``Library`` / ``retrieve``: a minimal retrieval step: the stories the world holds, and the
  one that shares the most rare words (names above all) with the question, by a
  TF-IDF-weighted overlap. ``open_book`` puts it before the question.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from lslm.assistant import Instruction, answer_text, greedy_answer, score
from lslm.errors import LslmError
from lslm.model import GPT
from lslm.tokenizers import ChatTokenizer
from lslm.utils import evaluating
from lslm.world import Story

REFUSAL = "I don't know."
_WORD = re.compile(r"[A-Za-z']+")


def closed_book(item: Instruction) -> str:
    """The question alone: what a user asks a chatbot about a story it was never shown."""
    return item.request


def open_book(item: Instruction, story: Story) -> str:
    """``story`` (retrieved, or the true one) and then the question: the assistant's format."""
    return f"{story.text}\n{item.request}"


@torch.no_grad()
def answer_and_confidence(model: GPT, tokenizer: ChatTokenizer, instruction: str,
                          max_new_tokens: int = 16) -> tuple[str, float]:
    """The greedy answer and the probability the model gave it, end marker included."""
    prompt, written, _ = greedy_answer(model, tokenizer, instruction, max_new_tokens)
    ids = torch.tensor([prompt + written], device=next(model.parameters()).device)
    with evaluating(model):
        logits, _ = model(ids[:, :-1])
    logp = torch.log_softmax(logits[0, len(prompt) - 1:].double(), dim=-1)
    chosen = logp.gather(-1, ids[0, len(prompt):, None].to(logp.device))[:, 0]
    return answer_text(tokenizer, written), math.exp(chosen.sum().item())


def is_refusal(reply: str) -> bool:
    return "don't know" in reply.lower() or "do not know" in reply.lower()


def verdict(item: Instruction, reply: str) -> str:
    """"right" (the true answer, SQuAD exact match), "refused", or "made up"."""
    if is_refusal(reply):
        return "refused"
    return "right" if score(item, reply) == 1.0 else "made up"


def rates(verdicts: Sequence[str]) -> dict[str, float]:
    """The share of each verdict."""
    if not verdicts:
        raise LslmError("no verdicts to count")
    counts = Counter(verdicts)
    return {k: counts[k] / len(verdicts) for k in ("right", "refused", "made up")}


# --------------------------------------------------------------------------- retrieval
def words(text: str) -> list[str]:
    return [w.lower() for w in _WORD.findall(text)]


@dataclass
class Library:
    """Stories to retrieve from, with each word's inverse document frequency."""

    stories: list[Story]

    def __post_init__(self) -> None:
        if not self.stories:
            raise LslmError("a Library needs at least one story")
        self.bags = [set(words(s.text)) for s in self.stories]
        df = Counter(w for bag in self.bags for w in bag)
        n = len(self.stories)
        self.idf = {w: math.log((n + 1) / (c + 1)) + 1.0 for w, c in df.items()}

    def scores(self, question: str) -> list[float]:
        """How well each story matches: the summed IDF of the question's words it contains."""
        asked = set(words(question))
        return [sum(self.idf[w] for w in asked & bag) for bag in self.bags]

    def retrieve(self, question: str) -> Story:
        """The best-matching story (the first of equals)."""
        s = self.scores(question)
        return self.stories[max(range(len(s)), key=s.__getitem__)]
