"""The `lslm` command: train, eval and sample, and a clear one-line error for every bad input."""

import errno
import json
import os
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch

from lslm.checkpoint import load_checkpoint
from lslm.cli import main
from lslm.errors import LslmError
from tests.conftest import RHYME, needs_cpp_compiler, time_limit

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
    # (Saved through save_checkpoint: edited with torch.save, its checksum would not match.)
    from lslm.checkpoint import save_checkpoint

    ckpt = load_checkpoint(run)
    ckpt["model"]["wte.weight"] = torch.zeros(99, 16)
    save_checkpoint(tmp_path / "vocab", **ckpt)
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


@contextmanager
def started(args: list[str], **kw):
    """A process that is killed on the way out, whatever happened (a failing test must not
    leave a million-step training run behind for the rest of the suite)."""
    proc = subprocess.Popen(args, **kw)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=60)


STOPS = [("SIGINT", 130), ("SIGTERM", 143), ("SIGHUP", 129)]


@pytest.mark.parametrize("name, code", STOPS, ids=[s for s, _ in STOPS])
def test_a_stop_signal_saves_a_checkpoint_that_resumes(tmp_path, corpus, name, code):
    """A real Ctrl-C (SIGINT), scheduler stop (SIGTERM) or hang-up (SIGHUP) to a real training
    process: exit 128 + the signal's number, checkpoint kept, resume works."""
    sig = getattr(signal, name, None)
    if sig is None:
        pytest.skip(f"{name} does not exist on this platform")
    out = tmp_path / "run"
    args = [sys.executable, "-m", "lslm", "train", "--out", str(out), "--corpus", str(corpus), *TINY]
    args[args.index("--max-iters") + 1] = "1000000"
    # A shell starts background jobs with SIGINT ignored, and Python then keeps it ignored: give
    # the child the disposition a terminal's foreground job has, wherever this suite runs.
    default_sigint = (lambda: signal.signal(signal.SIGINT, signal.SIG_DFL)) if os.name == "posix" else None
    with started(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                 preexec_fn=default_sigint) as proc:
        deadline = time.time() + 120
        while not (out / "ckpt.pt").exists() and time.time() < deadline and proc.poll() is None:
            time.sleep(0.2)  # the first periodic checkpoint: training is under way
        proc.send_signal(sig)
        stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == code, stderr
    assert "--resume" in stderr and "Traceback" not in stderr
    step = load_checkpoint(out)["step"]
    assert step >= 6 and f"Interrupted at step {step}" in stdout
    assert f"Checkpoint saved in {out} at step {step}" in stdout
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


# --- hostile input: every option is checked at the boundary ----------------------------------


def refused(argv, capsys, *words):
    """An option value that argparse or the command refuses: exit status 2 and exactly one
    stderr line, "lslm CMD: error: ...", never a traceback."""
    try:
        code = main(argv)
    except SystemExit as e:  # argparse's own exit
        code = e.code
    err = capsys.readouterr().err
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"lslm {argv[0]}: error:"), err
    for w in words:
        assert w in lines[0], lines[0]
    return lines[0]


def _cuda_absent() -> bool:
    return not torch.cuda.is_available()


def _mps_absent() -> bool:
    return not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())


BAD_TRAIN_OPTIONS = [
    (["--lr", "nan"], "--lr"), (["--lr", "inf"], "--lr"), (["--lr", "0"], "--lr"), (["--lr=-1"], "--lr"),
    (["--lr", "fast"], "not a number"),
    (["--seed=-1"], "--seed"), (["--seed", str(2**63)], "--seed"), (["--seed", "1.5"], "not a whole number"),
    (["--device", "banana"], "not a device"),
    (["--eval-interval=-1"], "--eval-interval"), (["--max-iters=-1"], "--max-iters"),
    (["--batch-size", "0"], "--batch-size"), (["--grad-accum", "0"], "--grad-accum"),
    (["--n-layer", "0"], "--n-layer"), (["--n-head", "0"], "--n-head"), (["--n-embd", "0"], "--n-embd"),
    (["--block-size", "0"], "--block-size"), (["--vocab-size", "0"], "--vocab-size"),
    (["--vocab-size", str(2**31)], "--vocab-size"),
    (["--dropout", "1"], "--dropout"), (["--dropout=-0.1"], "--dropout"), (["--dropout", "nan"], "--dropout"),
    (["--corpus", ""], "--corpus"), (["--out", ""], "--out"), (["--tensorboard", ""], "--tensorboard"),
]
if _mps_absent():
    BAD_TRAIN_OPTIONS.append((["--device", "mps"], "mps is not available"))
