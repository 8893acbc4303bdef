"""LoRA: fine-tune a large model by training two thin matrices per layer (Hu et al. 2021,
"LoRA: Low-Rank Adaptation of Large Language Models").

A linear layer computes ``W x``. Full fine-tuning learns a change ``ΔW`` as large as ``W``.
LoRA bets that the change has a low rank ``r`` and writes it as a product of two thin
matrices, ``A`` (r × in) and ``B`` (out × r), so the layer becomes

    y = W x + (alpha / r) · B A x

``W`` stays frozen; only ``A`` and ``B`` train: ``r · (in + out)`` numbers instead of
``in · out``. ``A`` starts small and random and ``B`` at zero, so ``B A = 0`` at step 0 and
training starts exactly at the base model. ``alpha / r`` keeps the size of an update about
the same when ``r`` changes. For inference, merge: ``W + (alpha / r) · B A`` is one plain
matrix again, and the adapted model costs no more than the base one.

    model = add_lora(GPT(config), targets=("attn.c_attn",), r=8, alpha=16)  # the rest frozen
    ... train as usual ...
    save_adapter(model, "adapter.pt")   # a small file: only A and B
    model = merge_lora(model)           # plain nn.Linear layers again, for inference

In ``lslm.model.GPT`` the linear layers are named ``blocks.<i>.attn.c_attn`` (queries, keys
and values in one matrix), ``blocks.<i>.attn.c_proj``, ``blocks.<i>.mlp.c_fc``,
``blocks.<i>.mlp.c_proj`` and ``lm_head``. A target picks every layer whose name ends with
it at a dot: ``"attn.c_attn"`` picks the attention input of every block, ``"c_proj"`` both
output projections. The paper adapts the query and value projections; ``c_attn`` holds
those (and the keys) in one matrix. ``lm_head`` shares its weight with the token
embedding, so it cannot be a target.
"""

from __future__ import annotations

import copy
import hmac
import json
import math
import numbers
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from lslm.checkpoint import MAX_MODEL_BYTES, atomic_save, content_digest, read_torch_file
from lslm.errors import LslmError, shown
from lslm.files import parse_json
from lslm.utils import seeded

ADAPTER_FORMAT = "lslm-lora-adapter-v1"
ADAPTER_FILENAME = "adapter.pt"  # what save_adapter and load_adapter use inside a folder
DEFAULT_TARGETS = ("attn.c_attn",)
_RESAVE = "save it again with lslm.lora.save_adapter"


class LoRALinear(nn.Module):
    """An ``nn.Linear`` (``base``, frozen) plus a trainable low-rank change ``scale · B @ A``.

    ``A`` (r × in) starts as ``nn.Linear`` weights do and as the paper's reference code
    (loralib) does: Kaiming-uniform with ``a = sqrt(5)``, which is uniform in
    ``[-1/sqrt(in), 1/sqrt(in)]``. ``B`` (out × r) starts at zero. Both take the dtype and
    device of ``base``'s weight.
    """

    def __init__(self, base: nn.Linear, r: int = 8, alpha: float = 16.0):
        super().__init__()
        if not isinstance(base, nn.Linear):
            raise LslmError(f"LoRALinear wraps an nn.Linear, got {type(base).__name__}: pass a linear layer")
        r, alpha = _check_rank(r, alpha)
        _check_rank_fits(r, base, "the layer")
        self.base = base
        self.base.requires_grad_(False)
        self.r, self.alpha = r, alpha
        self.scale = alpha / r
        self.target = ""  # the add_lora target that picked this layer (saved with the adapter)
        like = {"dtype": base.weight.dtype, "device": base.weight.device}
        self.lora_A = nn.Parameter(torch.empty(r, base.in_features, **like))
        self.lora_B = nn.Parameter(torch.zeros(base.out_features, r, **like))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x @ A.T first: (…, in) -> (…, r) -> (…, out) never builds the (out × in) matrix B A.
        return self.base(x) + self.scale * ((x @ self.lora_A.T) @ self.lora_B.T)

    def delta_weight(self) -> torch.Tensor:
        """The dense change ``ΔW = scale · B @ A`` (out × in) that LoRA adds to ``W``."""
        return self.scale * (self.lora_B @ self.lora_A)

    @torch.no_grad()
    def merged(self) -> nn.Linear:
        """A plain ``nn.Linear`` with weight ``W + ΔW`` (and ``base``'s bias), trainable.

        The sum is taken in float32 and then rounded once to ``W``'s dtype."""
        linear = copy.deepcopy(self.base)
        delta = self.scale * (self.lora_B.float() @ self.lora_A.float())
        linear.weight.copy_(self.base.weight.float() + delta)
        return linear.requires_grad_(True)

    def extra_repr(self) -> str:
        return f"r={self.r}, alpha={self.alpha:g}, scale={self.scale:g}"


