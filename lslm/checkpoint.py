"""Checkpoints: one file that holds everything needed to sample from or resume a run.

* Written atomically: the new file is written next to the old one, flushed to disk, then
  renamed over it, so a crash or Ctrl-C mid-save never destroys the previous checkpoint.
* Loaded with ``torch.load(weights_only=True)``: only tensors and plain containers are
  allowed, so opening a checkpoint from someone else cannot run their code.
* Checked before anything is built from it. It must be a regular file (not a device, FIFO
  or folder) of at most ``MAX_CHECKPOINT_BYTES``, in torch's uncompressed zip format. A
  SHA-256 over its contents (every JSON part, and every tensor's dtype, shape and bytes)
  turns a flipped bit into a clear "corrupt" error instead of a silently different model.
  Each part must have the right type, the stored config must match the shapes of the
  weights actually present, and the model may hold at most ``MAX_MODEL_BYTES`` of float32
  parameters, so a small file declaring a huge model is refused before memory is allocated.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import pickle
import warnings
import zipfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any, BinaryIO

import torch

from lslm.errors import LslmError, shown
from lslm.files import open_regular, parse_json
from lslm.utils import atomic_write

FORMAT = "lslm-checkpoint-v2"
# v1 had no checksum. Its files still load (without that check), so runs and cached
# models saved before v2 keep working.
OLD_FORMATS = ("lslm-checkpoint-v1",)
FILENAME = "ckpt.pt"
TENSOR_PARTS = ("model", "optimizer", "rng")  # stored as tensors; every other part as JSON text
# The largest model lslm builds from a file: parameters x 4 bytes (float32). 8 GiB is about
# 2.1 billion parameters; GPT-2 XL (1.5 billion) fits.
MAX_MODEL_BYTES = 8 * 2**30
# Weights plus AdamW's two moments (three copies of the parameters), plus room for the rest.
MAX_CHECKPOINT_BYTES = 3 * MAX_MODEL_BYTES + 2**30
_RETRAIN = "retrain, or use an earlier copy of the run"


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
    but tensors, numbers and strings. A SHA-256 of all of it is stored alongside.
    """
    payload: dict[str, Any] = {"format": FORMAT}
    for name, value in parts.items():
        if name in ("format", "sha256"):
            raise ValueError(f"{name!r} is reserved in a checkpoint: save that part under another name")
        payload[name] = value if name in TENSOR_PARTS else json.dumps(value)
    payload["sha256"] = content_digest(payload)
    return atomic_save(payload, checkpoint_file(path))


# ------------------------------------------------------------------------- checksum
def content_digest(payload: dict[str, Any]) -> str:
    """SHA-256 over everything in ``payload`` but its ``sha256`` entry, in order.

    It hashes what a load gives back, not the file's bytes: every key, string and number,
    and every tensor's dtype, shape and data. So a change that loads as different values
    never goes unnoticed, and one that does not (padding in the zip) is harmless.
    """
    h = hashlib.sha256()
    _feed(h, {k: v for k, v in payload.items() if k != "sha256"})
    return h.hexdigest()


def _feed(h: Any, value: Any) -> None:
    # Every value starts with a type tag and every variable-length one with its length,
    # so two different structures can never produce the same stream of bytes.
    if isinstance(value, torch.Tensor):
        t = value.detach()
        if t.layout != torch.strided:
            raise TypeError("only dense tensors can be hashed")
        t = t.cpu().contiguous().reshape(-1)
        h.update(f"T{t.dtype}|{tuple(value.shape)}|".encode())
        h.update(t.view(torch.uint8).numpy().data if t.numel() else b"")
    elif isinstance(value, dict):
        h.update(f"D{len(value)}|".encode())
        for k, v in value.items():
            _feed(h, k)
            _feed(h, v)
    elif isinstance(value, (list, tuple)):
        h.update(f"{'L' if isinstance(value, list) else 'U'}{len(value)}|".encode())
        for v in value:
            _feed(h, v)
    elif isinstance(value, str):
        data = value.encode("utf-8", "surrogatepass")
        h.update(f"S{len(data)}|".encode() + data)
    elif isinstance(value, bytes):
        h.update(f"B{len(value)}|".encode() + value)
    elif value is None or isinstance(value, bool):
        h.update(f"C{value}|".encode())
    elif isinstance(value, int):
        h.update(f"I{value:x}|".encode())  # hex: no limit on digits, unlike str(int)
    elif isinstance(value, float):
        h.update(f"F{value.hex()}|".encode())
    else:  # torch.dtype, torch.device, complex ...: their repr is their value
        h.update(f"O{type(value).__qualname__}|{value!r}|".encode("utf-8", "surrogatepass"))


