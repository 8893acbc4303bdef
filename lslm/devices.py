"""Where a model runs: picking a device, and what ``torch.compile`` needs there."""

from __future__ import annotations

import os
import shutil

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


def cpp_compiler() -> str | None:
    """The C++ compiler torch.compile could build CPU kernels with ($CXX first), or None."""
    for name in (os.environ.get("CXX", ""), "g++", "c++", "clang++"):
        path = shutil.which(name) if name else None
        if path:
            return path
    return None


def check_cpp_compiler() -> None:
    """torch.compile on CPU writes C++ and builds it: say so clearly when no compiler is there."""
    if cpp_compiler() is None:
        raise LslmError(
            "compile=True (--compile, or the 'quick' recipe) needs a C++ compiler on CPU and none "
            "was found: install g++ or clang++, or train without compiling (--no-compile, compile=False)"
        )


def compile_options(device: str) -> dict:
    """Inductor settings for ``torch.compile`` on ``device``.

    On CPU, ``cpp_wrapper`` calls the generated kernels from C++ rather than from a Python
    function: at the baby configuration that Python glue cost 1-2 ms of a 25-30 ms step
    (benchmarks/RESULTS.md).
    """
    return {"cpp_wrapper": True} if device.split(":")[0] == "cpu" else {}
