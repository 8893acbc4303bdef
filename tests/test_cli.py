"""The `lslm` command: train, eval and sample, and a clear one-line error for every bad input."""

import json
import os
import subprocess
import sys

import pytest
import torch

from lslm.checkpoint import load_checkpoint
from lslm.cli import main
from tests.conftest import RHYME, needs_cpp_compiler

TINY = ["--n-layer", "1", "--n-head", "2", "--n-embd", "16", "--block-size", "16",
        "--batch-size", "4", "--max-iters", "12", "--eval-interval", "6", "--no-progress"]


@pytest.fixture
def corpus(tmp_path):
    path = tmp_path / "rhyme.txt"
    path.write_text(RHYME, encoding="utf-8")
    return path


@pytest.fixture
def run(tmp_path, corpus, capsys):
    """A trained run folder (12 steps of a tiny model)."""
    out = tmp_path / "run"
    assert main(["train", "--out", str(out), "--corpus", str(corpus), *TINY]) == 0
    assert "Done: step 12" in capsys.readouterr().out
    return out


def fails(argv, capsys, *words):
    """Run the CLI, expect a non-zero exit and one stderr line containing ``words``."""
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code != 0, err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    for w in words:
        assert w in lines[0], lines[0]
    return lines[0]


def test_train_eval_sample(run, capsys):
    assert (run / "ckpt.pt").exists()
    for split in ("val", "test"):
        assert main(["eval", "--ckpt", str(run), "--split", split, "--json"]) == 0
        metrics = json.loads(capsys.readouterr().out)
        assert metrics["split"] == split
        for key in ("loss", "perplexity", "bits_per_char", "top1_accuracy", "top5_accuracy"):
            assert metrics[key] > 0
        assert metrics["perplexity"] == pytest.approx(2.718281828 ** metrics["loss"], rel=1e-6)
    args = ["sample", "--ckpt", str(run), "--prompt", "Twinkle", "--max-new-tokens", "20",
            "--temperature", "0.9", "--top-k", "5", "--top-p", "0.9", "--seed", "3"]
    assert main(args) == 0
    a = capsys.readouterr().out
    assert main(args) == 0
    assert capsys.readouterr().out == a and a.startswith("Twinkle") and len(a.rstrip("\n")) == 27


def test_existing_run_is_never_overwritten_silently(run, corpus, capsys):
    before = (run / "ckpt.pt").read_bytes()
    fails(["train", "--out", str(run), "--corpus", str(corpus), *TINY], capsys,
          "already holds a run", "--resume", "--overwrite")
    assert (run / "ckpt.pt").read_bytes() == before
    fails(["train", "--out", str(run), "--resume", "--n-embd", "32", "--no-progress"], capsys, "--n-embd=32 differs")
    assert main(["train", "--out", str(run), "--resume", "--max-iters", "18", "--no-progress"]) == 0
    assert "Resuming" in capsys.readouterr().out
    assert load_checkpoint(run)["step"] == 18
    assert main(["train", "--out", str(run), "--corpus", str(corpus), *TINY, "--overwrite"]) == 0
    assert load_checkpoint(run)["step"] == 12


def test_resume_without_a_run(tmp_path, capsys):
    fails(["train", "--out", str(tmp_path / "x"), "--resume"], capsys, "nothing to resume")


@pytest.mark.parametrize(
    "content, words",
    [
        (None, ["no such file"]),
        (b"", ["empty"]),
        (b"caf\xe9 au lait " * 10, ["UTF-8"]),
        (b"\x7fELF\x02\x01\x01\x00\x00\x00" * 20, ["binary"]),
    ],
    ids=["missing", "empty", "not-utf8", "binary"],
)
def test_bad_corpus(tmp_path, capsys, content, words):
    path = tmp_path / "corpus.txt"
    if content is not None:
        path.write_bytes(content)
    fails(["train", "--out", str(tmp_path / "r"), "--corpus", str(path), *TINY], capsys, *words)
    assert not (tmp_path / "r" / "ckpt.pt").exists()


def test_corpus_shorter_than_block(tmp_path, capsys):
    path = tmp_path / "short.txt"
    path.write_text("To be, or not to be.\n" * 5)
    fails(["train", "--out", str(tmp_path / "r"), "--corpus", str(path), *TINY, "--block-size", "64"],
          capsys, "block_size is 64", "smaller --block-size")


def test_heads_must_divide_hidden_size(tmp_path, corpus, capsys):
    fails(["train", "--out", str(tmp_path / "r"), "--corpus", str(corpus), *TINY, "--n-embd", "30",
           "--n-head", "4"], capsys, "n_embd=30 is not divisible by n_head=4")


def test_vocab_too_large_says_the_largest_that_works(tmp_path, corpus, capsys):
    line = fails(["train", "--out", str(tmp_path / "r"), "--corpus", str(corpus), *TINY,
                  "--tokenizer", "bpe", "--vocab-size", "50000"], capsys, "50000", "largest that works")
    assert any(ch.isdigit() for ch in line.split("largest that works")[1])


def test_prompt_with_unknown_characters(run, capsys):
    fails(["sample", "--ckpt", str(run), "--prompt", "Ωmega"], capsys, "'Ω'")


def test_long_prompt_is_cropped_with_a_notice(run, capsys):
    code = main(["sample", "--ckpt", str(run), "--prompt", "twinkle " * 10, "--max-new-tokens", "5", "--seed", "1"])
    captured = capsys.readouterr()
    assert code == 0
    assert "the model sees only the last 16" in captured.err
    assert captured.out.startswith("twinkle " * 10)