# ------------------------------------------------------------------ adding and merging
def add_lora(model: nn.Module, targets: Sequence[str] = DEFAULT_TARGETS, r: int = 8,
             alpha: float = 16.0, seed: int | None = None) -> nn.Module:
    """Wrap every ``nn.Linear`` of ``model`` whose name ends with one of ``targets`` in a
    ``LoRALinear``, in place, and freeze every other parameter. Returns ``model``.

    A target matches at a dot: ``"attn.c_attn"`` matches ``blocks.0.attn.c_attn``, ``"proj"``
    matches nothing. ``seed`` draws the ``A`` matrices from that seed without touching the
    caller's random numbers. Every check runs before the model is changed.
    """
    r, alpha = _check_rank(r, alpha)
    targets = _check_targets(targets)
    if lora_layers(model):
        raise LslmError("this model already has LoRA layers: call merge_lora(model) first, "
                        "or add_lora to a model without them")
    chosen = _matching_linears(model, targets)
    for target in targets:
        if not any(t == target for t in chosen.values()):
            raise LslmError(f"target {shown(target)} matches no linear layer of this model; "
                            f"valid targets include {', '.join(_example_targets(model))}")
    shared = _shared_weights(model)
    for name, target in chosen.items():
        layer = model.get_submodule(name)
        if id(layer.weight) in shared:
            raise LslmError(f"{name} shares its weight with another layer (tied weights, like a GPT's "
                            "lm_head and token embedding), so its change could not be merged: "
                            "choose other targets")
        _check_rank_fits(r, layer, name)
    model.requires_grad_(False)  # freeze everything; the new A and B below are trainable
    with seeded(seed):
        for name, target in chosen.items():
            wrapped = LoRALinear(model.get_submodule(name), r, alpha)
            wrapped.target = target
            parent, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent), child, wrapped)
    return model


def lora_layers(model: nn.Module) -> dict[str, LoRALinear]:
    """Every ``LoRALinear`` in ``model``, by qualified name."""
    return {name: m for name, m in model.named_modules() if isinstance(m, LoRALinear)}


def trainable_share(model: nn.Module) -> tuple[int, int]:
    """``(trainable, total)`` parameter counts, each parameter counted once (a tied one too)."""
    params = list(model.parameters())
    return sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params)


def merge_lora(model: nn.Module) -> nn.Module:
    """Replace each ``LoRALinear`` by a plain ``nn.Linear`` with weight ``W + ΔW``, in place,
    and make every parameter trainable again. Returns ``model``, which then computes the
    same function (to float rounding) with no LoRA left in it."""
    layers = lora_layers(model)
    if not layers:
        raise LslmError("this model has no LoRA layers to merge: it is merged already, "
                        "or add_lora was never called on it")
    for name, layer in layers.items():
        if name == "":
            raise LslmError("the model itself is a LoRALinear: call its merged() instead")
        parent, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent), child, layer.merged())
    model.requires_grad_(True)
    return model


# ------------------------------------------------------------------ saving and loading
def lora_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """Only the adapter tensors, under the names ``model.state_dict()`` gives them
    (``blocks.0.attn.c_attn.lora_A`` ...), detached."""
    state = {}
    for name, layer in lora_layers(model).items():
        state[f"{name}.lora_A"] = layer.lora_A.detach()
        state[f"{name}.lora_B"] = layer.lora_B.detach()
    return state


def adapter_settings(model: nn.Module) -> dict[str, Any]:
    """What ``load_adapter`` needs to rebuild and check the adapter: ``r``, ``alpha``, the
    ``targets`` and each wrapped layer's ``[in_features, out_features]``."""
    layers = lora_layers(model)
    if not layers:
        raise LslmError("this model has no LoRA layers: call add_lora(model) before saving an adapter")
    settings = {(m.r, m.alpha) for m in layers.values()}
    if len(settings) > 1:
        raise LslmError(f"the LoRA layers of this model use different r and alpha {sorted(settings)}: "
                        "an adapter file stores one of each, so build them all with one add_lora call")
    (r, alpha), = settings
    targets = list(dict.fromkeys(m.target or name for name, m in layers.items()))
    return {"r": r, "alpha": alpha, "targets": targets,
            "layers": {name: [m.base.in_features, m.base.out_features] for name, m in layers.items()}}