# ------------------------------------------------------------------------- loading
def _corrupt(file: Path, detail: str) -> LslmError:
    return LslmError(f"{file} is corrupt ({detail}): {_RETRAIN}")


def read_torch_file(file: Path, limit: int, what: str, fix: str) -> Any:
    """``torch.load`` of a regular file of at most ``limit`` bytes in torch's uncompressed zip
    format, with ``weights_only=True``. ``what`` names the file and ``fix`` says what to do,
    in the one-line ``LslmError`` that replaces every failure."""
    unreadable = LslmError(f"{file} is not a readable {what} (truncated or corrupt): {fix}")
    with open_regular(file, limit, what) as f:
        _check_zip(f, unreadable)
        f.seek(0)
        try:
            with warnings.catch_warnings():  # a damaged pickle also makes torch warn, at length
                warnings.simplefilter("ignore")
                return torch.load(f, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as e:
            if "GLOBAL" not in str(e):  # torch names the class it refused; else the pickle is damaged
                raise unreadable from None
            raise LslmError(
                f"{file} could not be read safely: it holds pickled objects (which could run code), "
                f"not only tensors, and lslm will not load it; {fix}"
            ) from None
        except Exception:  # a damaged zip or pickle: its messages may quote the file, so none is shown
            raise unreadable from None


def _check_zip(f: BinaryIO, unreadable: LslmError) -> None:
    # torch.save writes an uncompressed zip. Refusing anything else keeps torch's older
    # formats (whose headers ask for any amount of memory) and compressed entries (a small
    # file that inflates to gigabytes) away from torch.load.
    size = f.seek(0, 2)
    f.seek(0)
    try:
        with zipfile.ZipFile(f) as z:
            infos = z.infolist()
    except Exception:
        raise unreadable from None
    if sum(i.file_size for i in infos) > size or any(i.compress_type != zipfile.ZIP_STORED for i in infos):
        raise unreadable


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint saved by ``save_checkpoint``, with a clear error for every bad file.

    Returns its parts (JSON parts decoded), each checked to have the type ``save_trainer``
    gives it; a part a caller needs may still be missing.
    """
    file = checkpoint_file(path)
    if not file.exists() and not file.is_symlink():
        raise LslmError(
            f"no checkpoint at {file}: train one with `lslm train --out DIR` and pass that DIR"
        )
    payload = read_torch_file(file, MAX_CHECKPOINT_BYTES, "checkpoint file", _RETRAIN)
    fmt = payload.get("format") if isinstance(payload, dict) else None
    fmt = fmt if isinstance(fmt, str) else None
    if fmt == FORMAT:
        try:
            ok = hmac.compare_digest(str(payload.get("sha256")), content_digest(payload))
        except Exception:  # a value of a kind save_checkpoint never writes
            ok = False
        if not ok:
            raise _corrupt(file, "its contents do not match the checksum saved with them, so some "
                                 "bytes changed after saving")
    elif fmt not in OLD_FORMATS:
        if fmt is not None and fmt.startswith("lslm-checkpoint-"):
            raise LslmError(f"{file} has an unknown checkpoint format (a newer lslm, or damage): "
                            "upgrade lslm, or retrain")
        raise LslmError(f"{file} is not an lslm checkpoint ({FORMAT}); pass a folder made by `lslm train`")
    out: dict[str, Any] = {}
    for name, value in payload.items():
        if name in ("format", "sha256"):
            continue
        if not isinstance(name, str):
            raise _corrupt(file, "a part has a name that is not text")
        if isinstance(value, str):
            try:
                value = parse_json(value, file)
            except LslmError:
                raise _corrupt(file, f"its {shown(name)} part is not valid JSON") from None
        out[name] = value
    check_parts(out, file)
    return out


def check_parts(ckpt: dict[str, Any], file: Path | str) -> None:
    """Check the type of every known part that ``ckpt`` has, before anything is built from it."""
    def bad(part: str, want: str) -> LslmError:
        return _corrupt(Path(file), f"its {part!r} part should be {want}")

    if "step" in ckpt and (type(ckpt["step"]) is not int or ckpt["step"] < 0):
        raise bad("step", "a whole number >= 0")
    for part in ("model_config", "train_config", "tokenizer", "history", "meta"):
        if part in ckpt and not isinstance(ckpt[part], dict):
            raise bad(part, "a dict")
    if "tokenizer" in ckpt and not isinstance(ckpt["tokenizer"].get("kind"), str):
        raise bad("tokenizer", "a tokenizer state with a 'kind'")
    if "history" in ckpt and not all(isinstance(k, str) and isinstance(v, list)
                                      for k, v in ckpt["history"].items()):
        raise bad("history", "a dict of lists")
    if "model" in ckpt:
        model = ckpt["model"]
        if not isinstance(model, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                                  for k, v in model.items()):
            raise bad("model", "a dict of named tensors")
    if "optimizer" in ckpt:
        opt = ckpt["optimizer"]
        if not (isinstance(opt, dict) and isinstance(opt.get("state"), dict)
                and isinstance(opt.get("param_groups"), list)
                and all(isinstance(g, dict) and isinstance(g.get("params"), list) for g in opt["param_groups"])):
            raise bad("optimizer", "an optimizer state (a dict with 'state' and 'param_groups')")
    if "rng" in ckpt:
        rng = ckpt["rng"]
        if not (isinstance(rng, dict) and all(isinstance(v, torch.Tensor) for v in rng.values())):
            raise bad("rng", "a dict of random generator states")


def require_parts(ckpt: dict[str, Any], parts: Iterable[str], file: Path | str, purpose: str) -> None:
    """Refuse a checkpoint that lacks a part ``purpose`` (e.g. "resume training") needs."""
    for part in parts:
        if part not in ckpt:
            raise LslmError(f"{file} has no {part!r} part, which is needed to {purpose}: "
                            "it is incomplete or was saved for another use; retrain")


# ---------------------------------------------------------------- sizes before memory
def check_model_size(config: Any, where: Path | str) -> None:
    """Refuse a config whose float32 parameters would take more than ``MAX_MODEL_BYTES``."""
    from lslm.model import count_params

    n = count_params(config)
    if n * 4 > MAX_MODEL_BYTES:
        raise LslmError(
            f"{where} describes a model of {n:,} parameters ({n * 4 / 2**30:,.1f} GiB in float32), "
            f"above lslm's limit of {MAX_MODEL_BYTES // 2**30} GiB: it is damaged or not meant for lslm"
        )


def expected_shapes(config: Any) -> dict[str, tuple[int, ...]]:
    """The name and shape of every tensor in ``GPT(config).state_dict()``, without allocating.

    One block is built on the "meta" device (shapes only, no memory) and its names are
    repeated for every layer, so this is fast for any ``n_layer``: call it only once the
    number of layers is known to be sensible (``weights_problem`` does).
    """
    from dataclasses import replace

    from lslm.model import GPT

    with torch.device("meta"):
        one = GPT(replace(config, n_layer=1), seed=0).state_dict()
    shapes: dict[str, tuple[int, ...]] = {}
    for name, tensor in one.items():
        if name.startswith("blocks.0."):
            for i in range(config.n_layer):
                shapes[f"blocks.{i}.{name.removeprefix('blocks.0.')}"] = tuple(tensor.shape)
        else:
            shapes[name] = tuple(tensor.shape)
    return shapes


def weights_problem(config: Any, state: dict[str, Any]) -> str | None:
    """Why the tensors in ``state`` cannot be the weights of ``GPT(config)``, or None.

    Checks names, shapes, dtypes and finiteness against the config, and the number of
    blocks first, so that a config claiming a million layers costs nothing.
    """
    blocks: set[int] = set()
    for key in state:
        if not isinstance(key, str):
            return "a weight's name is not text"
        parts = key.split(".")
        if parts[0] == "blocks" and len(parts) > 2 and parts[1].isascii() and parts[1].isdigit():
            blocks.add(int(parts[1]))
    if blocks != set(range(config.n_layer)):
        return f"the weights hold {len(blocks)} blocks but the config says n_layer={config.n_layer}"
    expected = expected_shapes(config)
    for name, shape in expected.items():
        tensor = state.get(name)
        if tensor is None:
            return f"the weights lack {name}"
        if not isinstance(tensor, torch.Tensor) or tensor.layout != torch.strided:
            return f"{name} is not a dense tensor"
        if tuple(tensor.shape) != shape:
            return f"shape mismatch: {name} is {tuple(tensor.shape)} in the weights but the config implies {shape}"
        if not tensor.is_floating_point():
            return f"{name} holds {tensor.dtype} values, not floating-point weights"
    extra = next((k for k in state if k not in expected), None)
    if extra is not None:
        return f"the weights have a tensor {shown(extra, 60)} that this model does not"
    for name in expected:
        if not torch.isfinite(state[name]).all():
            return f"{name} holds NaN or infinite values"
    return None


def check_weights(config: Any, state: dict[str, Any], where: Path | str) -> None:
    """Refuse weights that do not fit ``config`` or a config too large, before building the model."""
    check_model_size(config, where)
    problem = weights_problem(config, state)
    if problem:
        raise LslmError(f"{where} does not fit its config ({problem}); it was made for another "
                        "vocabulary or model shape, or is damaged: load it with its own config")


def _model_config(ckpt: dict[str, Any], file: Path):
    from lslm.model import GPTConfig

    try:
        return GPTConfig.from_dict(ckpt["model_config"])
    except LslmError as e:
        raise _corrupt(file, f"its model_config is invalid: {e}") from None


def _tokenizer(ckpt: dict[str, Any], file: Path):
    from lslm.tokenizers import tokenizer_from_state

    try:
        return tokenizer_from_state(ckpt["tokenizer"])
    except LslmError as e:
        raise _corrupt(file, f"its tokenizer is invalid: {e}") from None


def load_model(path: str | Path, device: str | torch.device = "cpu"):
    """Load ``(model, tokenizer)`` from a checkpoint, ready to evaluate or sample."""
    from lslm.model import GPT

    file = checkpoint_file(path)
    ckpt = load_checkpoint(path)
    require_parts(ckpt, ("model", "model_config", "tokenizer"), file, "load the model")
    config = _model_config(ckpt, file)
    check_weights(config, ckpt["model"], file)
    tokenizer = _tokenizer(ckpt, file)
    check_vocab(config.vocab_size, tokenizer.vocab_size, file)
    model = GPT(config, seed=0)  # its weights are replaced: draw none of the caller's random numbers
    load_state(model, ckpt["model"], file)
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
            f"{where} does not fit this model ({first[:160] or 'different layers'}); "
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


RESUME_PARTS = ("model", "model_config", "train_config", "tokenizer", "optimizer", "rng", "step", "history")


def _check_rng(rng: dict[str, Any], file: Path) -> None:
    for key in ("torch", "batch"):
        try:
            torch.Generator().set_state(rng[key])  # the exact check: torch's own
        except (KeyError, RuntimeError, TypeError, ValueError):
            raise _corrupt(file, f"its random generator state {key!r} is missing or invalid") from None


def _number(value: Any, low: float, high: float = math.inf) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value) and low <= value <= high)


def _load_optimizer(optimizer: torch.optim.Optimizer, state: dict[str, Any], file: Path) -> None:
    """``optimizer.load_state_dict`` that refuses a state which would fail at the first step."""
    mismatch = _corrupt(file, "its optimizer state does not fit the model")
    try:
        optimizer.load_state_dict(state)
    except (ValueError, KeyError, TypeError, IndexError, RuntimeError, AttributeError):
        raise mismatch from None
    for group in optimizer.param_groups:
        betas = group.get("betas")
        if not (_number(group.get("lr"), 0) and _number(group.get("eps"), 0)
                and _number(group.get("weight_decay"), 0) and isinstance(betas, (tuple, list))
                and len(betas) == 2 and all(_number(b, 0, 1) for b in betas)):
            raise _corrupt(file, "its optimizer settings (lr, betas, eps, weight_decay) are invalid")
        for key in ("amsgrad", "maximize", "foreach", "capturable", "differentiable", "fused"):
            if group.get(key) not in (None, True, False):
                raise _corrupt(file, f"its optimizer setting {key!r} is not true, false or null")
        for p in group["params"]:
            for key, value in optimizer.state.get(p, {}).items():
                if not isinstance(value, torch.Tensor) or not torch.isfinite(value).all():
                    raise mismatch
                if key == "step" and (value.numel() != 1 or value.item() < 0):
                    raise mismatch
                if key != "step" and value.shape != p.shape:
                    raise mismatch
        # The saved groups carry the saving machine's kernel choice: a run saved with the
        # fused kernel may resume where torch has none (an older torch, another device).
        if group.get("fused") and group["params"]:
            from lslm.devices import fused_adamw_available

            if not fused_adamw_available(group["params"][0].device):
                group["fused"] = False


def resume_trainer(cls: type, path: str | Path, data: dict, out_dir: str | Path | None = None,
                   checkpoint: dict[str, Any] | None = None, **kwargs: Any) -> Any:
    """Rebuild a ``Trainer`` (or subclass ``cls``) from a checkpoint, so that ``fit``
    continues the same loss curve. ``kwargs`` go to the constructor (callbacks, tensorboard);
    the other keywords override fields of the stored TrainConfig (``max_iters``, ``progress`` ...).
    ``checkpoint`` is what ``load_checkpoint(path)`` returned, when the caller has read it already."""
    from lslm.loop import TrainConfig
    from lslm.model import GPT

    file = checkpoint_file(path)
    ckpt = checkpoint if checkpoint is not None else load_checkpoint(path)
    require_parts(ckpt, RESUME_PARTS, file, "resume training")
    config = _model_config(ckpt, file)
    check_weights(config, ckpt["model"], file)
    tokenizer = _tokenizer(ckpt, file)
    check_vocab(config.vocab_size, tokenizer.vocab_size, file)
    try:
        TrainConfig.from_dict(ckpt["train_config"])  # the stored one alone: its faults are the file's
    except LslmError as e:
        raise _corrupt(file, f"its train_config is invalid: {e}") from None
    _check_rng(ckpt["rng"], file)
    model = GPT(config, seed=0)  # weights replaced below
    load_state(model, ckpt["model"], file)
    passed = {k: kwargs.pop(k) for k in ("callbacks", "tensorboard") if k in kwargs}
    train_config = TrainConfig.from_dict({**ckpt["train_config"], **kwargs})
    trainer = cls(model, tokenizer, data, train_config, out_dir if out_dir is not None else path,
                  meta=ckpt.get("meta"), **passed)
    _load_optimizer(trainer.optimizer, ckpt["optimizer"], file)
    trainer.history = ckpt["history"]
    trainer.step = ckpt["step"]
    trainer.rng_state["cpu"] = ckpt["rng"]["torch"]
    trainer.batch_gen.set_state(ckpt["rng"]["batch"])
    return trainer