if _cuda_absent():
    BAD_TRAIN_OPTIONS.append((["--device", "cuda"], "no CUDA GPU"))
else:
    BAD_TRAIN_OPTIONS.append((["--device", "cuda:99"], "numbered from 0"))


@pytest.mark.parametrize("option, words", BAD_TRAIN_OPTIONS, ids=[" ".join(o) for o, _ in BAD_TRAIN_OPTIONS])
def test_train_refuses_values_out_of_range(tmp_path, corpus, capsys, option, words):
    out = tmp_path / "r"
    argv = ["train", "--out", str(out), "--corpus", str(corpus), *TINY, *option]
    refused(argv, capsys, words)
    assert not out.exists()  # refused before anything was made


BAD_SAMPLE_OPTIONS = [
    (["--max-new-tokens=-1"], "--max-new-tokens"), (["--max-new-tokens", "10000000"], "--max-new-tokens"),
    (["--temperature=-0.5"], "--temperature"), (["--temperature", "nan"], "--temperature"),
    (["--temperature", "inf"], "--temperature"), (["--top-k", "0"], "--top-k"),
    (["--top-p", "0"], "--top-p"), (["--top-p", "1.5"], "--top-p"), (["--top-p", "nan"], "--top-p"),
    (["--seed=-3"], "--seed"), (["--ckpt", ""], "--ckpt"),
]


@pytest.mark.parametrize("option, words", BAD_SAMPLE_OPTIONS, ids=[" ".join(o) for o, _ in BAD_SAMPLE_OPTIONS])
def test_sample_refuses_values_out_of_range(run, capsys, option, words):
    refused(["sample", "--ckpt", str(run), *option], capsys, words)


@pytest.mark.parametrize("value", ["-1", "0", "5"])
def test_eval_refuses_fewer_tokens_than_one_window(run, capsys, value):
    refused(["eval", "--ckpt", str(run), "--max-tokens", value], capsys, "--max-tokens")
    assert main(["eval", "--ckpt", str(run), "--max-tokens", "16"]) == 0  # one window of 16


def test_vocab_size_with_a_char_tokenizer_is_refused(tmp_path, corpus, capsys):
    refused(["train", "--out", str(tmp_path / "r"), "--corpus", str(corpus), *TINY, "--vocab-size", "300"],
            capsys, "--vocab-size is for --tokenizer bpe or unigram")


def test_a_model_too_big_for_memory_is_refused_before_allocating(tmp_path, corpus, capsys, monkeypatch):
    from lslm import devices

    monkeypatch.setattr(devices, "device_memory", lambda device: 10**9)  # a 1 GB machine
    line = refused(["train", "--out", str(tmp_path / "r"), "--corpus", str(corpus), *TINY,
                    "--n-embd", "65536", "--n-head", "1"], capsys, "GB", "smaller --n-embd")
    assert "1.0 GB" in line


def test_out_and_tensorboard_that_cannot_be_folders(tmp_path, corpus, capsys):
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    base = ["train", "--corpus", str(corpus), *TINY]
    refused([*base, "--out", str(a_file / "run")], capsys, "cannot create the run folder")
    refused([*base, "--out", str(tmp_path / "r"), "--tensorboard", str(a_file)], capsys, "is a file")
    refused([*base, "--out", str(tmp_path / "r"), "--tensorboard", str(a_file / "tb")], capsys,
            "cannot create the TensorBoard folder")
    if Path("/proc/self").is_dir():
        refused([*base, "--out", "/proc/lslm-run"], capsys, "cannot create the run folder")
    assert not (tmp_path / "r").exists()


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root may write anywhere")
def test_out_in_a_read_only_folder(tmp_path, corpus, capsys):
    locked_dir = tmp_path / "ro"
    locked_dir.mkdir()
    locked_dir.chmod(0o500)
    try:
        refused(["train", "--out", str(locked_dir / "run"), "--corpus", str(corpus), *TINY], capsys,
                "cannot create the run folder")
    finally:
        locked_dir.chmod(0o700)


