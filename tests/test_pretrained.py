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


def test_a_snapshot_is_the_same_run_caught_at_that_step(tmp_path, monkeypatch):
    import copy

    from lslm import pretrained
    from lslm.pipeline import prepare_data
    from lslm.train import TrainConfig, Trainer

    monkeypatch.setenv("LSLM_CACHE", str(tmp_path))
    monkeypatch.setattr(pretrained, "CHAR_LM_SNAPSHOTS", (2,))
    final, _ = char_lm(steps=4)
    young, tok = pretrained.char_lm_snapshot(2, steps=4)
    caught = {}
    data = prepare_data("python-docs", tokenizer="char")

    def catch(trainer, record):
        if record.get("step") == 2 and "train_loss" in record:
            caught.update(copy.deepcopy(trainer.model.state_dict()))

    replica = Trainer(lslm.GPT(final.config, seed=0), data.tokenizer, data.tokens,
                      TrainConfig(max_iters=4, warmup_iters=0, eval_interval=0, device="cpu"), callbacks=[catch])
    replica.fit()
    assert caught and all(torch.equal(young.state_dict()[k], v) for k, v in caught.items())
    assert not all(torch.equal(a, b) for a, b in zip(young.state_dict().values(), final.state_dict().values()))
    untrained, _ = pretrained.char_lm_snapshot(0, steps=4)
    assert all(torch.equal(a, b) for a, b in zip(untrained.state_dict().values(),
                                                 lslm.GPT(final.config, seed=0).state_dict().values()))
    with pytest.raises(LslmError, match="snapshots at steps"):
        pretrained.char_lm_snapshot(3, steps=4)


def test_a_lost_snapshot_is_trained_again(tmp_path, monkeypatch):
    from lslm import pretrained

    monkeypatch.setenv("LSLM_CACHE", str(tmp_path))
    monkeypatch.setattr(pretrained, "CHAR_LM_SNAPSHOTS", (1,))
    first, _ = pretrained.char_lm_snapshot(1, steps=2)
    (snapshot,) = (tmp_path / "models").glob("char-v2-python-docs-*-2/step1/ckpt.pt")
    snapshot.unlink()
    again, _ = pretrained.char_lm_snapshot(1, steps=2)
    assert snapshot.exists()
    assert all(torch.equal(a, b) for a, b in zip(first.state_dict().values(), again.state_dict().values()))
