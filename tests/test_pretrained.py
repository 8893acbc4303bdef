"""The shared pretrained model: trained once, cached, then loaded identically."""

import pytest
import torch

from lslm.errors import LslmError
import lslm
from lslm.pretrained import char_lm, char_lm_history


def test_char_lm_is_trained_once_then_loaded(tmp_path, monkeypatch):
    monkeypatch.setenv("LSLM_CACHE", str(tmp_path))
    model, tok = char_lm(steps=3)
    saved = list((tmp_path / "models").glob("char-v2-python-docs-*-3/ckpt.pt"))
    assert len(saved) == 1
    again, tok2 = char_lm(steps=3)
    assert tok2.chars == tok.chars
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values()))
    assert not again.training
    # The same recipe trained again gives the same weights: the cache holds nothing special.
    fresh, _ = char_lm(steps=3, retrain=True)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), fresh.state_dict().values()))
    with pytest.raises(LslmError, match="steps"):
        char_lm(steps=0)


def test_char_lm_keeps_its_training_curves_and_they_do_not_change_the_weights(tmp_path, monkeypatch):
    from lslm.pipeline import prepare_data
    from lslm.train import TrainConfig, Trainer

    monkeypatch.setenv("LSLM_CACHE", str(tmp_path))
    model, tok = char_lm(steps=4)
    history = char_lm_history(steps=4)
    assert history["step"] == [1, 2, 3, 4]
    assert history["eval_step"] == [0, 4] and len(history["val_loss"]) == 2
    # The same recipe without any evaluation gives the same weights: evaluation draws its own batches.
    data = prepare_data("python-docs", tokenizer="char")
    plain = Trainer(lslm.GPT(model.config, seed=0), data.tokenizer, data.tokens,
                    TrainConfig(max_iters=4, warmup_iters=0, eval_interval=0, device="cpu"))
    plain.fit()
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), plain.model.state_dict().values()))


def test_a_corrupt_cached_char_lm_is_trained_again(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("LSLM_CACHE", str(tmp_path))
    model, _ = char_lm(steps=2)
    (ckpt,) = (tmp_path / "models").glob("char-v2-python-docs-*-2/ckpt.pt")
    ckpt.write_bytes(b"not a checkpoint")
    again, _ = char_lm(steps=2)
    assert "training it again" in capsys.readouterr().out
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values()))
    assert char_lm_history(steps=2)["step"] == [1, 2]  # the file was written again
