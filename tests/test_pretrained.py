"""The shared pretrained model: trained once, cached, then loaded identically."""

import pytest
import torch

from lslm.errors import LslmError
from lslm.pretrained import char_lm


def test_char_lm_is_trained_once_then_loaded(tmp_path, monkeypatch):
    monkeypatch.setenv("LSLM_CACHE", str(tmp_path))
    model, tok = char_lm(steps=3)
    saved = list((tmp_path / "models").glob("char-python-docs-*-3/ckpt.pt"))
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