# --- --resume: what a resumed run keeps, from any folder -----------------------------------------


@pytest.mark.parametrize("option", [
    ["--lr", "0.01"], ["--batch-size", "8"], ["--grad-accum", "2"], ["--amp"], ["--compile"],
    ["--eval-interval", "3"], ["--seed", "7"], ["--dropout", "0.1"], ["--n-layer", "2"],
    ["--tokenizer", "bpe"], ["--vocab-size", "300"], ["--corpus", "python-docs"],
], ids=lambda o: " ".join(o))
def test_resume_refuses_options_it_would_ignore(run, capsys, option):
    before = (run / "ckpt.pt").read_bytes()
    refused(["train", "--out", str(run), "--resume", "--no-progress", *option], capsys,
            "--resume keeps the run's settings", "differs", "--max-iters, --device")
    assert (run / "ckpt.pt").read_bytes() == before


def test_resume_accepts_the_saved_values_and_a_longer_run(run, corpus, capsys):
    refused(["train", "--out", str(run), "--resume", "--max-iters", "5"], capsys,
            "below the 12 steps", "at least 12")
    same = ["--lr", "0.001", "--batch-size", "4", "--seed", "1337", "--no-amp", "--corpus", str(corpus)]
    assert main(["train", "--out", str(run), "--resume", "--max-iters", "14", "--no-progress", *same]) == 0
    assert load_checkpoint(run)["step"] == 14


def test_a_run_resumes_and_evaluates_from_any_folder(tmp_path, capsys, monkeypatch):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "rhyme.txt").write_text(RHYME, encoding="utf-8")
    monkeypatch.chdir(tmp_path / "data")
    assert main(["train", "--out", "../run", "--corpus", "rhyme.txt", *TINY]) == 0
    assert load_checkpoint(tmp_path / "run")["meta"]["corpus"] == str(tmp_path / "data" / "rhyme.txt")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert main(["train", "--out", "../run", "--resume", "--max-iters", "14", "--no-progress"]) == 0
    assert main(["eval", "--ckpt", "../run"]) == 0


def test_a_stored_relative_corpus_is_read_only_where_it_exists(tmp_path, monkeypatch, capsys):
    from lslm.cli import stored_corpus

    monkeypatch.chdir(tmp_path)
    with pytest.raises(LslmError, match="relative path 'rhyme.txt'.*folder the run was started in"):
        stored_corpus({"meta": {"corpus": "rhyme.txt"}}, tmp_path / "ckpt.pt")
    (tmp_path / "rhyme.txt").write_text(RHYME)
    assert stored_corpus({"meta": {"corpus": "rhyme.txt"}}, tmp_path / "ckpt.pt") == "rhyme.txt"
    with pytest.raises(LslmError, match="no usable corpus"):
        stored_corpus({"meta": {"corpus": ["a", "list"]}}, tmp_path / "ckpt.pt")


# --- lost work: locks, --overwrite, failed saves, stale temporary files ----------------------


def test_a_second_run_on_the_same_folder_is_refused(tmp_path, corpus, capsys):
    from lslm.rundir import locked

    out = tmp_path / "run"
    out.mkdir()
    with locked(out):  # as if another `lslm train` were running there
        refused(["train", "--out", str(out), "--corpus", str(corpus), *TINY], capsys,
                "another lslm train", f"(process {os.getpid()})", "pick another --out")
        assert not (out / "ckpt.pt").exists()
    assert main(["train", "--out", str(out), "--corpus", str(corpus), *TINY]) == 0  # the lock went with it


