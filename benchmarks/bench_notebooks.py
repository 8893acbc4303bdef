"""How long each notebook takes as a learner runs it, and how long `import lslm` takes.

    python benchmarks/bench_notebooks.py              # every notebooks/NN_*.ipynb
    python benchmarks/bench_notebooks.py 04 05        # only those

Each notebook is executed top to bottom in a fresh kernel (kernel start-up included),
in memory, so the repo's notebooks are not rewritten. Exits non-zero, loudly,
when a notebook fails or exceeds its budget. Run it on an otherwise idle machine.

The notebooks run with an empty ``LSLM_CACHE`` (a temporary folder), as on a fresh
clone or in CI: the first notebook that needs the shared pretrained model
(``lslm.pretrained.char_lm``) pays for training it. ``--warm-cache`` keeps your cache.
"""

from __future__ import annotations

import argparse
import statistics
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
BUDGET_S = 180.0  # per notebook, on a 2-core laptop CPU
TOTAL_BUDGET_S = 600.0  # all notebooks together: ten minutes


def import_seconds(runs: int = 5) -> float:
    """Median wall time of `python -c "import lslm"` in a fresh interpreter."""
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import lslm"], check=True, cwd=ROOT)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def run_notebook(path: Path) -> float:
    """Execute in memory (the file is not rewritten), in notebooks/ as a learner would."""
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}})
    start = time.perf_counter()
    client.execute()
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("only", nargs="*", help="notebook numbers to run, e.g. 04 05")
    parser.add_argument("--warm-cache", action="store_true", help="keep LSLM_CACHE as it is")
    args = parser.parse_args()
    if not args.warm_cache:
        os.environ["LSLM_CACHE"] = tempfile.mkdtemp(prefix="lslm-bench-cache-")
    notebooks = sorted(ROOT.glob("notebooks/[0-9][0-9]_*.ipynb"))
    if args.only:
        notebooks = [p for p in notebooks if p.name[:2] in args.only]

    print(f"import lslm: {import_seconds():.2f} s (median of 5 fresh interpreters)\n")
    print("| notebook | seconds | budget | |")
    print("| --- | --- | --- | --- |")
    total, failures = 0.0, []
    for path in notebooks:
        try:
            seconds = run_notebook(path)
        except Exception as e:  # a failing cell: report it, keep timing the others
            print(f"| {path.stem} | failed | {BUDGET_S:.0f} | {type(e).__name__} |")
            failures.append(f"{path.name} failed: {str(e).splitlines()[0][:200]}")
            continue
        total += seconds
        over = seconds > BUDGET_S
        print(f"| {path.stem} | {seconds:.1f} | {BUDGET_S:.0f} | {'OVER BUDGET' if over else 'ok'} |")
        if over:
            failures.append(f"{path.name} took {seconds:.0f} s, over its {BUDGET_S:.0f} s budget")
    print(f"| all | {total:.1f} | {TOTAL_BUDGET_S:.0f} | |")
    if total > TOTAL_BUDGET_S:
        failures.append(f"all notebooks took {total:.0f} s, over the {TOTAL_BUDGET_S:.0f} s budget")
    for failure in failures:
        print(f"FAILED: {failure}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