def test_bad_checkpoints(run, tmp_path, capsys):
    fails(["sample", "--ckpt", str(tmp_path / "none")], capsys, "no checkpoint at")
    data = (run / "ckpt.pt").read_bytes()
    for name, blob in (("trunc", data[: len(data) // 3]), ("junk", os.urandom(2000))):
        (tmp_path / name).mkdir()
        (tmp_path / name / "ckpt.pt").write_bytes(blob)
        fails(["eval", "--ckpt", str(tmp_path / name)], capsys, "truncated or corrupt")
    # A checkpoint whose weights were made for another vocabulary.
    ckpt = torch.load(run / "ckpt.pt", weights_only=True)
    ckpt["model"]["wte.weight"] = torch.zeros(99, 16)
    (tmp_path / "vocab").mkdir()
    torch.save(ckpt, tmp_path / "vocab" / "ckpt.pt")
    fails(["sample", "--ckpt", str(tmp_path / "vocab")], capsys, "another vocabulary")


def test_console_script_and_module_exit_codes(tmp_path):
    """Through a real process: exit status 2, one line on stderr, no traceback."""
    lslm = os.path.join(os.path.dirname(sys.executable), "lslm")
    for cmd in ([lslm], [sys.executable, "-m", "lslm"]):
        p = subprocess.run([*cmd, "sample", "--ckpt", str(tmp_path / "missing")],
                           capture_output=True, text=True, timeout=120)
        assert p.returncode == 2
        assert p.stderr.count("\n") == 1 and "no checkpoint at" in p.stderr
        assert "Traceback" not in p.stderr


def test_ctrl_c_saves_a_checkpoint_that_resumes(tmp_path, corpus):
    """A real SIGINT to a real training process: exit 130, checkpoint kept, resume works."""
    import signal
    import time

    out = tmp_path / "run"
    args = [sys.executable, "-m", "lslm", "train", "--out", str(out), "--corpus", str(corpus), *TINY]
    args[args.index("--max-iters") + 1] = "1000000"
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not (out / "ckpt.pt").exists() and time.time() < deadline:  # first periodic checkpoint
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    assert "--resume" in stderr and "Traceback" not in stderr
    step = load_checkpoint(out)["step"]
    assert step >= 6 and f"Interrupted at step {step}" in stdout
    assert main(["train", "--out", str(out), "--resume", "--max-iters", str(step + 3), "--no-progress"]) == 0
    assert load_checkpoint(out)["step"] == step + 3


@needs_cpp_compiler  # the quick recipe compiles
def test_recipe_sets_the_defaults_and_options_override_it(tmp_path, corpus, capsys):
    from lslm.recipes import RECIPES

    quick = RECIPES["quick"]
    out = tmp_path / "quick"
    # The recipe's shape and training settings, except what the command line names.
    # --max-iters 0: the settings are saved but nothing trains, so nothing gets compiled.
    args = ["train", "--out", str(out), "--corpus", str(corpus), "--recipe", "quick", "--n-embd", "32",
            "--block-size", "16", "--max-iters", "0", "--eval-interval", "3", "--no-progress"]
    assert main(args) == 0
    ckpt = load_checkpoint(out)
    assert ckpt["model_config"]["n_layer"] == quick.model["n_layer"]
    assert (ckpt["model_config"]["n_embd"], ckpt["model_config"]["block_size"]) == (32, 16)
    train = ckpt["train_config"]
    for key in ("batch_size", "lr", "min_lr", "amp", "compile"):
        assert train[key] == quick.train[key], key
    assert (train["max_iters"], train["eval_interval"]) == (0, 3)
    assert quick.train["amp"] and quick.train["compile"]
    assert main([*args, "--overwrite", "--no-amp", "--no-compile", "--lr", "1e-3"]) == 0
    train = load_checkpoint(out)["train_config"]
    assert (train["amp"], train["compile"], train["lr"], train["min_lr"]) == (False, False, 1e-3, 1e-4)
    fails(["train", "--out", str(out), "--resume", "--recipe", "quick"], capsys, "drop --recipe")
    with pytest.raises(SystemExit) as exit_info:  # argparse's own message, with the choices
        main(["train", "--out", str(tmp_path / "y"), "--recipe", "huge"])
    assert exit_info.value.code == 2
    assert "invalid choice: 'huge'" in capsys.readouterr().err


def test_baby_recipe_is_the_trainconfig_default():
    from lslm.recipes import RECIPES
    from lslm.train import TrainConfig

    default = TrainConfig()
    for key, value in RECIPES["baby"].train.items():
        assert getattr(default, key) == value, key


def test_training_threads_spin_except_under_torchrun(monkeypatch):
    from lslm.cli import spin_waiting_threads

    # A private copy of the environment: what spin_waiting_threads sets must not leak into
    # later tests, or into the notebook kernels they start.
    monkeypatch.setattr(os, "environ", dict(os.environ))
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    monkeypatch.delenv("RANK", raising=False)
    spin_waiting_threads()  # torch is already imported here: too late, so nothing is set
    assert "OMP_WAIT_POLICY" not in os.environ
    monkeypatch.delitem(sys.modules, "torch")  # as in a fresh `lslm train` process
    spin_waiting_threads()
    assert os.environ["OMP_WAIT_POLICY"] == "ACTIVE"
    monkeypatch.setenv("OMP_WAIT_POLICY", "PASSIVE")  # the learner's own choice wins
    spin_waiting_threads()
    assert os.environ["OMP_WAIT_POLICY"] == "PASSIVE"
    monkeypatch.delenv("OMP_WAIT_POLICY")
    monkeypatch.setenv("RANK", "0")  # processes of one torchrun job share the cores
    spin_waiting_threads()
    assert "OMP_WAIT_POLICY" not in os.environ