def stop_at(step: int, monkeypatch):
    """Make the next training run stop at ``step`` as if Ctrl-C were pressed there."""
    from lslm.train import Trainer

    after_step = Trainer.after_step

    def stopping(self, record):
        after_step(self, record)
        if self.step == step:
            raise KeyboardInterrupt

    monkeypatch.setattr(Trainer, "after_step", stopping)


def test_overwrite_stopped_before_its_first_checkpoint_keeps_the_old_run(run, corpus, capsys, monkeypatch):
    before = (run / "ckpt.pt").read_bytes()
    stop_at(3, monkeypatch)
    assert main(["train", "--out", str(run), "--corpus", str(corpus), *TINY, "--overwrite"]) == 130
    captured = capsys.readouterr()
    assert "still holds the previous run" in captured.err and "Checkpoint saved" not in captured.out
    assert (run / "ckpt.pt").read_bytes() == before  # the 12-step run, not 3 steps of the new one
    # Once the new run has saved (at step 2 here), it owns the folder: a stop saves it.
    assert main(["train", "--out", str(run), "--corpus", str(corpus), *TINY, "--overwrite",
                 "--eval-interval", "2"]) == 130
    assert load_checkpoint(run)["step"] == 3


@pytest.mark.parametrize("resume", [False, True], ids=["new-run", "resumed-run"])
def test_a_failed_save_on_stop_says_so_and_keeps_the_old_checkpoint(run, corpus, capsys, monkeypatch, resume):
    import lslm.utils

    out = run if resume else run.parent / "new"
    before = (run / "ckpt.pt").read_bytes()
    capsys.readouterr()

    def disk_full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    stop_at(14 if resume else 3, monkeypatch)
    monkeypatch.setattr(lslm.utils.os, "fsync", disk_full)
    argv = ["train", "--out", str(out), "--resume", "--max-iters", "20", "--no-progress"] if resume else \
        ["train", "--out", str(out), "--corpus", str(corpus), *TINY]
    line = fails(argv, capsys, "could not save a checkpoint", "No space left on device", "nothing was saved")
    assert ("already there is intact" if resume else "no earlier checkpoint") in line
    assert "saved in" not in capsys.readouterr().out
    assert (run / "ckpt.pt").read_bytes() == before
    assert not list(out.glob(".ckpt.pt.*.tmp"))


def test_stale_temporary_files_are_removed_when_a_run_resumes(run, capsys):
    stale = run / ".ckpt.pt.k1ll3d.tmp"
    stale.write_bytes(b"half a checkpoint")
    assert main(["train", "--out", str(run), "--resume", "--no-progress"]) == 0
    assert not stale.exists() and (run / "ckpt.pt").exists()


def test_divergence_points_to_a_checkpoint_only_if_one_exists(tmp_path, corpus, capsys):
    line = fails(["train", "--out", str(tmp_path / "r"), "--corpus", str(corpus), *TINY, "--lr", "1e30"],
                 capsys, "the loss became")
    assert "checkpoint" not in line and not (tmp_path / "r" / "ckpt.pt").exists()
    line = fails(["train", "--out", str(tmp_path / "r2"), "--corpus", str(corpus), *TINY, "--lr", "1e30",
                  "--eval-interval", "1"], capsys, "the loss became")
    if (tmp_path / "r2" / "ckpt.pt").exists():  # it diverged after a periodic checkpoint
        assert f"the last good checkpoint is in {tmp_path / 'r2'}" in line


# --- hangs and hostile files: corpora that are not regular files ---------------------------------



