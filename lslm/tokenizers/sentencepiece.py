"""Subword tokenizers (BPE and unigram), trained with the real sentencepiece library.

The trainer options are chosen so that ``decode(encode(text)) == text`` for any text:
no normalisation, no invented or removed spaces, newlines kept, and characters never
seen in training spelled out as UTF-8 byte pieces such as ``<0xE5>`` instead of <unk>.
"""

from __future__ import annotations

import base64
import binascii
import io
import re
import threading
from collections.abc import Sequence

import sentencepiece as spm

from ..errors import LslmError
from .base import Tokenizer

SP_KINDS = ("bpe", "unigram")
_CHOICES = ", ".join(SP_KINDS)
DEFAULT_VOCAB_SIZE = 1000
# Train on at most this many characters (all of tinyshakespeare fits), so training
# takes a second or two however large the corpus is.
MAX_TRAIN_CHARS = 1_200_000
# sentencepiece silently skips training "sentences" over 4192 bytes; shorter chunks
# keep every line of a file with very long lines.
_MAX_LINE_CHARS = 1000
# sentencepiece's visible space. A literal one in the text would decode as a space,
# so encode() spells it with byte pieces instead.
_SPACE = "\u2581"

_TRAINER_OPTIONS = dict(
    normalization_rule_name="identity",  # keep the text exactly as written
    add_dummy_prefix=False,  # do not invent a space at the start
    remove_extra_whitespaces=False,  # keep leading, trailing and repeated spaces
    allow_whitespace_only_pieces=True,  # runs of spaces (code indentation) can be one token
    byte_fallback=True,  # unseen characters become byte pieces, never <unk>
    user_defined_symbols=["\n"],  # training sees lines, so "\n" must be added by hand
    character_coverage=1.0,  # every character of the corpus gets its own piece
    bos_id=-1,  # a language model reads chunks of running text: no sentence markers
    eos_id=-1,
    input_sentence_size=0,  # use every line (the text is capped above): no random sampling
    num_threads=2,
    minloglevel=2,  # quiet: no training log in notebooks
)


class SentencePieceTokenizer(Tokenizer):
    """A sentencepiece model (``kind`` "bpe" or "unigram"), kept in memory as bytes."""

    def __init__(self, model_proto: bytes, kind: str = "bpe"):
        if kind not in SP_KINDS:
            raise LslmError(f"unknown sentencepiece kind {kind!r}: use one of {_CHOICES}")
        try:
            self._sp = spm.SentencePieceProcessor(model_proto=bytes(model_proto))
        except RuntimeError:
            raise LslmError(
                "these bytes are not a sentencepiece model: train or save the tokenizer again"
            ) from None
        self.kind = kind
        self.model_proto = bytes(model_proto)
        self._space_ids = [self._sp.piece_to_id(f"<0x{b:02X}>") for b in _SPACE.encode()]

    @classmethod
    def train(
        cls, text: str, vocab_size: int = DEFAULT_VOCAB_SIZE, model_type: str = "bpe"
    ) -> SentencePieceTokenizer:
        """Train a ``model_type`` ("bpe" or "unigram") model of ``vocab_size`` pieces."""
        if model_type not in SP_KINDS:
            raise LslmError(f"unknown model_type {model_type!r}: use one of {_CHOICES}")
        if isinstance(vocab_size, bool) or not isinstance(vocab_size, int) or vocab_size < 1:
            raise LslmError(f"--vocab-size must be a positive whole number, not {vocab_size!r}")
        lines = _training_lines(text)
        if not lines:
            raise LslmError("cannot train a tokenizer on empty text: give it some text")
        model = io.BytesIO()
        try:
            _train_interruptibly(
                sentence_iterator=iter(lines),
                model_writer=model,
                model_type=model_type,
                vocab_size=vocab_size,
                **_TRAINER_OPTIONS,
            )
        except RuntimeError as e:
            raise _training_error(str(e), vocab_size) from e
        return cls(model.getvalue(), kind=model_type)

    @property
    def vocab_size(self) -> int:
        return self._sp.get_piece_size()

    @property
    def processor(self) -> spm.SentencePieceProcessor:
        """The underlying ``sentencepiece.SentencePieceProcessor``, for exploring."""
        return self._sp

    def encode(self, text: str) -> list[int]:
        if not isinstance(text, str):
            raise LslmError(f"encode takes a str, got {type(text).__name__}: decode bytes to text first")
        if _SPACE not in text:
            return self._sp.encode(text)
        ids: list[int] = []
        for k, part in enumerate(text.split(_SPACE)):
            if k:
                ids += self._space_ids
            if part:
                ids += self._sp.encode(part)
        return ids

    def decode(self, ids: Sequence[int]) -> str:
        return self._sp.decode(self._check_ids(ids))

    def id_to_piece(self, i: int) -> str:
        return self._sp.id_to_piece(self._check_ids([i])[0])

    def state(self) -> dict:
        return {"kind": self.kind, "model": base64.b64encode(self.model_proto).decode("ascii")}

    @classmethod
    def from_state(cls, state: dict) -> SentencePieceTokenizer:
        """Rebuild from ``state()``."""
        model = state.get("model")
        try:
            proto = base64.b64decode(model, validate=True)
        except (TypeError, ValueError, binascii.Error):
            raise LslmError(
                "a bpe/unigram tokenizer state needs 'model', the base64 of a sentencepiece model: "
                "save the tokenizer again"
            ) from None
        return cls(proto, kind=state.get("kind"))


def _train_interruptibly(**options: object) -> None:
    """``SentencePieceTrainer.train(**options)`` in a thread of its own, so that Ctrl-C works.

    Python delivers Ctrl-C (KeyboardInterrupt) only to the main thread and only between
    Python operations: inside sentencepiece's C++ trainer, that can be half a minute away.
    Waiting for the thread in short joins keeps the main thread ready to be interrupted.
    An interrupted trainer finishes in the background and its model is dropped.
    """
    failure: list[BaseException] = []

    def work() -> None:
        try:
            spm.SentencePieceTrainer.train(**options)
        except BaseException as e:  # handed to the main thread, which raises it
            failure.append(e)

    thread = threading.Thread(target=work, name="sentencepiece-train", daemon=True)
    thread.start()
    while thread.is_alive():
        thread.join(0.1)
    if failure:
        raise failure[0]


def _training_lines(text: str) -> list[str]:
    """The first MAX_TRAIN_CHARS of ``text`` as non-empty lines of at most _MAX_LINE_CHARS."""
    lines = []
    for line in text[:MAX_TRAIN_CHARS].split("\n"):
        lines += [line[i : i + _MAX_LINE_CHARS] for i in range(0, len(line), _MAX_LINE_CHARS)]
    return lines


def _training_error(message: str, vocab_size: int) -> LslmError:
    """Turn sentencepiece's multi-line RuntimeError into a one-line LslmError."""
    if m := re.search(r"Please set it to a value <= (\d+)", message):
        return LslmError(
            f"--vocab-size {vocab_size} is too large for this corpus: "
            f"the largest that works is {m[1]}"
        )
    if m := re.search(r"smaller than required_chars\. \d+ vs (\d+)", message):
        return LslmError(
            f"--vocab-size {vocab_size} is too small for this corpus: the smallest that works is "
            f"{m[1]} (256 byte pieces, the special pieces and one per distinct character)"
        )
    detail = " ".join(message.split())[-200:]
    return LslmError(
        f"sentencepiece could not train on this text ({detail}): "
        "try a longer corpus or another --vocab-size"
    )
