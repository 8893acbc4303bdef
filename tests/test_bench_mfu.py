"""benchmarks/bench_mfu.py, the GPU throughput and MFU route, works before a GPU is there:
its tiny mode runs both routes on the CPU, and its FLOP count and peak table are checked."""

import json
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import bench_mfu  # noqa: E402

from lslm.model import GPT, GPTConfig  # noqa: E402

QUICK = ["--tiny", "--device", "cpu", "--steps", "2", "--warmup", "1", "--repeats", "1"]


def run_json(capsys, *extra: str) -> dict:
    assert bench_mfu.main([*QUICK, "--json", "-", *extra]) == 0
    return json.loads(capsys.readouterr().out)


def test_the_tiny_route_runs_on_the_cpu_and_reports_mfu_as_na(capsys):
    result = run_json(capsys)
    assert [row["route"] for row in result["routes"]] == ["lslm", "bare"]
    assert result["device"] == "cpu" and result["peak_tflops"] is None and "--peak-tflops" in result["peak_source"]
    assert result["tokens_per_step"] == 4 * 32 and result["compile"] is False and result["amp_bf16"] is True
    for row in result["routes"]:
        assert row["mfu"] is None and row["tokens_per_sec"] > 0
        # tokens/s, ms/step and model FLOP/s are one measurement, three ways.
        assert row["tokens_per_sec"] == pytest.approx(result["tokens_per_step"] / (row["ms_per_step"] / 1000))
        assert row["achieved_tflops"] * 1e12 == pytest.approx(row["tokens_per_sec"] * result["flops_per_token"])


def test_a_given_peak_gives_an_mfu_and_the_text_report_shows_it(capsys):
    result = run_json(capsys, "--peak-tflops", "0.5", "--routes", "bare", "--no-fused", "--no-amp")
    (row,) = result["routes"]
    assert result["peak_source"] == "--peak-tflops" and result["fused_adamw"] is False
    assert row["mfu"] == pytest.approx(row["achieved_tflops"] / 0.5)
    assert bench_mfu.main([*QUICK, "--peak-tflops", "0.5", "--routes", "bare"]) == 0
    text = capsys.readouterr().out
    assert "| bare |" in text and "%" in text.split("| bare |")[1] and "0.5 TFLOP/s" in text


def test_flops_per_token_is_six_n_plus_the_attention_products():
    # nanoGPT's estimate_mfu: N counts every parameter but the position table.
    config = GPTConfig(**bench_mfu.TINY, bias=False)
    model = GPT(config)
    n = sum(p.numel() for p in model.parameters()) - model.wpe.weight.numel()
    head = config.n_embd // config.n_head
    assert bench_mfu.flops_per_token(config) == 6 * n + 12 * config.n_layer * config.n_head * head * config.block_size
    # GPT-2 small as benchmarked, counted by hand: the token table 50,304 x 768; per block two
    # LayerNorm weights (2 x 768), attention 768 x 2,304 + 768 x 768, MLP 2 x 768 x 3,072;
    # twelve blocks and the final LayerNorm. The attention term is 12 x 12 x 64 x 1,024 x 12.
    n_small = 50_304 * 768 + 12 * (2 * 768 + 768 * 2_304 + 768 * 768 + 2 * 768 * 3_072) + 768
    assert n_small == 123_587_328
    small = GPTConfig(**bench_mfu.GPT2_SMALL, bias=False)
    assert bench_mfu.flops_per_token(small) == 6 * n_small + 12 * 12 * 12 * 64 * 1024


@pytest.mark.parametrize("name, peak", [
    ("NVIDIA H100 80GB HBM3", 989.0), ("NVIDIA H100 PCIe", 756.0), ("NVIDIA H200", 989.0),
    ("NVIDIA A100-SXM4-80GB", 312.0), ("NVIDIA A100 80GB PCIe", 312.0),
    ("NVIDIA H100 NVL", None), ("NVIDIA GeForce RTX 4090", None),
])
def test_peak_table(name, peak):
    got, source = bench_mfu.gpu_peak(name)
    assert got == peak
    assert ("data sheet" in source) == (peak is not None)


def test_bad_options_stop_with_a_message(capsys):
    for bad in (["--routes", "fast"], ["--peak-tflops", "0"], ["--steps", "0"]):
        with pytest.raises(SystemExit):
            bench_mfu.parse_args(bad)
        assert capsys.readouterr().err.strip()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU here")
def test_the_tiny_route_on_a_gpu_reports_an_mfu(capsys):
    assert bench_mfu.main(["--tiny", "--device", "cuda", "--no-compile", "--steps", "2", "--warmup", "1",
                           "--repeats", "1", "--json", "-"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["fused_adamw"] is True and result["peak_memory_gib"] > 0
    if result["peak_tflops"] is not None:
        assert all(0 < row["mfu"] < 1 for row in result["routes"])
