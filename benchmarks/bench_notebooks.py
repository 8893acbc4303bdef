"""How long each notebook takes, and how long `import lslm` takes.

    python benchmarks/bench_notebooks.py                 # every notebooks/NN_*.ipynb, as a learner runs it
    python benchmarks/bench_notebooks.py 04 05           # only those
    python benchmarks/bench_notebooks.py --nbval         # the notebooks as the test suite runs them
    python benchmarks/bench_notebooks.py --nbval --runs 3 --record benchmarks/RESULTS.md

Default mode: each notebook is executed top to bottom in a fresh kernel (kernel start-up
included), in memory, so the repo's notebooks are not rewritten.

``--nbval``: one ``pytest notebooks --nbval`` run, as ``make test`` runs them (outputs
compared with the stored ones). The total is that run's wall time; each notebook's figure is
the sum of its cells' times from pytest's JUnit report (kernel start-up not included).

Every run starts with an empty ``LSLM_CACHE`` (a temporary folder), as on a fresh clone or
in CI: the first notebook that needs a shared model (``char_lm``, ``world_lm``,
``assistant_lm``) pays for training it. ``--warm-cache`` keeps your cache. With ``--runs N``
the figures are medians over N runs.

Exits non-zero, loudly, when a notebook fails, when one notebook's median exceeds its
3-minute budget, when the median total exceeds 15 minutes, or when `import lslm` takes
over 2.5 s. Run it on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import datetime
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BUDGET_S = 180.0  # per notebook, on a 2-core laptop CPU
TOTAL_BUDGET_S = 900.0  # all notebooks together: fifteen minutes, empty cache included
IMPORT_BUDGET_S = 2.5


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
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}})
    start = time.perf_counter()
    client.execute()
    return time.perf_counter() - start


def run_learner(notebooks: list[Path]) -> tuple[dict[str, float], float, list[str]]:
    """One pass in learner mode: seconds per notebook, the total, and failures."""
    times, failures = {}, []
    for path in notebooks:
        try:
            times[path.stem] = run_notebook(path)
        except Exception as e:  # a failing cell: report it, keep timing the others
            failures.append(f"{path.name} failed: {str(e).splitlines()[0][:200]}")
        print(f"  {path.stem}: {times.get(path.stem, float('nan')):.1f} s", file=sys.stderr)
    return times, sum(times.values()), failures


def run_nbval(notebooks: list[Path]) -> tuple[dict[str, float], float, list[str]]:
    """One `pytest --nbval` pass: seconds per notebook (its cells), the wall total, failures."""
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "junit.xml"
        cmd = [sys.executable, "-m", "pytest", *map(str, notebooks), "--nbval", "--nbval-current-env",
               "--nbval-sanitize-with", "notebooks/sanitize.cfg", "-q", "-p", "no:cacheprovider",
               f"--junitxml={report}"]
        start = time.perf_counter()
        done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
        wall = time.perf_counter() - start
        times: dict[str, float] = defaultdict(float)
        for case in ET.parse(report).getroot().iter("testcase"):
            name = Path(case.get("file") or case.get("classname", "")).stem
            times[name.split(".")[-1]] += float(case.get("time", 0))
    failures = [] if done.returncode == 0 else [
        f"pytest --nbval failed: {done.stdout.strip().splitlines()[-1] if done.stdout.strip() else done.stderr[-200:]}"]
    print(f"  nbval run: {wall:.1f} s wall", file=sys.stderr)
    return dict(times), wall, failures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("only", nargs="*", help="notebook numbers to run, e.g. 04 05")
    parser.add_argument("--nbval", action="store_true", help="time one pytest --nbval run per repeat")
    parser.add_argument("--runs", type=int, default=1, help="repeat everything; report medians")
    parser.add_argument("--warm-cache", action="store_true", help="keep LSLM_CACHE as it is")
    parser.add_argument("--record", type=Path, help="append the Markdown results to this file")
    args = parser.parse_args()
    notebooks = sorted(ROOT.glob("notebooks/[0-9][0-9]_*.ipynb"))
    if args.only:
        notebooks = [p for p in notebooks if p.name[:2] in args.only]

    imports = import_seconds()
    per_run, totals, failures = [], [], []
    for i in range(args.runs):
        if not args.warm_cache:
            os.environ["LSLM_CACHE"] = tempfile.mkdtemp(prefix="lslm-bench-cache-")
        print(f"run {i + 1} of {args.runs}", file=sys.stderr)
        times, total, failed = (run_nbval if args.nbval else run_learner)(notebooks)
        per_run.append(times)
        totals.append(total)
        failures += failed

    mode = ("under nbval (`pytest notebooks --nbval`, each notebook's cells summed; the total is "
            "the wall time of the whole pytest run)" if args.nbval else
            "as a learner runs them (a fresh kernel each, start-up included)")
    cache = "your LSLM_CACHE" if args.warm_cache else "an empty LSLM_CACHE each run"
    lines = [f"| notebook | median s | {' | '.join(f'run {i + 1}' for i in range(args.runs))} | budget | |",
             "| --- | --- | " + " | ".join("---" for _ in range(args.runs)) + " | --- | --- |"]
    for path in notebooks:
        runs = [t.get(path.stem) for t in per_run]
        seen = [s for s in runs if s is not None]
        med = statistics.median(seen) if seen else None
        over = med is not None and med > BUDGET_S
        if over:
            failures.append(f"{path.name} took {med:.0f} s (median), over its {BUDGET_S:.0f} s budget")
        cells = " | ".join("failed" if s is None else f"{s:.1f}" for s in runs)
        lines.append(f"| {path.stem} | {'failed' if med is None else f'{med:.1f}'} | {cells} | "
                     f"{BUDGET_S:.0f} | {'OVER BUDGET' if over else 'ok'} |")
    total = statistics.median(totals)
    lines.append(f"| all | {total:.1f} | " + " | ".join(f"{t:.1f}" for t in totals) +
                 f" | {TOTAL_BUDGET_S:.0f} | {'OVER BUDGET' if total > TOTAL_BUDGET_S else 'ok'} |")
    if total > TOTAL_BUDGET_S:
        failures.append(f"all notebooks took {total:.0f} s (median), over the {TOTAL_BUDGET_S:.0f} s budget")
    if imports > IMPORT_BUDGET_S:
        failures.append(f"import lslm took {imports:.2f} s, over its {IMPORT_BUDGET_S} s budget")

    command = "python " + " ".join(shlex.quote(a) for a in ["benchmarks/bench_notebooks.py", *sys.argv[1:]])
    from machine import machine  # benchmarks/ is on sys.path when this runs as a script

    text = "\n".join([
        f"### {datetime.date.today()}: notebook run times, {mode}", "",
        f"Command: `{command}` ({args.runs} run(s), {cache})", "",
        f"Machine: {machine()}", "",
        f"`import lslm`: {imports:.2f} s (median of 5 fresh interpreters; budget {IMPORT_BUDGET_S} s)", "",
        *lines, "",
        *(f"- FAILED: {f}" for f in failures),
        "- All within budget." if not failures else "", "",
    ])
    print(text)
    if args.record:
        with args.record.open("a") as f:
            f.write("\n" + text)
    for failure in failures:
        print(f"FAILED: {failure}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
