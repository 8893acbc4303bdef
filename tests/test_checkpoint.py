"""Checkpoints are atomic, load without running pickled code, and fail clearly."""

import os

import pytest
import torch

from lslm.checkpoint import atomic_save, load_checkpoint, load_model, save_checkpoint
from lslm.errors import LslmError
from lslm.model import GPT


@pytest.fixture
def saved(char_data, tiny_config, tmp_path):
    tok, _ = char_data
    model = GPT(tiny_config(tok.vocab_size))
    save_checkpoint(tmp_path, model=model.state_dict(), model_config=model.config.to_dict(),
                    tokenizer=tok.state(), step=3)
    return tmp_path, model, tok


def test_round_trip_gives_the_same_model(saved):
    path, model, tok = saved
    loaded, tok2 = load_model(path)
    x = torch.randint(0, tok.vocab_size, (2, 8))
    assert torch.equal(loaded(x)[0], model.eval()(x)[0])
    assert tok2.encode("Twinkle") == tok.encode("Twinkle")
    assert load_checkpoint(path / "ckpt.pt")["step"] == 3  # folder or file, both work


def test_failed_save_keeps_the_previous_checkpoint(tmp_path):
    target = tmp_path / "ckpt.pt"
    atomic_save({"format": "x", "w": torch.ones(3)}, target)
    good = target.read_bytes()
    with pytest.raises(Exception):
        atomic_save({"w": torch.zeros(1000), "bad": lambda: 0}, target)  # lambdas cannot be saved
    assert target.read_bytes() == good
    assert os.listdir(tmp_path) == ["ckpt.pt"]  # no half-written temp file left behind


def test_interrupt_during_save_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    target = tmp_path / "ckpt.pt"
    atomic_save({"w": torch.ones(3)}, target)
    good = target.read_bytes()

    def interrupted_save(obj, f):
        f.write(b"PK\x03\x04 half a zip")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", interrupted_save)
    with pytest.raises(KeyboardInterrupt):
        atomic_save({"w": torch.zeros(3)}, target)
    assert target.read_bytes() == good
    assert os.listdir(tmp_path) == ["ckpt.pt"]


class Exploit:
    def __reduce__(self):
        return (os.system, (f"touch {MARKER}",))


MARKER = None


def test_pickled_code_is_never_run(tmp_path):
    global MARKER
    MARKER = tmp_path / "pwned"
    bad = tmp_path / "ckpt.pt"
    torch.save({"format": "lslm-checkpoint-v1", "model": Exploit()}, bad)
    with pytest.raises(LslmError, match="holds pickled objects") as err:
        load_checkpoint(bad)
    assert not MARKER.exists()
    assert "\x1b" not in str(err.value) and "\n" not in str(err.value)


