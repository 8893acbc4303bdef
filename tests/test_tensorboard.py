"""TensorBoard logging: the event files hold the numbers the Trainer's history holds."""

import subprocess
import sys

import pytest

from lslm.cli import main
from lslm.model import GPT
from lslm.train import TrainConfig, Trainer

event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")


def read_events(logdir):
    acc = event_accumulator.EventAccumulator(str(logdir), size_guidance={"scalars": 0, "images": 0})
    acc.Reload()
    return acc


def test_scalars_and_attention_images_are_logged(char_data, tiny_config, tmp_path):
    tok, data = char_data
    model = GPT(tiny_config(tok.vocab_size))
    cfg = TrainConfig(max_iters=12, batch_size=4, eval_interval=6, eval_iters=2, warmup_iters=2,
                      lr=3e-3, progress=False, device="cpu")
    trainer = Trainer(model, tok, data, cfg, tensorboard=tmp_path / "tb")
    h = trainer.fit()
    trainer.close()
    acc = read_events(tmp_path / "tb")
    tags = acc.Tags()
    assert {"train/loss", "val/loss", "train/eval_loss", "lr", "tokens_per_sec"} <= set(tags["scalars"])

    train = acc.Scalars("train/loss")
    assert [e.step for e in train] == list(range(1, 13))
    assert [e.value for e in train] == pytest.approx(h["train_loss"], rel=1e-6)  # float32 in the file
    val = acc.Scalars("val/loss")
    assert [e.step for e in val] == [0, 6, 12]
    assert [e.value for e in val] == pytest.approx(h["val_loss"], rel=1e-6)
    assert val[-1].value < val[0].value  # the logged curve goes down
    assert [e.value for e in acc.Scalars("lr")] == pytest.approx(h["lr"], rel=1e-6)
    assert all(e.value > 0 for e in acc.Scalars("tokens_per_sec"))

    # One attention image per layer and evaluation (all heads side by side), blown up to 128 px.
    assert set(tags["images"]) == {"attention/layer_0", "attention/layer_1"}
    images = acc.Images("attention/layer_0")
    assert [im.step for im in images] == [0, 6, 12]
    assert images[0].height >= 128


def test_no_tensorboard_no_files_and_a_lazy_import(char_data, tiny_config, tmp_path):
    tok, data = char_data
    cfg = TrainConfig(max_iters=2, batch_size=2, eval_interval=0, progress=False, device="cpu")
    trainer = Trainer(GPT(tiny_config(tok.vocab_size)), tok, data, cfg)
    trainer.fit()
    assert trainer.writer() is None
    code = "import sys, lslm.train; sys.exit('torch.utils.tensorboard' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_cli_train_tensorboard_flag(tmp_path, capsys):
    from tests.conftest import RHYME

    corpus = tmp_path / "rhyme.txt"
    corpus.write_text(RHYME, encoding="utf-8")
    args = ["train", "--out", str(tmp_path / "run"), "--corpus", str(corpus), "--n-layer", "1",
            "--n-head", "2", "--n-embd", "16", "--block-size", "16", "--batch-size", "4",
            "--max-iters", "4", "--eval-interval", "2", "--no-progress", "--device", "cpu",
            "--tensorboard", str(tmp_path / "tb")]
    assert main(args) == 0
    acc = read_events(tmp_path / "tb")
    assert [e.step for e in acc.Scalars("train/loss")] == [1, 2, 3, 4]
    assert [e.step for e in acc.Scalars("val/loss")] == [0, 2, 4]


def test_resume_after_a_crash_logs_each_step_once(char_data, tiny_config, tmp_path):
    tok, data = char_data
    cfg = TrainConfig(max_iters=8, batch_size=2, eval_interval=3, eval_iters=1, progress=False, device="cpu")

    def crash_at_5(trainer, record):
        if record["step"] == 5:
            raise RuntimeError("power cut")  # no checkpoint after the one at step 3

    first = Trainer(GPT(tiny_config(tok.vocab_size)), tok, data, cfg, out_dir=tmp_path / "run",
                    callbacks=[crash_at_5], tensorboard=tmp_path / "tb", tensorboard_attention=False)
    with pytest.raises(RuntimeError):
        first.fit()
    first.close()
    resumed = Trainer.resume(tmp_path / "run", data, tensorboard=tmp_path / "tb")
    assert resumed.step == 3
    h = resumed.fit()
    resumed.close()
    acc = read_events(tmp_path / "tb")
    train = acc.Scalars("train/loss")
    assert [e.step for e in train] == list(range(1, 9))  # steps 4 and 5 once, from the resumed run
    assert [e.value for e in train] == pytest.approx(h["train_loss"], rel=1e-6)
    assert [e.step for e in acc.Scalars("val/loss")] == [0, 3, 6, 8]


def test_without_tensorboard_installed_the_error_names_the_extra(char_data, tiny_config, tmp_path,
                                                                 monkeypatch):
    from lslm.errors import LslmError

    tok, data = char_data
    cfg = TrainConfig(max_iters=2, batch_size=2, eval_interval=0, progress=False, device="cpu")
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # as if it were not installed
    with pytest.raises(LslmError, match=r"pip install 'lslm\[tensorboard\]'"):
        Trainer(GPT(tiny_config(tok.vocab_size)), tok, data, cfg, tensorboard=tmp_path / "tb")
    assert not (tmp_path / "tb").exists()
