"""A chat template and a tokenizer with its special tokens.

An assistant reads a conversation, and it must tell who said what. Chat models mark the
turns with *special tokens*: ids that no text can produce, added to the vocabulary after
pretraining (Llama 3 and ChatML use tokens like ``<|user|>``). Here

    <|user|>Where did Percy go?<|assistant|>the farm<|end|>

is the prompt ``<|user|>...<|assistant|>`` and the response ``the farm<|end|>``; the model
stops when it writes ``<|end|>``.

``ChatTokenizer`` wraps a trained tokenizer: the special strings become the ids after the
base vocabulary (2048, 2049, 2050 for the world's 2048 pieces), and everything between them
is the base tokenizer's. The model needs as many new rows in its embedding:
``lslm.finetune.add_token_rows``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from ..errors import LslmError, shown
from .base import Tokenizer


@dataclass(frozen=True)
class ChatTemplate:
    """The three markers of a single-turn chat, and how an exchange is written with them."""

    user: str = "<|user|>"
    assistant: str = "<|assistant|>"
    end: str = "<|end|>"

    def __post_init__(self) -> None:
        specials = self.specials
        if not all(isinstance(s, str) and s.strip() for s in specials) or len(set(specials)) != 3:
            raise LslmError(f"a chat template needs three different, non-empty markers, got {shown(specials)}")

    @property
    def specials(self) -> tuple[str, str, str]:
        return (self.user, self.assistant, self.end)

    def prompt(self, instruction: str) -> str:
        """What the model reads before it answers."""
        if not isinstance(instruction, str) or not instruction.strip():
            raise LslmError("an instruction must be a non-empty string")
        return f"{self.user}{instruction}{self.assistant}"

    def response(self, answer: str) -> str:
        """What the model is trained to write: the answer, then the end marker."""
        return f"{answer}{self.end}"


class ChatTokenizer(Tokenizer):
    """A trained tokenizer plus the template's markers as special tokens after its vocabulary."""

    kind = "chat"

    def __init__(self, base: Tokenizer, template: ChatTemplate | None = None):
        if not isinstance(base, Tokenizer) or isinstance(base, ChatTokenizer):
            raise LslmError("ChatTokenizer wraps a trained lslm tokenizer (one without chat markers)")
        self.base = base
        self.template = template or ChatTemplate()
        self.special_ids = {s: base.vocab_size + i for i, s in enumerate(self.template.specials)}
        self._split = re.compile("(" + "|".join(map(re.escape, self.template.specials)) + ")")

    @property
    def vocab_size(self) -> int:
        return self.base.vocab_size + len(self.special_ids)

    def encode(self, text: str) -> list[int]:
        ids: list[int] = []
        for part in self._split.split(text):
            if part in self.special_ids:
                ids.append(self.special_ids[part])
            elif part:
                ids += self.base.encode(part)
        return ids

    def decode(self, ids: Sequence[int]) -> str:
        ids = self._check_ids(ids)
        out, run = [], []
        for i in ids + [-1]:
            if 0 <= i < self.base.vocab_size:
                run.append(i)
                continue
            if run:
                out.append(self.base.decode(run))
                run = []
            if i >= 0:
                out.append(self.template.specials[i - self.base.vocab_size])
        return "".join(out)

    def id_to_piece(self, i: int) -> str:
        if i >= self.base.vocab_size:
            return self.template.specials[self._check_ids([i])[0] - self.base.vocab_size]
        return self.base.id_to_piece(i)

    def state(self) -> dict:
        return {"kind": self.kind, "base": self.base.state(), "template": list(self.template.specials)}

    @classmethod
    def from_state(cls, state: dict, base: Tokenizer) -> "ChatTokenizer":
        """Rebuild from ``state()``, given its base tokenizer (rebuilt from ``state["base"]``)."""
        template = state.get("template")
        if not isinstance(template, list) or len(template) != 3:
            raise LslmError("this chat tokenizer state has no template of three markers: save it again")
        return cls(base, ChatTemplate(*template))


def check_chat_tokenizer(tokenizer: object, template: ChatTemplate) -> ChatTokenizer:
    """``tokenizer`` if it has each of the template's markers as one special token, else a
    one-line ``LslmError`` that says how to get one."""
    missing = [s for s in template.specials
               if not isinstance(tokenizer, ChatTokenizer) or s not in tokenizer.special_ids]
    if missing:
        raise LslmError(f"the tokenizer has no special token for {', '.join(missing)}: wrap it as "
                        "ChatTokenizer(tokenizer, template) and add as many embedding rows to the model "
                        "(lslm.finetune.add_token_rows)")
    return tokenizer  # type: ignore[return-value]
