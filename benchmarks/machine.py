"""One line that says what a benchmark ran on: CPU, cores, instruction sets, torch, threads."""

from __future__ import annotations

import os
import platform
from pathlib import Path


def machine() -> str:
    import torch

    cpu, flags = "unknown CPU", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
            elif line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    isa = [name for flag, name in [("avx512f", "AVX-512"), ("avx512_bf16", "AVX-512 bf16")] if flag in flags]
    return (f"{cpu}, {os.cpu_count()} cores ({', '.join(isa) or 'no AVX-512'}; "
            f"{'AMX' if 'amx_bf16' in flags else 'no AMX'}), torch {torch.__version__} "
            f"({torch.get_num_threads()} threads, OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')}), "
            f"Python {platform.python_version()}")