def save_adapter(model: nn.Module, path: str | Path, meta: dict[str, Any] | None = None) -> Path:
    """Save only the adapter (its settings and the A and B tensors) atomically; a folder
    means its ``adapter.pt``. ``meta`` is any JSON-friendly note (the base model's name, the
    training steps ...), stored and returned by ``read_adapter``. Returns the file's path."""
    file = _adapter_file(path)
    settings = adapter_settings(model)
    try:
        meta_text = json.dumps(meta if meta is not None else {})
    except (TypeError, ValueError):
        raise LslmError("meta must hold only JSON values (dicts, lists, strings, numbers): "
                        "convert the others to strings") from None
    payload: dict[str, Any] = {
        "format": ADAPTER_FORMAT,
        "settings": json.dumps(settings),
        "meta": meta_text,
        "tensors": {k: v.cpu().contiguous() for k, v in lora_state_dict(model).items()},
    }
    payload["sha256"] = content_digest(payload)  # the same checksum as lslm's checkpoints
    return atomic_save(payload, file)


def read_adapter(path: str | Path) -> dict[str, Any]:
    """The checked contents of an adapter file: ``{"settings", "tensors", "meta"}``.

    Loaded with ``torch.load(weights_only=True)``; a missing, damaged or foreign file is a
    one-line ``LslmError``.
    """
    file = _adapter_file(path)
    payload = read_torch_file(file, MAX_MODEL_BYTES, "LoRA adapter file", _RESAVE)
    if not isinstance(payload, dict) or payload.get("format") != ADAPTER_FORMAT:
        raise LslmError(f"{file} is not an lslm LoRA adapter ({ADAPTER_FORMAT}): "
                        "pass a file written by lslm.lora.save_adapter")
    try:
        ok = hmac.compare_digest(str(payload.get("sha256")), content_digest(payload))
    except Exception:  # a value of a kind save_adapter never writes
        ok = False
    if not ok:
        raise _bad(file, "its contents do not match the checksum saved with them")
    settings, meta = payload.get("settings"), payload.get("meta")
    if not isinstance(settings, str) or not isinstance(meta, str):
        raise _bad(file, "its settings are missing")
    settings = _check_settings(parse_json(settings, file), file)
    tensors = payload.get("tensors")
    if not isinstance(tensors, dict):
        raise _bad(file, "it holds no adapter tensors")
    _check_tensors(settings, tensors, file)
    return {"settings": settings, "tensors": tensors, "meta": parse_json(meta, file)}


def load_adapter(model: nn.Module, path: str | Path) -> nn.Module:
    """Add the saved adapter to ``model``, a base model without LoRA, in place: ``add_lora``
    with the stored settings, then the stored A and B. Returns ``model``.

    ``model`` must have the linear layers, with the same shapes, that the adapter was
    trained on; otherwise a one-line ``LslmError`` names both shapes. (It should also hold
    the same base weights: the adapter is a change to those weights, which it cannot check.)
    """
    adapter = read_adapter(path)
    settings, file = adapter["settings"], _adapter_file(path)
    if lora_layers(model):
        raise LslmError("this model already has LoRA layers: load the adapter into the base model "
                        "(without add_lora), or merge_lora(model) first")
    targets = settings["targets"]
    stored = {name: tuple(shape) for name, shape in settings["layers"].items()}
    found = {}
    for name in _matching_linears(model, targets):
        layer = model.get_submodule(name)
        found[name] = (layer.in_features, layer.out_features)
    if found != stored:
        theirs, ours = _describe(stored, targets), _describe(found, targets)
        if theirs == ours:  # the same shapes under other names
            theirs, ours = ", ".join(sorted(stored)[:3]), ", ".join(sorted(found)[:3]) or "none"
        raise LslmError(f"{file} is a LoRA adapter trained for a model of shape [{theirs}] and this one is "
                        f"[{ours}]: load it into the base model it was trained on")
    add_lora(model, targets, settings["r"], settings["alpha"])
    with torch.no_grad():
        for name, layer in lora_layers(model).items():
            layer.lora_A.copy_(adapter["tensors"][f"{name}.lora_A"])
            layer.lora_B.copy_(adapter["tensors"][f"{name}.lora_B"])
    return model


# ------------------------------------------------------------------ helpers
def _check_rank(r: object, alpha: object) -> tuple[int, float]:
    if isinstance(r, bool) or not isinstance(r, numbers.Integral) or r < 1:
        raise LslmError(f"r (the LoRA rank) must be a whole number of at least 1, got {shown(r)}: "
                        "4, 8 or 16 are usual")
    try:
        value = float(alpha) if isinstance(alpha, numbers.Real) and not isinstance(alpha, bool) else math.nan
    except OverflowError:  # an int too large for a float
        value = math.inf
    if not math.isfinite(value) or value <= 0:
        raise LslmError(f"alpha must be a positive number, got {shown(alpha)}: the paper's code often "
                        "uses alpha = 2 * r, e.g. 16 for r = 8")
    return int(r), value


