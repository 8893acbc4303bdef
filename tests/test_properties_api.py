"""Property-based tests of the Python API's boundaries (issue 14), with Hypothesis.

The property, everywhere: for any input, the outcome is either success or exactly one
``LslmError`` whose message is one line; never another exception, never a hang. Each
example runs under a hard time limit (SIGALRM) as well as Hypothesis's deadline, and the
example counts are kept small so the whole file runs in well under a minute on 2 cores.
"""

from __future__ import annotations

import json
import math
import os
import zipfile
from dataclasses import fields
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, event, given, settings  # noqa: E402
from hypothesis.errors import InvalidArgument  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from lslm.checkpoint import FORMAT, load_checkpoint, load_model, save_checkpoint  # noqa: E402
from lslm.errors import LslmError  # noqa: E402
from lslm.loop import TrainConfig  # noqa: E402
from lslm.model import GPT, GPTConfig  # noqa: E402
from lslm.tasks.common import read_tsv  # noqa: E402
from lslm.tasks.qa import load_squad  # noqa: E402
from lslm.tokenizers import train_tokenizer  # noqa: E402
from tests.conftest import time_limit  # noqa: E402

# No example database: the tests leave no folder behind in the checkout.
SETTINGS = dict(deadline=5000, database=None, suppress_health_check=[HealthCheck.too_slow])
HARD_LIMIT_S = 20  # an example still running after this long counts as a hang



def outcome(fn, *args, **kwargs):
    """``("ok", result)`` or ``("error", message)``; any other exception fails the test."""
    with time_limit(HARD_LIMIT_S):
        try:
            result = "ok", fn(*args, **kwargs)
        except LslmError as e:
            message = str(e)
            assert message and "\n" not in message and "\r" not in message, repr(message)
            result = "error", message
    try:  # --hypothesis-show-statistics then tells how often each outcome came
        event(result[0])
    except InvalidArgument:  # called outside a Hypothesis test
        pass
    return result


# ------------------------------------------------------------------- strategies
def anything(ints: bool = True) -> st.SearchStrategy:
    """Values of every common type, well-formed or not."""
    parts = [
        st.none(), st.booleans(),
        st.floats(allow_nan=True, allow_infinity=True),
        st.text(max_size=12), st.binary(max_size=6),
        st.lists(st.integers(-3, 3), max_size=3), st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
        st.fractions(max_denominator=7), st.decimals(allow_nan=True, places=2),
        st.sampled_from([np.int64(3), np.float32(0.5), np.float64("nan"), np.bool_(True), torch.tensor(2),
                         torch.tensor([1.0]), float("-inf"), Fraction(1, 3), 1j, object()]),
    ]
    if ints:
        parts.append(st.integers())
    return st.one_of(parts)


def mostly(plausible: st.SearchStrategy) -> st.SearchStrategy:
    """Plausible values most of the time, anything at all sometimes."""
    return st.one_of(plausible, plausible, anything())


GPT_FIELDS = [f.name for f in fields(GPTConfig)]
# Mostly valid values, with the edges (0, 1.0, a head count that does not divide) in reach.
GPT_PLAUSIBLE = {
    "vocab_size": st.integers(0, 100), "block_size": st.integers(0, 64), "n_layer": st.integers(0, 8),
    "n_head": st.sampled_from([1, 2, 4, 3]), "n_embd": st.sampled_from([4, 8, 16, 12, 10]),
    "dropout": st.floats(0, 0.99) | st.just(1.0), "bias": st.booleans(), "gelu_approx": st.sampled_from(["none", "tanh"]),
}


@settings(max_examples=150, **SETTINGS)
@given(st.one_of(st.fixed_dictionaries({}, optional=GPT_PLAUSIBLE),
                 st.fixed_dictionaries({}, optional={k: mostly(v) for k, v in GPT_PLAUSIBLE.items()})))
def test_gpt_config_gives_a_clean_config_or_one_lslm_error(kwargs):
    kind, cfg = outcome(GPTConfig, **kwargs)
    if kind == "ok":
        for name in ("vocab_size", "block_size", "n_layer", "n_head", "n_embd"):
            assert type(getattr(cfg, name)) is int and getattr(cfg, name) >= 1
        assert type(cfg.dropout) is float and 0 <= cfg.dropout < 1
        assert type(cfg.bias) is bool and cfg.gelu_approx in ("none", "tanh")
        assert cfg.n_embd % cfg.n_head == 0
        json.dumps(cfg.to_dict())  # it can be saved