def test_missing_truncated_corrupt_and_foreign_files(saved, tmp_path):
    path, _, _ = saved
    with pytest.raises(LslmError, match="no checkpoint at"):
        load_checkpoint(tmp_path / "nowhere")
    data = (path / "ckpt.pt").read_bytes()
    truncated = tmp_path / "t" / "ckpt.pt"
    truncated.parent.mkdir()
    truncated.write_bytes(data[: len(data) // 2])
    corrupt = tmp_path / "c.pt"
    corrupt.write_bytes(os.urandom(4096))
    for bad in (truncated, corrupt):
        with pytest.raises(LslmError, match="truncated or corrupt") as err:
            load_model(bad)
        assert "\n" not in str(err.value)
    foreign = tmp_path / "f.pt"
    torch.save({"weights": torch.ones(2)}, foreign)
    with pytest.raises(LslmError, match="not an lslm checkpoint"):
        load_checkpoint(foreign)


def test_checkpoint_for_another_vocabulary(saved, char_data, tiny_config, tmp_path):
    from lslm.tokenizers import train_tokenizer

    path, model, tok = saved
    other = train_tokenizer("char", "abc")
    save_checkpoint(tmp_path / "o", model=model.state_dict(), model_config=model.config.to_dict(),
                    tokenizer=other.state())
    with pytest.raises(LslmError, match=f"vocabulary of {tok.vocab_size} tokens but its tokenizer has 3"):
        load_model(tmp_path / "o")
    # Weights from a model of another vocabulary, with a config claiming this one.
    wrong = GPT(tiny_config(tok.vocab_size + 5))
    save_checkpoint(tmp_path / "w", model=wrong.state_dict(), model_config=model.config.to_dict(),
                    tokenizer=tok.state())
    with pytest.raises(LslmError, match="another vocabulary"):
        load_model(tmp_path / "w")


# ----------------------------------------------------------- hostile files (issue 14)
def flip_bit(data: bytes, bit: int) -> bytes:
    out = bytearray(data)
    out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


def test_a_flipped_bit_in_the_weights_is_reported_as_corrupt(saved):
    path, model, _ = saved
    file = path / "ckpt.pt"
    data = file.read_bytes()
    # The bytes of one weight matrix are stored as they are: find them and flip one bit
    # in their middle, which without a checksum loads as a slightly different model.
    weights = model.state_dict()["blocks.0.mlp.c_fc.weight"].numpy().tobytes()
    at = data.index(weights) + len(weights) // 2
    file.write_bytes(flip_bit(data, at * 8 + 3))
    with pytest.raises(LslmError, match="corrupt") as err:
        load_model(path)
    assert "\n" not in str(err.value)


def test_single_bit_flips_are_detected_or_harmless(saved):
    """A sample of single-bit flips over the whole file: each either fails with LslmError or
    loads exactly the saved values (a flip in zip padding, say); none loads different ones."""
    import random

    path, _, _ = saved
    file = path / "ckpt.pt"
    data = file.read_bytes()
    good = load_checkpoint(file)
    rng = random.Random(14)
    outcomes = {"detected": 0, "harmless": 0}
    for bit in rng.sample(range(len(data) * 8), 120):
        file.write_bytes(flip_bit(data, bit))
        try:
            got = load_checkpoint(file)
        except LslmError as e:
            assert "\n" not in str(e)
            outcomes["detected"] += 1
            continue
        assert got.keys() == good.keys()
        assert all(torch.equal(got["model"][k], v) for k, v in good["model"].items())
        assert {k: v for k, v in got.items() if k != "model"} == {k: v for k, v in good.items() if k != "model"}
        outcomes["harmless"] += 1
    assert outcomes["detected"] > 0


def test_a_v1_checkpoint_without_checksum_still_loads(saved, tmp_path):
    import json

    path, model, tok = saved
    v1 = {"format": "lslm-checkpoint-v1", "model": model.state_dict(),
          "model_config": json.dumps(model.config.to_dict()), "tokenizer": json.dumps(tok.state()),
          "step": json.dumps(3)}
    atomic_save(v1, tmp_path / "v1" / "ckpt.pt")
    loaded, _ = load_model(tmp_path / "v1")
    x = torch.randint(0, tok.vocab_size, (1, 8))
    assert torch.equal(loaded(x)[0], model.eval()(x)[0])
    assert load_checkpoint(tmp_path / "v1")["step"] == 3


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs and /dev/zero")
def test_only_regular_files_are_read(tmp_path):
    device = tmp_path / "device"
    device.mkdir()
    (device / "ckpt.pt").symlink_to("/dev/zero")  # endless: read without a bound, it fills memory
    fifo = tmp_path / "fifo"
    fifo.mkdir()
    os.mkfifo(fifo / "ckpt.pt")  # blocks a reader until a writer comes
    folder = tmp_path / "folder"
    (folder / "ckpt.pt").mkdir(parents=True)
    for run in (device, fifo, folder):
        with pytest.raises(LslmError, match="not a regular file|is a folder") as err:
            load_model(run)
        assert "\n" not in str(err.value)


def test_a_private_file_is_never_quoted(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("hunter2 is the password\n")
    run = tmp_path / "run"
    run.mkdir()
    (run / "ckpt.pt").symlink_to(secret)
    with pytest.raises(LslmError) as err:
        load_model(run)
    assert "hunter2" not in str(err.value) and "'h'" not in str(err.value)


def test_a_compressed_zip_is_refused_before_torch_reads_it(saved, tmp_path):
    import zipfile

    path, _, _ = saved
    bomb = tmp_path / "bomb.pt"
    with zipfile.ZipFile(path / "ckpt.pt") as src, zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            dst.writestr(info.filename, src.read(info))
    with pytest.raises(LslmError, match="truncated or corrupt"):
        load_checkpoint(bomb)


def test_a_small_file_declaring_a_huge_model_is_refused_before_allocating(saved, tmp_path):
    """Neither a million layers nor a huge width is built: the config must match the weights
    actually present and fit lslm's memory limit."""
    path, model, tok = saved
    for change, message in (({"n_layer": 10**6}, "limit"), ({"n_layer": 10**6, "n_embd": 2, "n_head": 1}, "blocks"),
                            ({"n_layer": 3}, "blocks"),
                            ({"n_embd": 2**20, "n_head": 2}, "limit"), ({"vocab_size": 10**9}, "limit"),
                            ({"block_size": 17}, "wpe.weight")):
        config = {**model.config.to_dict(), **change}
        save_checkpoint(tmp_path / "huge", model=model.state_dict(), model_config=config,
                        tokenizer=tok.state())
        with pytest.raises(LslmError, match=message) as err:
            load_model(tmp_path / "huge")
        assert "\n" not in str(err.value)


@pytest.mark.parametrize("change, message", [
    ({"step": "3"}, "'step'"),
    ({"step": -1}, "'step'"),
    ({"step": True}, "'step'"),
    ({"model_config": [1, 2]}, "'model_config'"),
    ({"model_config": {"n_layer": "2"}}, "model_config is invalid"),
    ({"model_config": {"bias": "no"}}, "model_config is invalid"),
    ({"tokenizer": {"kind": "char", "chars": 5}}, "tokenizer is invalid"),
    ({"tokenizer": "char"}, "'tokenizer'"),
    ({"tokenizer": {"kind": "bpe", "model": "bm90IGEgbW9kZWw="}}, "tokenizer is invalid"),
    ({"model": {"wte.weight": [1, 2]}}, "'model'"),
    ({"model": "weights"}, "'model'"),
    ({"meta": "x"}, "'meta'"),
])
def test_parts_of_the_wrong_type_are_refused(saved, tmp_path, change, message):
    path, model, tok = saved
    parts = dict(model=model.state_dict(), model_config=model.config.to_dict(), tokenizer=tok.state(), step=3)
    parts.update(change)
    save_checkpoint(tmp_path / "bad", **parts)
    with pytest.raises(LslmError, match=message) as err:
        load_model(tmp_path / "bad")
    assert "\n" not in str(err.value)


def test_missing_parts_and_non_finite_weights_are_refused(saved, tmp_path):
    path, model, tok = saved
    save_checkpoint(tmp_path / "nomodel", model_config=model.config.to_dict(), tokenizer=tok.state())
    with pytest.raises(LslmError, match="no 'model' part"):
        load_model(tmp_path / "nomodel")
    state = {k: v.clone() for k, v in model.state_dict().items()}
    state["ln_f.weight"][0] = float("nan")
    save_checkpoint(tmp_path / "nan", model=state, model_config=model.config.to_dict(), tokenizer=tok.state())
    with pytest.raises(LslmError, match="NaN"):
        load_model(tmp_path / "nan")
    state = {**model.state_dict(), "extra.weight": torch.ones(2)}
    save_checkpoint(tmp_path / "extra", model=state, model_config=model.config.to_dict(), tokenizer=tok.state())
    with pytest.raises(LslmError, match="extra.weight"):
        load_model(tmp_path / "extra")


@pytest.fixture
def run(char_data, tiny_config, tmp_path):
    from lslm.train import TrainConfig, Trainer

    tok, data = char_data
    cfg = TrainConfig(max_iters=2, batch_size=2, eval_interval=0, progress=False, device="cpu")
    trainer = Trainer(GPT(tiny_config(tok.vocab_size), seed=0), tok, data, cfg, out_dir=tmp_path / "run")
    trainer.fit()
    return tmp_path / "run", data


def resave(run_dir, **change):
    ckpt = load_checkpoint(run_dir)
    ckpt.update(change)
    for name in [k for k, v in change.items() if v is None]:
        del ckpt[name]
    save_checkpoint(run_dir, **ckpt)


@pytest.mark.parametrize("change, message", [
    ({"optimizer": None}, "no 'optimizer' part"),
    ({"rng": None}, "no 'rng' part"),
    ({"history": None}, "no 'history' part"),
    ({"rng": {"torch": torch.zeros(3, dtype=torch.uint8), "batch": torch.zeros(3, dtype=torch.uint8)}},
     "random generator state"),
    ({"rng": {"torch": torch.get_rng_state()}}, "random generator state 'batch'"),
    ({"optimizer": {"state": {}, "param_groups": []}}, "optimizer state does not fit"),
    ({"optimizer": [1]}, "'optimizer'"),
    ({"train_config": {"lr": "fast"}}, "train_config is invalid"),
    ({"train_config": {"batch_size": 2.5}}, "train_config is invalid"),
    ({"history": {"step": 3}}, "'history'"),
])
def test_resume_refuses_incomplete_or_mistyped_checkpoints(run, change, message):
    from lslm.train import Trainer

    run_dir, data = run
    resave(run_dir, **change)
    with pytest.raises(LslmError, match=message) as err:
        Trainer.resume(run_dir, data)
    assert "\n" not in str(err.value)


def test_resume_refuses_optimizer_moments_of_the_wrong_shape(run):
    from lslm.train import Trainer

    run_dir, data = run
    ckpt = load_checkpoint(run_dir)
    opt = ckpt["optimizer"]
    first = next(iter(opt["state"]))
    opt["state"][first]["exp_avg"] = torch.zeros(3)
    resave(run_dir, optimizer=opt)
    with pytest.raises(LslmError, match="optimizer state does not fit"):
        Trainer.resume(run_dir, data)
    opt["state"][first]["exp_avg"] = torch.zeros(1)
    opt["param_groups"][0]["betas"] = (0.9, "x")
    resave(run_dir, optimizer=opt)
    with pytest.raises(LslmError, match="optimizer settings"):
        Trainer.resume(run_dir, data)


def test_a_resumed_run_still_continues_exactly(run):
    from lslm.train import Trainer

    run_dir, data = run
    trainer = Trainer.resume(run_dir, data, max_iters=3)
    assert trainer.step == 2
    trainer.fit()
    assert trainer.step == 3