def _check_rank_fits(r: int, layer: nn.Linear, name: str) -> None:
    smaller = min(layer.in_features, layer.out_features)
    if r > smaller:
        raise LslmError(f"r={r} is larger than {name}'s smaller side (in={layer.in_features}, "
                        f"out={layer.out_features}), so it would not be low-rank: pick r <= {smaller}")


def _check_targets(targets: object) -> tuple[str, ...]:
    if isinstance(targets, str):  # one name, not a sequence of one-letter names
        targets = (targets,)
    if (not isinstance(targets, Sequence) or not targets
            or not all(isinstance(t, str) and t.strip(".") for t in targets)):
        raise LslmError(f"targets must be a list of layer names such as ['attn.c_attn'], got {shown(targets)}")
    return tuple(dict.fromkeys(t.strip(".") for t in targets))


def _matching_linears(model: nn.Module, targets: Sequence[str]) -> dict[str, str]:
    """``{name: target}`` for each ``nn.Linear`` whose name ends with a target at a dot."""
    chosen = {}
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear):
            target = next((t for t in targets if name == t or name.endswith("." + t)), None)
            if target is not None:
                chosen[name] = target
    return chosen


def _example_targets(model: nn.Module, limit: int = 6) -> list[str]:
    """Short names of the model's linear layers (their last two parts), for messages."""
    names = [".".join(n.split(".")[-2:]) for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    return list(dict.fromkeys(names))[:limit] or ["(none: the model has no nn.Linear layers)"]


def _shared_weights(model: nn.Module) -> set[int]:
    """The ids of parameters that more than one module holds (tied weights)."""
    seen = Counter(id(p) for _, p in model.named_parameters(remove_duplicate=False))
    return {pid for pid, n in seen.items() if n > 1}


def _describe(layers: dict[str, tuple[int, ...]], targets: Sequence[str]) -> str:
    """E.g. ``2 x attn.c_attn 32->96``: how many layers of each target and shape."""
    groups = Counter()
    for name, (n_in, n_out) in layers.items():
        target = next((t for t in targets if name == t or name.endswith("." + t)), name)
        groups[(target, n_in, n_out)] += 1
    return ", ".join(f"{n} x {t} {i}->{o}" for (t, i, o), n in groups.items()) or "no such layers"


def _adapter_file(path: str | Path) -> Path:
    path = Path(path)
    return path / ADAPTER_FILENAME if path.is_dir() else path


def _bad(file: Path, detail: str) -> LslmError:
    return LslmError(f"{file} is not a valid LoRA adapter ({detail}): {_RESAVE}")


def _check_settings(settings: Any, file: Path) -> dict[str, Any]:
    try:
        r, alpha = _check_rank(settings["r"], settings["alpha"])
        targets, layers = settings["targets"], settings["layers"]
        ok = (isinstance(targets, list) and len(targets) > 0 and all(isinstance(t, str) and t for t in targets)
              and isinstance(layers, dict) and len(layers) > 0
              and all(isinstance(shape, list) and len(shape) == 2
                      and all(type(n) is int and 1 <= n <= 2**31 - 1 for n in shape)
                      for shape in layers.values()))
    except (LslmError, TypeError, KeyError):
        ok = False
    if not ok:
        raise _bad(file, "its settings (r, alpha, targets, layers) are missing or invalid")
    return {"r": r, "alpha": alpha, "targets": targets, "layers": layers}


def _check_tensors(settings: dict[str, Any], tensors: dict[Any, Any], file: Path) -> None:
    r = settings["r"]
    expected = {}
    for name, (n_in, n_out) in settings["layers"].items():
        expected[f"{name}.lora_A"] = (r, n_in)
        expected[f"{name}.lora_B"] = (n_out, r)
    if set(tensors) != set(expected):
        raise _bad(file, "its tensors do not match its list of layers")
    for key, shape in expected.items():
        t = tensors[key]
        if not isinstance(t, torch.Tensor) or t.layout != torch.strided or not t.is_floating_point():
            raise _bad(file, f"{key} is not a dense floating-point tensor")
        if tuple(t.shape) != shape:
            raise _bad(file, f"{key} has shape {tuple(t.shape)}, not {shape}")
        if not torch.isfinite(t).all():
            raise _bad(file, f"{key} holds NaN or infinite values")