TRAIN_PLAUSIBLE = {
    "max_iters": st.integers(-2, 10**6), "batch_size": st.integers(-2, 64), "grad_accum": st.integers(-1, 8),
    "lr": st.floats(-1, 1), "min_lr": st.floats(-1, 1), "warmup_iters": st.integers(-2, 100),
    "lr_decay_iters": st.none() | st.integers(-2, 100), "weight_decay": st.floats(-1, 1),
    "beta1": st.floats(-0.5, 1.5), "beta2": st.floats(-0.5, 1.5), "grad_clip": st.floats(-1, 5),
    "eval_interval": st.integers(-2, 100), "eval_iters": st.integers(-2, 20),
    "checkpoint_interval": st.integers(-2, 100), "seed": st.integers(-2, 2**64),
    "device": st.sampled_from(["auto", "cpu", "cuda", "cuda:0", "cuda:12", "mps", "banana", "", "cuda:"]),
    "amp": st.booleans(), "compile": st.booleans(), "progress": st.booleans(),
}


@settings(max_examples=150, **SETTINGS)
@given(st.one_of(st.fixed_dictionaries({}, optional=TRAIN_PLAUSIBLE),
                 st.fixed_dictionaries({}, optional={k: mostly(v) for k, v in TRAIN_PLAUSIBLE.items()})))
def test_train_config_gives_a_clean_config_or_one_lslm_error(kwargs):
    kind, cfg = outcome(TrainConfig, **kwargs)
    if kind == "ok":
        for name in ("lr", "min_lr", "weight_decay", "beta1", "beta2", "grad_clip"):
            value = getattr(cfg, name)
            assert type(value) is float and math.isfinite(value) and value >= 0
        assert cfg.lr > 0 and cfg.beta1 < 1 and cfg.beta2 < 1
        for name in ("max_iters", "batch_size", "grad_accum", "warmup_iters", "eval_interval", "eval_iters",
                     "checkpoint_interval", "seed"):
            assert type(getattr(cfg, name)) is int and 0 <= getattr(cfg, name) < 2**63
        assert all(type(getattr(cfg, n)) is bool for n in ("amp", "compile", "progress"))
        json.dumps(cfg.to_dict())


# ---------------------------------------------------------------------- generate
VOCAB = 7
MODEL = GPT(GPTConfig(vocab_size=VOCAB, block_size=6, n_layer=1, n_head=2, n_embd=8), seed=0).eval()


@st.composite
def prompts(draw, wild: bool):
    if wild and draw(st.integers(0, 9)) == 0:
        return draw(anything())
    if wild:
        shape = draw(st.lists(st.integers(0, 3), min_size=0, max_size=3))
        dtype = draw(st.sampled_from([torch.long, torch.int32, torch.uint8, torch.int8, torch.float32, torch.bool]))
    else:
        shape = draw(st.lists(st.integers(1, 3), min_size=1, max_size=2))
        dtype = draw(st.sampled_from([torch.long, torch.long, torch.int32]))
    low, high = (0, 2) if dtype == torch.bool else (0 if dtype == torch.uint8 or not wild else -2,
                                                       VOCAB + 2 if wild else VOCAB)
    gen = torch.Generator().manual_seed(draw(st.integers(0, 99)))
    return torch.randint(low, high, shape, generator=gen).to(dtype)


@st.composite
def generate_args(draw):
    """Half the time every argument is plausible (success is likely), else anything goes."""
    wild = draw(st.booleans())

    def pick(plausible, other):
        return draw(st.one_of(plausible, other) if wild else plausible)

    return dict(
        idx=draw(prompts(wild)),
        max_new_tokens=pick(st.integers(0, 8), st.one_of(st.integers(-3, -1), anything(ints=False))),
        temperature=pick(st.floats(0, 3), anything()),
        top_k=pick(st.none() | st.integers(1, 9), st.one_of(st.integers(-1, 0), anything(ints=False))),
        top_p=pick(st.none() | st.floats(0.01, 1), anything(ints=False)),
        seed=pick(st.none() | st.integers(0, 2**63 - 1), st.one_of(st.integers(-2, 2**65), anything(ints=False))),
        use_cache=pick(st.booleans(), anything()),
    )


@settings(max_examples=120, **SETTINGS)
@given(generate_args())
def test_generate_samples_in_the_vocabulary_or_gives_one_lslm_error(args):
    kind, out = outcome(MODEL.generate, **args)
    if kind == "ok":
        prompt = args["idx"]
        assert out.dtype == torch.long and out.dim() == prompt.dim()
        assert out.shape[-1] == prompt.shape[-1] + args["max_new_tokens"]
        assert torch.equal(out[..., : prompt.shape[-1]], prompt.long())
        assert int(out.min()) >= 0 and int(out.max()) < VOCAB


