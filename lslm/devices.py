"""Where a model runs: picking a device, and what ``torch.compile`` needs there."""

from __future__ import annotations

import os
import shutil
import sys
from typing import Any

import torch

from lslm.errors import LslmError, shown


DEVICE_CHOICES = "auto, cpu, cuda, cuda:N or mps"


def check_device(device: str) -> str:
    """``device`` if this machine has it (``auto`` always), else a one-line ``LslmError``."""
    if not isinstance(device, str):
        raise LslmError(f"a device is a name such as 'cpu', not a {type(device).__name__}: use {DEVICE_CHOICES}")
    kind, _, index = device.partition(":")
    if device == "auto" or device == "cpu":
        return device
    if kind not in ("cuda", "mps") or (index and not (index.isascii() and index.isdigit())):
        raise LslmError(f"{shown(device)} is not a device: use {DEVICE_CHOICES}")
    if kind == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise LslmError(f"device {device} was asked for but Apple's mps is not available here: use cpu")
        return device
    if not torch.cuda.is_available():
        raise LslmError(f"device {device} was asked for but no CUDA GPU is visible: use cpu")
    if index and int(index) >= torch.cuda.device_count():
        raise LslmError(
            f"device {device} was asked for but this machine has {torch.cuda.device_count()} CUDA "
            f"GPU(s), numbered from 0: use cuda:0"
        )
    return device


def pick_device(device: str = "auto") -> str:
    """``auto`` picks cuda, then Apple's mps, then cpu; any other name is checked (``check_device``)."""
    if device != "auto":
        return check_device(device)
    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def device_memory(device: str) -> int | None:
    """Bytes of memory a run on ``device`` can use: a GPU's own memory, else the machine's
    RAM (mps shares it); None where the platform does not say."""
    if device.split(":")[0] == "cuda" and torch.cuda.is_available():
        return torch.cuda.get_device_properties(torch.device(device).index or 0).total_memory
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):  # Windows has no sysconf
        return None


def model_device(module: torch.nn.Module) -> torch.device:
    """The device ``module`` computes on: where its first parameter (else buffer) lives; cpu
    for a module that holds neither. Every entry point that takes token ids or text moves
    them there, so a CPU input works with a model on a GPU."""
    for tensor in module.parameters():
        return tensor.device
    for tensor in module.buffers():
        return tensor.device
    return torch.device("cpu")


def to_device(batch: Any, device: torch.device | str) -> Any:
    """``batch`` with every tensor in it (in tuples, lists and dicts too) moved to ``device``;
    anything else is left as it is. Moving to the device a tensor is already on costs nothing."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device)
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, tuple) and hasattr(batch, "_fields"):  # a namedtuple takes fields, not an iterable
        return type(batch)(*(to_device(v, device) for v in batch))
    if isinstance(batch, (tuple, list)):
        return type(batch)(to_device(v, device) for v in batch)
    return batch


def fused_adamw_available(device: str | torch.device) -> bool:
    """Whether this torch has a fused AdamW kernel for ``device``'s kind.

    CUDA has one since torch 2.0; cpu and mps only since torch 2.4, where they joined the
    list in ``torch.utils._foreach_utils._get_fused_kernels_supported_devices`` (2.2 and
    2.3 list cuda, xpu and the private-use backend). Intel Macs stop at torch 2.2.2, so
    this is asked, not assumed. The list is private to torch: without it, only cuda.
    """
    kind = str(device).split(":")[0]  # a name such as "auto" is no device kind: False, not an error
    try:
        from torch.utils._foreach_utils import _get_fused_kernels_supported_devices
    except ImportError:
        return kind == "cuda"
    return kind in _get_fused_kernels_supported_devices()


def on_windows() -> bool:
    """True on Windows, asked at each call (so a test can say otherwise)."""
    return sys.platform == "win32"


def cpp_compiler() -> str | None:
    """The C++ compiler torch.compile could build CPU kernels with ($CXX first), or None.

    On Windows, torch's inductor takes $CXX or else ``cl`` (torch/_inductor/cpp_builder.py,
    ``get_cpp_compiler``) and accepts only MSVC-style compilers (``cl``, ``clang-cl``): g++
    from MinGW would be found on PATH but cannot be used.
    """
    names = ("cl", "clang-cl") if on_windows() else ("g++", "c++", "clang++")
    for name in (os.environ.get("CXX", ""), *names):
        path = shutil.which(name) if name else None
        if path:
            return path
    return None


def check_cpp_compiler() -> None:
    """torch.compile on CPU writes C++ and builds it: say so clearly when no compiler is there."""
    if cpp_compiler() is not None:
        return
    if on_windows():
        how = ("install Visual Studio Build Tools (\"Desktop development with C++\") and start "
               "Python from an \"x64 Native Tools Command Prompt\", which puts its cl.exe on PATH")
    else:
        how = "install g++ or clang++"
    raise LslmError(
        f"compile=True (--compile, or the 'quick' recipe) needs a C++ compiler on CPU and none "
        f"was found: {how}, or train without compiling (--no-compile, compile=False)"
    )


def compile_options(device: str) -> dict:
    """Inductor settings for ``torch.compile`` on ``device``.

    On CPU, ``cpp_wrapper`` calls the generated kernels from C++ rather than from a Python
    function: at the baby configuration that Python glue cost 1-2 ms of a 25-30 ms step
    (benchmarks/RESULTS.md).
    """
    return {"cpp_wrapper": True} if device.split(":")[0] == "cpu" else {}
