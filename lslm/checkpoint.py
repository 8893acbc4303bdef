"""Checkpoints: one file that holds everything needed to sample from or resume a run.

* Written atomically: the new file is written next to the old one, flushed to disk, then
  renamed over it, so a crash or Ctrl-C mid-save never destroys the previous checkpoint.
* Loaded with ``torch.load(weights_only=True)``: only tensors and plain containers are
  allowed, so opening a checkpoint from someone else cannot run their code.
"""

from __future__ import annotations

import json
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from lslm.errors import LslmError
from lslm.utils import atomic_write, error_summary

FORMAT = "lslm-checkpoint-v1"
FILENAME = "ckpt.pt"


def checkpoint_file(path: str | Path) -> Path:
    """A run folder means its ``ckpt.pt``; a file path is taken as it is."""
    path = Path(path)
    return path / FILENAME if path.is_dir() or path.suffix == "" else path


def atomic_save(obj: Any, path: str | Path) -> Path:
    """``torch.save`` to a temporary file in the same folder, fsync, then rename over ``path``."""
    return atomic_write(path, lambda f: torch.save(obj, f))


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
        reason = error_summary(e)
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
    model = GPT(config, seed=0)  # its weights are replaced: draw none of the caller's random numbers
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


def save_trainer(trainer: Any, path: str | Path | None = None) -> Path:
    """Checkpoint a ``Trainer`` with everything needed to resume it exactly: weights,
    optimizer, both random generators, configs, tokenizer, history and step.

    ``path`` defaults to the trainer's ``out_dir``. With several processes only rank 0
    writes (they all hold the same weights).
    """
    target = Path(path) if path is not None else trainer.out_dir
    if target is None:
        raise LslmError("no checkpoint folder: pass out_dir to Trainer or a path to save()")
    if not trainer.is_main:
        return checkpoint_file(target)
    return save_checkpoint(
        target,
        model={k: v.detach().cpu() for k, v in trainer.model.state_dict().items()},
        optimizer=trainer.optimizer.state_dict(),
        rng={"torch": trainer.rng_state["cpu"], "batch": trainer.batch_gen.get_state()},
        model_config=trainer.model.config.to_dict(),
        train_config=trainer.config.to_dict(),
        tokenizer=trainer.tokenizer.state(),
        history=trainer.history,
        step=trainer.step,
        meta=trainer.meta,
    )


def resume_trainer(cls: type, path: str | Path, data: dict, out_dir: str | Path | None = None,
                   **kwargs: Any) -> Any:
    """Rebuild a ``Trainer`` (or subclass ``cls``) from a checkpoint, so that ``fit``
    continues the same loss curve. ``kwargs`` go to the constructor (callbacks, tensorboard);
    the other keywords override fields of the stored TrainConfig (``max_iters``, ``progress`` ...)."""
    from lslm.loop import TrainConfig
    from lslm.model import GPT, GPTConfig
    from lslm.tokenizers import tokenizer_from_state

    ckpt = load_checkpoint(path)
    model = GPT(GPTConfig.from_dict(ckpt["model_config"]), seed=0)  # weights replaced below
    load_state(model, ckpt["model"], path)
    tokenizer = tokenizer_from_state(ckpt["tokenizer"])
    passed = {k: kwargs.pop(k) for k in ("callbacks", "tensorboard") if k in kwargs}
    config = TrainConfig.from_dict({**ckpt["train_config"], **kwargs})
    trainer = cls(model, tokenizer, data, config, out_dir if out_dir is not None else path,
                  meta=ckpt.get("meta"), **passed)
    trainer.optimizer.load_state_dict(ckpt["optimizer"])
    trainer.history = ckpt["history"]
    trainer.step = int(ckpt["step"])
    trainer.rng_state["cpu"] = ckpt["rng"]["torch"]
    trainer.batch_gen.set_state(ckpt["rng"]["batch"])
    return trainer