# -------------------------------------------------------------------- checkpoints
@pytest.fixture(scope="module")
def small_ckpt(tmp_path_factory):
    tok = train_tokenizer("char", "abcdefg")
    model = GPT(GPTConfig(vocab_size=tok.vocab_size, block_size=4, n_layer=1, n_head=1, n_embd=4), seed=0)
    folder = tmp_path_factory.mktemp("ckpt")
    parts = dict(model=model.state_dict(), model_config=model.config.to_dict(), tokenizer=tok.state(), step=5,
                 meta={"corpus": "x"})
    file = save_checkpoint(folder / "good", **parts)
    return {"dir": folder, "data": file.read_bytes(), "parts": parts, "good": load_checkpoint(file)}


def same_checkpoint(a: dict, b: dict) -> bool:
    if a.keys() != b.keys() or a["model"].keys() != b["model"].keys():
        return False
    tensors = all(x.dtype == y.dtype and torch.equal(x, y) for x, y in
                  ((a["model"][k], b["model"][k]) for k in a["model"]))
    return tensors and {k: v for k, v in a.items() if k != "model"} == {k: v for k, v in b.items() if k != "model"}


def write(small_ckpt, data: bytes) -> Path:
    file = small_ckpt["dir"] / "mutated" / "ckpt.pt"
    file.parent.mkdir(exist_ok=True)
    file.write_bytes(data)
    return file


@settings(max_examples=120, **SETTINGS)
@given(st.data())
def test_every_single_bit_flip_is_detected_or_harmless(small_ckpt, data):
    """With the checksum a flip either fails to load (LslmError) or loads exactly the
    saved values: a flip never changes a weight, a config or the step silently."""
    original = small_ckpt["data"]
    bit = data.draw(st.integers(0, len(original) * 8 - 1), label="bit")
    mutated = bytearray(original)
    mutated[bit // 8] ^= 1 << (bit % 8)
    kind, got = outcome(load_checkpoint, write(small_ckpt, bytes(mutated)))
    if kind == "ok":
        assert same_checkpoint(got, small_ckpt["good"]), f"bit {bit} changed the checkpoint silently"


@settings(max_examples=60, **SETTINGS)
@given(st.data())
def test_overwritten_or_truncated_bytes_give_the_model_or_one_lslm_error(small_ckpt, data):
    original = bytearray(small_ckpt["data"])
    for _ in range(data.draw(st.integers(1, 4), label="edits")):
        at = data.draw(st.integers(0, len(original) - 1))
        original[at] = data.draw(st.integers(0, 255))
    if data.draw(st.booleans(), label="truncate"):
        original = original[: data.draw(st.integers(0, len(original)))]
    file = write(small_ckpt, bytes(original))
    kind, got = outcome(load_checkpoint, file)
    if kind == "ok":
        assert same_checkpoint(got, small_ckpt["good"])
        outcome(load_model, file)


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=6),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=8,
)


@settings(max_examples=80, **SETTINGS)
@given(st.data())
def test_checkpoints_with_missing_or_mistyped_parts_load_or_give_one_lslm_error(small_ckpt, data):
    parts = dict(small_ckpt["parts"])
    names = sorted(parts)
    config_keys = sorted(parts["model_config"])
    for _ in range(data.draw(st.sampled_from([0, 1, 1, 2, 3]), label="mutations")):
        how = data.draw(st.sampled_from(["drop", "swap", "config"]))
        name = data.draw(st.sampled_from(names))
        if how == "drop":
            parts.pop(name, None)
        elif how == "swap":
            parts[name] = data.draw(JSON_VALUES, label=f"new {name}")
        elif isinstance(parts.get("model_config"), dict):
            key = data.draw(st.sampled_from(config_keys))
            parts["model_config"] = {**parts["model_config"], key: data.draw(JSON_VALUES, label=key)}
    file = save_checkpoint(small_ckpt["dir"] / "parts", **parts)
    kind, got = outcome(load_model, file)
    if kind == "ok":
        model, _ = got
        assert all(torch.equal(model.state_dict()[k], v) for k, v in small_ckpt["parts"]["model"].items())


def test_the_checkpoint_under_test_is_the_current_format(small_ckpt):
    with zipfile.ZipFile(small_ckpt["dir"] / "good" / "ckpt.pt") as z:
        assert any(name.endswith("data.pkl") for name in z.namelist())
    assert torch.load(small_ckpt["dir"] / "good" / "ckpt.pt", weights_only=True)["format"] == FORMAT


