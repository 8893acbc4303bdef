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
