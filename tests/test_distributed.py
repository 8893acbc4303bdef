"""Data-parallel training under torchrun gives the curve of one process with the same batch.

The runs use two micro-batches per update, so DDP's no_sync path is exercised as well.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from lslm.checkpoint import load_checkpoint
from lslm.cli import main
from lslm.errors import LslmError
from lslm.model import GPT
from lslm.train import TORCHRUN_VARS, TrainConfig, Trainer
from tests.conftest import RHYME

TINY = ["--n-layer", "1", "--n-head", "2", "--n-embd", "32", "--block-size", "16",
        "--batch-size", "8", "--grad-accum", "2", "--max-iters", "20", "--eval-interval", "10",
        "--lr", "2e-2", "--no-progress"]


def torchrun(nproc: int, args: list[str], timeout: float = 120) -> subprocess.CompletedProcess:
    launcher = Path(sys.executable).with_name("torchrun")
    cmd = [str(launcher)] if launcher.exists() else [sys.executable, "-m", "torch.distributed.run"]
    env = {k: v for k, v in os.environ.items() if k not in TORCHRUN_VARS}
    env["OMP_NUM_THREADS"] = "1"
    return subprocess.run(
        [*cmd, "--standalone", f"--nproc_per_node={nproc}", "-m", "lslm", *args],
        env=env, capture_output=True, text=True, timeout=timeout, cwd=Path(__file__).parents[1],
    )


def compare_runs(tmp_path, device: str, nproc: int, rel: float):
    corpus = tmp_path / "rhyme.txt"
    corpus.write_text(RHYME, encoding="utf-8")
    common = ["--corpus", str(corpus), "--device", device, *TINY]
    ddp = torchrun(nproc, ["train", "--out", str(tmp_path / "ddp"), *common])
    assert ddp.returncode == 0, ddp.stderr[-2000:]
    assert ddp.stdout.count("Done: step 20") == 1  # only rank 0 speaks
    assert f"{nproc} process" in ddp.stdout
    assert main(["train", "--out", str(tmp_path / "single"), *common]) == 0

    a, b = load_checkpoint(tmp_path / "ddp"), load_checkpoint(tmp_path / "single")
    ha, hb = a["history"], b["history"]
    assert ha["step"] == hb["step"] == list(range(1, 21))
    assert ha["train_loss"] == pytest.approx(hb["train_loss"], rel=rel)
    assert ha["val_loss"] == pytest.approx(hb["val_loss"], rel=rel)
    assert hb["train_loss"][-1] < hb["train_loss"][0] - 0.2  # both runs really trained (warmup is 100 steps)
    for name, weight in b["model"].items():
        assert torch.allclose(a["model"][name], weight, rtol=rel, atol=rel), name


def test_two_cpu_processes_match_one(tmp_path, capsys):
    compare_runs(tmp_path, "cpu", nproc=2, rel=1e-4)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_processes_match_one(tmp_path, capsys):
    # nccl needs one GPU per process; with a single GPU this runs DDP on one process.
    compare_runs(tmp_path, "cuda", nproc=min(2, torch.cuda.device_count()), rel=1e-3)


def test_each_process_takes_its_slice_of_the_global_batch(char_data, tiny_config):
    tok, data = char_data
    cfg = TrainConfig(batch_size=6, progress=False, device="cpu")
    trainer = Trainer(GPT(tiny_config(tok.vocab_size)), tok, data, cfg)
    full_x, full_y = trainer.batch("train", torch.Generator().manual_seed(5))
    trainer.world_size = 3  # pretend to be ranks 0..2 of three processes
    parts = []
    for rank in range(3):
        trainer.rank = rank
        x, y = trainer.batch("train", torch.Generator().manual_seed(5))
        assert x.shape == (2, 16)
        parts.append((x, y))
    assert torch.equal(torch.cat([x for x, _ in parts]), full_x)
    assert torch.equal(torch.cat([y for _, y in parts]), full_y)


def test_batch_must_split_evenly(char_data, tiny_config, monkeypatch):
    tok, data = char_data
    env = dict(RANK="0", WORLD_SIZE="2", LOCAL_RANK="0", MASTER_ADDR="127.0.0.1", MASTER_PORT="29999")
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    cfg = TrainConfig(batch_size=7, progress=False, device="cpu")
    with pytest.raises(LslmError, match="batch_size 7 does not split evenly over 2 processes"):
        Trainer(GPT(tiny_config(tok.vocab_size)), tok, data, cfg)


def test_torchrun_is_installed():
    assert shutil.which("torchrun") or Path(sys.executable).with_name("torchrun").exists()


def test_tokens_per_process_exercise(capsys):
    from lslm.checks import check

    assert check("tokens_per_process", 8 // 2 * 16, batch_size=8, block_size=16, world_size=2)
    assert not check("tokens_per_process", 8 * 16, batch_size=8, block_size=16, world_size=2)
    with pytest.raises(LslmError, match="split evenly"):
        check("tokens_per_process", 1, batch_size=7, block_size=16, world_size=2)
