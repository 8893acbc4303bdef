"""Shared task helpers: TSV reading with clear errors, splits, the small training loop."""

import os

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


def test_fit_learns_a_line_reports_every_step_and_keeps_the_model_mode():
    torch.manual_seed(0)
    model = torch.nn.Linear(1, 1)
    x = torch.linspace(-1, 1, 64).unsqueeze(1)

    def loss_fn(m, batch):
        return ((m(batch) - (3 * batch + 1)) ** 2).mean()

    seen = []
    losses = fit(model, loss_fn, lambda g: x[torch.randint(0, 64, (16,), generator=g)], steps=300,
                 lr=0.1, weight_decay=0.0, callbacks=[lambda loop, rec: seen.append(rec["step"])])
    assert seen == list(range(1, 301)) and len(losses) == 300
    assert losses[-1] < 1e-3 < losses[0]
    assert abs(model.weight.item() - 3) < 0.05 and model.training
    with pytest.raises(LslmError, match="loss became"):
        fit(model, lambda m, b: m(b).sum() * float("nan"), lambda g: x, steps=2)


def test_one_word_vocabulary_for_every_task():
    from lslm.tasks import qa
    from lslm.tasks import translation as tr
    from lslm.tasks.common import WordVocab

    assert tr.WordVocab is WordVocab and issubclass(qa.QAVocab, WordVocab)
    v = WordVocab.from_sentences(["the dog", "a dog"])
    assert v.itos == ["<pad>", "<bos>", "<eos>", "<unk>", "a", "dog", "the"]  # sorted words
    assert v.encode("the cat") == v.encode(["the", "cat"]) == [6, v.unk_id]
    assert len(v) == v.vocab_size == 7
    q = qa.QAVocab(["the", "dog", "the", "a"])  # first-seen order, no start or end token
    assert q.itos == ["[PAD]", "[UNK]", "[SEP]", "the", "dog", "a"]
    assert (q.pad_id, q.unk_id, q.bos_id, q.eos_id) == (0, 1, None, None)
    assert q.encode("the cat") == q.encode(["the", "cat"]) == [3, 1]
    assert q.decode([3, 4, 0]) == "the dog" and len(q) == q.vocab_size == 6


def test_read_tsv_drops_a_bom_and_splits_rows_only_at_newlines(tmp_path):
    path = tmp_path / "odd.tsv"
    # A BOM (Windows editors write one), \r\n endings, and separators that splitlines()
    # would wrongly treat as line ends inside a field.
    path.write_bytes("\ufeffgood\tpos\r\nline\u2028sep\tneg\r\nnext\x85line\tpos\nform\x0cfeed\tneg".encode())
    assert read_tsv(path) == [("good", "pos"), ("line\u2028sep", "neg"), ("next\x85line", "pos"),
                              ("form\x0cfeed", "neg")]


def test_read_tsv_keeps_a_lone_carriage_return_inside_a_field(tmp_path):
    path = tmp_path / "cr.tsv"
    path.write_bytes(b"a\rb\tpos\n")
    assert read_tsv(path) == [("a\rb", "pos")]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs and /dev/zero")
def test_read_tsv_reads_only_regular_files(tmp_path):
    os.mkfifo(tmp_path / "fifo.tsv")
    (tmp_path / "zero.tsv").symlink_to("/dev/zero")
    for name in ("fifo.tsv", "zero.tsv"):
        with pytest.raises(LslmError, match="not a regular file"):
            read_tsv(tmp_path / name)
    with pytest.raises(LslmError, match="is a folder"):
        read_tsv(tmp_path)


def test_read_tsv_has_a_size_limit(tmp_path, monkeypatch):
    import lslm.tasks.common as common

    path = tmp_path / "big.tsv"
    path.write_text("a\tb\n" * 100)
    monkeypatch.setattr(common, "MAX_TEXT_BYTES", 50)
    with pytest.raises(LslmError, match="limit"):
        read_tsv(path)