@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_a_fifo_or_device_corpus_is_refused_without_reading(tmp_path, capsys):
    fifo = tmp_path / "pipe.txt"
    os.mkfifo(fifo)
    with time_limit(30):
        refused(["train", "--out", str(tmp_path / "r"), "--corpus", str(fifo), *TINY], capsys, "not a regular file")
        if Path("/dev/zero").exists():
            refused(["train", "--out", str(tmp_path / "r"), "--corpus", "/dev/zero", *TINY], capsys,
                    "not a regular file")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_a_checkpoints_corpus_path_gets_the_same_checks(run, corpus, capsys):
    """eval and --resume read the corpus a checkpoint names: a FIFO there must not hang,
    and a file that is not the training text must not be quoted in the error."""
    with time_limit(30):
        corpus.unlink()
        os.mkfifo(corpus)
        refused(["eval", "--ckpt", str(run)], capsys, "not a regular file")
        refused(["train", "--out", str(run), "--resume", "--max-iters", "14"], capsys, "not a regular file")
        corpus.unlink()
    corpus.write_text("SECRET token: Ωmega-7 " * 40, encoding="utf-8")
    line = refused(["eval", "--ckpt", str(run)], capsys, "never saw", "not the text the model was trained on")
    assert "Ω" not in line and "SECRET" not in line
    corpus.write_bytes(b"private \xff\xfe data " * 30)
    line = refused(["eval", "--ckpt", str(run)], capsys, "not valid UTF-8")
    assert "private" not in line and "0xff" not in line and "\\xff" not in line


# --- output: pipes that close, terminals that cannot show every character ------------------------


def test_sample_into_a_closed_pipe_exits_quietly(run):
    args = [sys.executable, "-m", "lslm", "sample", "--ckpt", str(run), "--max-new-tokens", "3000"]
    with started(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as proc:
        proc.stdout.close()  # `| head -c 0`: the reader is gone before anything is written
        stderr = proc.stderr.read().decode()
        proc.wait(timeout=120)
    assert proc.returncode in (0, 141), stderr
    assert stderr == ""


def test_sample_to_an_ascii_terminal_replaces_what_it_cannot_show(tmp_path, capsys):
    text = tmp_path / "cafe.txt"
    text.write_text("Un café, s'il vous plaît. Déjà vu. " * 40, encoding="utf-8")
    out = tmp_path / "run"
    assert main(["train", "--out", str(out), "--corpus", str(text), *TINY, "--max-iters", "2"]) == 0
    env = {**os.environ, "PYTHONIOENCODING": "ascii"}
    p = subprocess.run([sys.executable, "-m", "lslm", "sample", "--ckpt", str(out), "--prompt", "Un café",
                        "--max-new-tokens", "5", "--seed", "1"], capture_output=True, env=env, timeout=120)
    assert p.returncode == 0, p.stderr.decode()
    assert p.stdout.startswith(b"Un caf?") and b"Traceback" not in p.stderr


def test_resume_reads_the_checkpoint_once(run, capsys, monkeypatch):
    from lslm import checkpoint

    reads = []
    real = checkpoint.load_checkpoint
    monkeypatch.setattr(checkpoint, "load_checkpoint", lambda path: reads.append(path) or real(path))
    assert main(["train", "--out", str(run), "--resume", "--max-iters", "14", "--no-progress"]) == 0
    assert len(reads) == 1 and load_checkpoint(run)["step"] == 14


def test_warm_trains_a_shared_model_once_then_finds_it(tmp_path, monkeypatch, capsys):
    from lslm.cli import main
    from lslm.pretrained import char_lm

    monkeypatch.setenv("LSLM_CACHE", str(tmp_path))
    assert main(["warm", "--only", "char"]) == 0
    first = capsys.readouterr().out
    assert f"cache: {tmp_path}" in first and "char: the character model" in first
    assert len(list((tmp_path / "models").glob("char-v2-*/ckpt.pt"))) == 1
    trained = float(first.split("ready in ")[1].split(" s")[0])
    assert main(["warm", "--only", "char"]) == 0  # the second time it is only loaded
    loaded = float(capsys.readouterr().out.split("ready in ")[1].split(" s")[0])
    assert loaded < trained / 5
    model, _ = char_lm()  # what the notebooks get is what warm made
    assert model.num_params() > 0 and not list((tmp_path / "models").glob("*.tmp*"))


def test_warm_refuses_a_model_it_does_not_know(capsys):
    from lslm.cli import main

    with pytest.raises(SystemExit) as e:
        main(["warm", "--only", "gpt5"])
    assert e.value.code == 2 and "invalid choice" in capsys.readouterr().err
