"""Parameter and FLOP accounting, the compute estimator, its widget and the scaling sweep."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from lslm.checks import check
from lslm.errors import LslmError
from lslm.model import GPTConfig, count_params
from lslm.pipeline import PreparedData
from lslm.scale import (
    ACCELERATORS,
    GPT3_COMPUTE,
    GPT3_TABLE,
    GPT3_TOKENS,
    PRESETS,
    activation_bytes,
    estimate,
    flops_per_token,
    non_embedding_params,
    shape_for_params,
    state_bytes,
    training_flops,
)
from lslm.scaling import SweepConfig, fit_power_law, load_sweep, main, run_sweep
from lslm.widgets.compute import ComputeEstimator

from .conftest import RHYME, prepare_data_from_text

CACHED_SWEEP = Path(__file__).resolve().parents[1] / "lslm" / "resources" / "scaling-sweep.json"
PNG_MAGIC = b"\x89PNG"


# ----- GPT-3 -----------------------------------------------------------------------------------
@pytest.mark.parametrize("row", GPT3_TABLE, ids=lambda r: r.name)
def test_gpt3_sizes_match_the_paper(row):
    n = count_params(row.config())
    assert abs(n - row.n_params) / row.n_params < 0.03, (row.name, n)


def test_gpt3_table_shapes_are_the_papers():
    big = GPT3_TABLE[-1]
    assert (big.n_layers, big.d_model, big.n_heads, big.d_head) == (96, 12288, 96, 128)
    assert big.config().n_embd == 12288 and big.config().block_size == 2048
    assert GPT3_TABLE[6].config().n_embd == 5120  # the printed 5,140 is not divisible by 40 heads


def test_gpt3_175b_training_compute():
    config = GPT3_TABLE[-1].config()
    with_attention = training_flops(config, GPT3_TOKENS)
    plain = training_flops(count_params(config), GPT3_TOKENS)
    assert abs(plain - GPT3_COMPUTE) / GPT3_COMPUTE < 0.03
    assert abs(with_attention - GPT3_COMPUTE) / GPT3_COMPUTE < 0.03
    # Kaplan's attention term: 6 · n_layer · n_ctx · d_model per token, about 1.4% here.
    assert with_attention - plain == pytest.approx(6 * 96 * 2048 * 12288 * GPT3_TOKENS, rel=1e-9)


def test_flops_per_token_by_hand():
    c = GPTConfig(vocab_size=100, block_size=32, n_layer=2, n_head=4, n_embd=64)
    n = count_params(c)
    assert flops_per_token(c, attention=False, training=False) == 2 * n
    assert flops_per_token(c, training=False) == 2 * n + 2 * 2 * 32 * 64
    assert flops_per_token(c) == 3 * (2 * n + 2 * 2 * 32 * 64)


def test_non_embedding_params_is_12_l_d_squared_plus_small_terms():
    c = GPTConfig(vocab_size=50257, block_size=1024, n_layer=12, n_head=12, n_embd=768, bias=False)
    # Without biases: 12·L·d² in the matrices, 2 LayerNorm weights per block, one final.
    assert non_embedding_params(c) == 12 * 12 * 768**2 + 12 * 2 * 768 + 768


# ----- the estimator ----------------------------------------------------------------------------
def test_estimator_on_a_hand_worked_case():
    # 1B parameters, 20B tokens (Chinchilla's 20 per parameter), 8 A100s at 50%:
    # 6 · 1e9 · 2e10 = 1.2e20 FLOPs; 8 · 312e12 · 0.5 = 1.248e15 FLOP/s; 96,153.8 s.
    est = estimate(1e9, 20e9, "A100", 8, 0.5)
    assert est.flops == pytest.approx(1.2e20)
    assert est.seconds == pytest.approx(1.2e20 / 1.248e15)
    assert est.days == pytest.approx(1.11289, rel=1e-4)
    assert est.gpu_hours == pytest.approx(213.675, rel=1e-4)
    assert est.memory["weights"] == 2e9 and est.memory["gradients"] == 2e9
    assert est.memory["optimizer"] == 12e9  # fp32 master weights + Adam's m and v
    assert est.min_devices_for_states == 1  # 16 GB of states fit in one 80 GB A100
    assert "1.2e+20 FLOPs" in est.summary()


def test_state_bytes_16_per_parameter_either_way():
    assert sum(state_bytes(1000, "mixed").values()) == 16_000
    assert sum(state_bytes(1000, "fp32").values()) == 16_000
    with pytest.raises(LslmError, match="precision"):
        state_bytes(1000, "fp8")


def test_activation_bytes_by_hand():
    c = GPTConfig(vocab_size=100, block_size=32, n_layer=2, n_head=4, n_embd=64)
    sbh = 32 * 3 * 64
    logits = 4 * 32 * 3 * 100
    assert activation_bytes(c, 3) == 2 * sbh * (34 + 5 * 4 * 32 / 64) + logits
    assert activation_bytes(c, 3, recompute="selective") == 2 * sbh * 34 + logits
    assert activation_bytes(c, 3, recompute="full") == 2 * sbh * 2 + logits
    assert activation_bytes(c, 3, precision="fp32") == 2 * 2 * sbh * (34 + 10) + logits
    with pytest.raises(LslmError, match="recompute"):
        activation_bytes(c, 3, recompute="some")


def test_gpt3_needs_many_gpus_for_weeks():
    est = PRESETS["GPT-3 175B"].estimate()
    assert est.n_devices == 1024 and est.accelerator.name == "V100"
    assert 80 < est.days < 110  # 3.19e23 FLOPs / (1024 · 125e12 · 0.3) ≈ 96 days
    assert est.min_devices_for_states >= 80  # 2.8 TB of training state
    assert est.fits
    assert not PRESETS["GPT-3 175B"].estimate(recompute="none").fits


def test_gpt2_preset_matches_the_llm_c_run():
    # llm.c: GPT-2 124M, 10B tokens, one 8×A100 node, ~60% MFU, about 90 minutes.
    est = PRESETS["GPT-2 124M"].estimate()
    assert 75 < est.seconds / 60 < 105
    assert est.fits


def test_estimator_rejects_bad_input():
    with pytest.raises(LslmError, match="accelerator"):
        estimate(1e9, 1e9, "TPU9000")
    with pytest.raises(LslmError, match="MFU"):
        estimate(1e9, 1e9, "A100", 1, 40)
    with pytest.raises(LslmError, match="devices"):
        estimate(1e9, 1e9, "A100", 0)
    with pytest.raises(LslmError, match="tokens"):
        estimate(1e9, -5, "A100")
    with pytest.raises(LslmError, match="parameters"):
        estimate("big", 1e9, "A100")


@pytest.mark.parametrize("n", [1e6, 1.25e8, 1.3e9, 1.3e10, 1.75e11])
def test_shape_for_params_lands_near_the_count(n):
    c = shape_for_params(n)
    assert abs(count_params(c) - n) / n < 0.2
    assert c.n_embd % c.n_head == 0


def test_accelerator_presets_have_sources():
    assert ACCELERATORS["H100"].peak_flops == 989e12 and ACCELERATORS["A100"].peak_flops == 312e12
    assert all(a.source for a in ACCELERATORS.values())


def test_exercise():
    days = 6 * 1e9 * 20e9 / (8 * 312e12 * 0.5) / 86_400
    ctx = dict(n_params=1e9, tokens=20e9, n_devices=8, peak_flops=312e12, mfu=0.5)
    assert check("training_days", days, **ctx)
    assert not check("training_days", days * 2, **ctx)


# ----- the widget -----------------------------------------------------------------------------------
def test_widget_renders_and_updates():
    w = ComputeEstimator()
    assert w.png.startswith(PNG_MAGIC) and w.last_error is None
    assert "lslm-compute-estimator" in w.box._dom_classes
    assert "lslm-control-mfu" in w.mfu._dom_classes
    assert w.result.days == pytest.approx(PRESETS["GPT-3 175B"].estimate().days)
    count, png = w.render_count, w.png
    w.preset.value = "classroom CPU"  # seven controls change, one redraw
    assert w.render_count == count + 1 and w.png != png
    assert w.n_devices.value == 1 and w.accelerator.value == "laptop CPU"
    days = w.result.days
    w.n_devices.value = 2
    assert w.result.days == pytest.approx(days / 2)
    w.params.value = 1e9  # not a preset's count: a guessed shape
    assert "guessed" in w.output.value and w.result.n_params == 1e9
    assert "FLOPs" in w.describe()


def test_widget_unknown_preset():
    with pytest.raises(LslmError, match="preset"):
        ComputeEstimator("GPT-5")


# ----- the scaling sweep ------------------------------------------------------------------------------
def test_fit_recovers_a_synthetic_power_law():
    ns = [1e3, 3e3, 1e4, 3e4, 1e5, 3e5]
    law = fit_power_law(ns, [5.0 * n**-0.076 for n in ns])
    assert law.alpha == pytest.approx(0.076, rel=1e-9) and law.a == pytest.approx(5.0)
    assert law.r2 == pytest.approx(1.0)
    # With multiplicative noise of ±1% the exponent is still close.
    noisy = [5.0 * n**-0.2 * (1 + 0.01 * (-1) ** i) for i, n in enumerate(ns)]
    assert abs(fit_power_law(ns, noisy).alpha - 0.2) < 0.01
    with pytest.raises(LslmError):
        fit_power_law([1e3], [2.0])


def test_a_tiny_two_size_sweep_runs():
    tok, tokens = prepare_data_from_text(RHYME)
    data = PreparedData(RHYME, None, tok, tokens)
    config = SweepConfig(sizes=((1, 8), (1, 32)), steps=40, batch_size=8, block_size=16,
                         warmup_iters=4, eval_iters=4, lr=1e-2)
    threads = torch.get_num_threads()
    result = run_sweep(config, data)
    assert torch.get_num_threads() == threads  # the sweep's single thread is put back
    assert [r["n_embd"] for r in result.runs] == [8, 32]
    big, small = result.runs[1], result.runs[0]
    assert big["non_embedding_params"] > 10 * small["non_embedding_params"]
    assert big["val_loss"] < small["val_loss"]  # the bigger model learns the rhyme faster
    assert result.fit().alpha > 0
    assert result.runs[0]["tokens"] == 40 * 8 * 16 and result.environment["torch"]


def test_sweep_config_rejects_bad_sizes():
    with pytest.raises(LslmError, match="two"):
        SweepConfig(sizes=((1, 16),))
    with pytest.raises(LslmError, match="multiple"):
        SweepConfig(sizes=((1, 16), (1, 18)))
    with pytest.raises(SystemExit):
        main(["--sizes", "big"])


def test_cached_sweep_refits_to_its_stored_law():
    stored = json.loads(CACHED_SWEEP.read_text())
    result = load_sweep(CACHED_SWEEP)
    assert load_sweep().runs == result.runs  # the default is the recorded sweep in the package
    law = result.fit()
    assert law.alpha == pytest.approx(stored["fit"]["alpha"], rel=1e-12)
    assert law.a == pytest.approx(stored["fit"]["a"], rel=1e-12)
    # It came from `python -m lslm.scaling` with the defaults the notebook uses.
    defaults = SweepConfig()
    assert [tuple(s) for s in result.settings["sizes"]] == list(defaults.sizes)
    assert result.settings["tokens"] == defaults.tokens
    assert len(result.runs) >= 5 and all(r["tokens"] == defaults.tokens for r in result.runs)
    assert {"params", "non_embedding_params", "val_loss", "seconds"} <= set(result.runs[0])
    assert 0.01 < law.alpha < 0.3 and law.r2 > 0.9
    losses = [r["val_loss"] for r in result.runs]
    assert losses[-1] < losses[0] - 0.3  # the biggest model is clearly better than the smallest


def test_load_sweep_missing_file(tmp_path):
    with pytest.raises(LslmError, match="python -m lslm.scaling"):
        load_sweep(tmp_path / "none.json")
