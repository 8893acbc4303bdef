"""Shared task helpers: TSV reading with clear errors, splits, the small training loop."""

import pytest
import torch

from lslm.errors import LslmError
from lslm.tasks.common import fit, read_tsv, split_examples


def test_read_tsv_rows_and_errors(tmp_path):
    good = tmp_path / "good.tsv"
    good.write_text("a fine day\tpos\n\nawful\tneg\n", encoding="utf-8")
    assert read_tsv(good) == [("a fine day", "pos"), ("awful", "neg")]
    bad = tmp_path / "bad.tsv"
    bad.write_text("one\ttwo\nonly one column\n", encoding="utf-8")
    with pytest.raises(LslmError, match="line 2: expected 2 tab-separated columns, found 1"):
        read_tsv(bad)
    empty = tmp_path / "empty.tsv"
    empty.write_text("\n\n", encoding="utf-8")
    with pytest.raises(LslmError, match="no rows"):
        read_tsv(empty)
    with pytest.raises(LslmError, match="no file"):
        read_tsv(tmp_path / "missing.tsv")
    latin = tmp_path / "latin.tsv"
    latin.write_bytes("caf\xe9\tpos\n".encode("latin-1"))
    with pytest.raises(LslmError, match="UTF-8"):
        read_tsv(latin)


def test_split_examples_is_seeded_and_complete():
    items = list(range(50))
    a, b = split_examples(items, seed=1), split_examples(items, seed=1)
    assert a == b and split_examples(items, seed=2) != a
    assert sorted(a["train"] + a["val"] + a["test"]) == items
    assert len(a["val"]) == len(a["test"]) == 5
    with pytest.raises(LslmError, match="at least 3"):
        split_examples([1, 2])


def test_fit_learns_a_line_and_reports_every_step():
    torch.manual_seed(0)
    model = torch.nn.Linear(1, 1)
    x = torch.linspace(-1, 1, 64).unsqueeze(1)

    def loss_fn(m, batch):
        return ((m(batch) - (3 * batch + 1)) ** 2).mean()

    seen = []
    losses = fit(model, loss_fn, lambda g: x[torch.randint(0, 64, (16,), generator=g)], steps=300,
                 lr=0.1, weight_decay=0.0, callback=lambda s, l: seen.append(s))
    assert seen == list(range(300)) and len(losses) == 300
    assert losses[-1] < 1e-3 < losses[0]
    assert abs(model.weight.item() - 3) < 0.05 and not model.training
    with pytest.raises(LslmError, match="loss became"):
        fit(model, lambda m, b: m(b).sum() * float("nan"), lambda g: x, steps=2)
