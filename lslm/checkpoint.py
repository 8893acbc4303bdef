"""Checkpoints: one file that holds everything needed to sample from or resume a run.

* Written atomically: the new file is written next to the old one, flushed to disk, then
  renamed over it, so a crash or Ctrl-C mid-save never destroys the previous checkpoint.
* Loaded with ``torch.load(weights_only=True)``: only tensors and plain containers are
  allowed, so opening a checkpoint from someone else cannot run their code.
"""

from __future__ import annotations

import json
import os
import pickle
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import torch

from lslm.errors import LslmError

FORMAT = "lslm-checkpoint-v1"
FILENAME = "ckpt.pt"


def checkpoint_file(path: str | Path) -> Path:
    """A run folder means its ``ckpt.pt``; a file path is taken as it is."""
    path = Path(path)
    return path / FILENAME if path.is_dir() or path.suffix == "" else path


def atomic_save(obj: Any, path: str | Path) -> Path:
    """``torch.save`` to a temporary file in the same folder, fsync, then rename over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)  # atomic on POSIX and Windows
    except BaseException:
        # Includes KeyboardInterrupt: drop the half-written file, keep the old checkpoint.
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def save_checkpoint(path: str | Path, **parts: Any) -> Path:
    """Save the named parts (model, optimizer, tokenizer, config, history, rng, ...).

    Dicts of JSON-friendly values are stored as JSON text, so the file holds nothing
    but tensors, numbers and strings.
    """
    payload: dict[str, Any] = {"format": FORMAT}
    for name, value in parts.items():
        if name in ("model", "optimizer", "rng"):
            payload[name] = value
        else:
            payload[name] = json.dumps(value)
    return atomic_save(payload, checkpoint_file(path))


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint saved by ``save_checkpoint``, with a clear error for every bad file."""
    file = checkpoint_file(path)
    if not file.exists():
        raise LslmError(
            f"no checkpoint at {file}: train one with `lslm train --out DIR` and pass that DIR"
        )
    try:
        payload = torch.load(file, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        if not zipfile.is_zipfile(file):  # not torch's format at all: damaged bytes
            raise LslmError(
                f"{file} is not a readable lslm checkpoint (truncated or corrupt): "
                "retrain, or resume from an earlier copy"
            ) from None
        # weights_only refused something that is not a tensor or a plain value.
        raise LslmError(
            f"{file} holds pickled objects (which could run code), not only tensors: lslm will "
            "not load it; use a checkpoint written by lslm, or retrain"
        ) from None
    except Exception as e:  # truncated zip, random bytes, ...
        reason = str(e).strip().splitlines()[0][:120] if str(e).strip() else type(e).__name__
        raise LslmError(
            f"{file} is not a readable lslm checkpoint (truncated or corrupt: {reason}); "
            "retrain, or resume from an earlier copy"
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise LslmError(f"{file} is not an lslm checkpoint ({FORMAT}); pass a folder made by `lslm train`")
    out: dict[str, Any] = {}
    for name, value in payload.items():
        if name == "format":
            continue
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except json.JSONDecodeError:
                raise LslmError(f"{file} is corrupt (its {name!r} part is not valid JSON); retrain") from None
        out[name] = value
    return out


def load_model(path: str | Path, device: str | torch.device = "cpu"):
    """Load ``(model, tokenizer)`` from a checkpoint, ready to evaluate or sample."""
    from lslm.model import GPT, GPTConfig
    from lslm.tokenizers import tokenizer_from_state

    ckpt = load_checkpoint(path)
    for part in ("model", "model_config", "tokenizer"):
        if part not in ckpt:
            raise LslmError(f"{checkpoint_file(path)} has no {part!r} part; it is incomplete, retrain")
    config = GPTConfig.from_dict(ckpt["model_config"])
    tokenizer = tokenizer_from_state(ckpt["tokenizer"])
    check_vocab(config.vocab_size, tokenizer.vocab_size, checkpoint_file(path))
    model = GPT(config)
    load_state(model, ckpt["model"], checkpoint_file(path))
    return model.to(device).eval(), tokenizer


def check_vocab(model_vocab: int, tokenizer_vocab: int, where: Path | str) -> None:
    if model_vocab != tokenizer_vocab:
        raise LslmError(
            f"{where} was made for a vocabulary of {model_vocab} tokens but its tokenizer has "
            f"{tokenizer_vocab}: use the tokenizer that was trained with this model"
        )


def load_state(model: torch.nn.Module, state: dict, where: Path | str) -> None:
    """``load_state_dict`` with a one-line message when shapes do not fit."""
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        first = next((ln.strip() for ln in str(e).splitlines() if "size mismatch" in ln), "")
        raise LslmError(
            f"{where} does not fit this model ({first or 'different layers'}); "
            "it was made for another vocabulary or model shape: load it with its own config"
        ) from None
