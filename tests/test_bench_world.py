"""benchmarks/bench_world.py, end to end on its tiny recipe: it runs, fills every column of its
table for all three models and says which targets this run met. The figures of a tiny run mean
nothing; only the report's structure is checked."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_world_benchmark_runs_and_reports_all_three_models_and_nucleus_sampling(tmp_path):
    record, raw, cache = tmp_path / "results.md", tmp_path / "raw.json", tmp_path / "cache"
    cmd = [sys.executable, str(ROOT / "benchmarks" / "bench_world.py"), "--tiny", "--threads", "1",
           "--stories", "2", "--max-new-tokens", "8", "--orders", "2,3", "--cache", str(cache),
           "--record", str(record), "--json", str(raw), "--top-p", "0.9"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    res = json.loads(raw.read_text())
    assert len(res["rows"]) == 4 and res["pretrain_s"] > 0 and res["pretrain_rss_mb"] > 0
    for row in res["rows"].values():
        assert row["stories"] == 2 and row["bits_per_char"] > 0 and row["word_ppl"] >= 1
    report = record.read_text()
    assert "Targets met in this run: pretraining time" in report and report.count("\n| ") >= 6
    assert "| world GPT (BPE), top-p 0.9 |" in report
    assert any(cache.rglob("*")), "--cache keeps the trained model"
    # A cache that is not empty is refused: the benchmark times an empty one.
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert again.returncode == 2 and "not empty" in again.stderr
