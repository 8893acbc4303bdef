"""Where a model runs: picking a device, and what ``torch.compile`` needs there."""

from __future__ import annotations

import os
import shutil

import torch

from lslm.errors import LslmError


def pick_device(device: str = "auto") -> str:
    """``auto`` picks cuda, then Apple's mps, then cpu."""
    if device != "auto":
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise LslmError(f"--device {device} was asked for but no CUDA GPU is visible: use --device cpu")
        return device
    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


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