# ------------------------------------------------------------------------ loaders
TSV_TEXT = st.text(st.sampled_from(list("ab \t\n\r") + ["\u2028", "\x85", "\ufeff", "\x0c", "\x1c", "é"]),
                   max_size=40)


@pytest.fixture(scope="module")
def loader_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("loaders")


@settings(max_examples=100, **SETTINGS)
@given(st.one_of(TSV_TEXT.map(lambda t: t.encode("utf-8")), st.binary(max_size=40)),
       st.integers(1, 3))
def test_read_tsv_gives_rows_or_one_lslm_error(loader_dir, content, columns):
    file = loader_dir / "data.tsv"
    file.write_bytes(content)
    kind, rows = outcome(read_tsv, file, columns)
    if kind == "ok":
        text = content.decode("utf-8").removeprefix("\ufeff")  # a leading BOM is not data
        # One row per line that is not blank, lines ending only at \n (or \r\n): U+2028,
        # U+0085, form feeds and lone \r are text (str.splitlines would cut at each).
        lines = [line.removesuffix("\r") for line in text.split("\n")]
        lines = lines[:-1] if text.endswith("\n") else lines
        data_lines = [line for line in lines if any(f.strip() for f in line.split("\t"))]
        assert len(rows) == len(data_lines) > 0
        for row, line in zip(rows, data_lines):
            assert len(row) == columns
            assert row == tuple(f.strip() for f in line.split("\t"))


def json_mostly(plausible: st.SearchStrategy) -> st.SearchStrategy:
    """Plausible values most of the time, any JSON value sometimes."""
    return st.one_of(plausible, plausible, JSON_VALUES)


@st.composite
def squad_files(draw):
    """A SQuAD file whose answers are at their answer_start, with some fields then perturbed:
    a shifted or negative start, a value of another type, a field left out."""
    def perturb(value, plausible_other):
        roll = draw(st.integers(0, 19))
        return value if roll < 17 else draw(plausible_other) if roll < 19 else draw(JSON_VALUES)

    paragraphs = []
    for _ in range(draw(st.integers(1, 2))):
        context = draw(st.text("abc .", min_size=1, max_size=12))
        qas = []
        for q in range(draw(st.integers(1, 2))):
            start = draw(st.integers(0, len(context) - 1))
            end = draw(st.integers(start + 1, len(context)))
            answer = {"text": perturb(context[start:end], st.text("abc", max_size=3)),
                      "answer_start": perturb(start, st.integers(-len(context) - 2, len(context) + 2))}
            qa = {"id": perturb(f"q{q}", st.integers()), "question": perturb("Why?", st.none()),
                  "answers": perturb([answer], st.just([]))}
            qas.append({k: v for k, v in qa.items() if draw(st.integers(0, 29)) > 0})
        paragraphs.append({"context": perturb(context, st.text(max_size=3)), "qas": qas})
    return json.dumps({"data": [{"title": "t", "paragraphs": paragraphs}]})


@settings(max_examples=100, **SETTINGS)
@given(st.one_of(squad_files(), squad_files(), JSON_VALUES.map(json.dumps),
                 st.integers(1, 5000).map(lambda n: "[" * n + "]" * n),
                 st.binary(max_size=30).map(lambda b: b.decode("latin-1"))),
       st.booleans())
def test_load_squad_gives_examples_or_one_lslm_error(loader_dir, text, as_bytes):
    file = loader_dir / "squad.json"
    if as_bytes:
        file.write_bytes(text.encode("latin-1", "replace"))
    else:
        file.write_text(text, encoding="utf-8")
    kind, examples = outcome(load_squad, file)
    if kind == "ok":
        assert examples
        for ex in examples:
            assert ex.answer_start >= 0
            assert ex.context[ex.answer_start : ex.answer_start + len(ex.answer)] == ex.answer != ""


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
@pytest.mark.parametrize("loader", [read_tsv, load_squad, load_checkpoint])
def test_loaders_never_block_on_a_fifo(loader_dir, loader):
    fifo = loader_dir / f"fifo-{loader.__name__}.pt"
    os.mkfifo(fifo)
    kind, message = outcome(loader, fifo)
    assert kind == "error" and "regular file" in message


def test_deep_json_in_a_checkpoint_part_is_an_lslm_error(small_ckpt):
    # json.dumps refuses such depth, so only a file written by hand holds it.
    payload = {"format": "lslm-checkpoint-v1", "meta": "[" * 100_000 + "]" * 100_000}
    torch.save(payload, small_ckpt["dir"] / "deep.pt")
    kind, message = outcome(load_checkpoint, small_ckpt["dir"] / "deep.pt")
    assert kind == "error" and "'meta'" in message
