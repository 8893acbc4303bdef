"""Every public entry point that takes token ids or text runs with the model on any device.

The inputs a learner passes are CPU tensors, lists or strings; the model may sit on a GPU
(cuda) or an Apple GPU (mps). Each entry point below is run with CPU inputs and the model on

* every accelerator this machine has (skipped where there is none): the whole call runs,
  every module of the model must receive its tensors on the model's device, and numbers
  must agree with the same call on the CPU;
* torch's "meta" device, on every machine: a meta model computes shapes only, and it
  accepts CPU inputs without complaint (an embedding of CPU ids on meta weights gives a
  meta result), so nothing fails by itself there. Hooks on every module record the device
  of each tensor the model receives; the call stops at the first step that needs real
  numbers. What reached the model by then must all be on meta: an entry point that forgot
  to move its inputs hands the model CPU tensors, which the hooks see
  (``test_the_meta_stand_in_catches_an_input_left_on_the_cpu`` shows that it does).
"""

from __future__ import annotations

import copy
import json
import math
import os
import signal
import sys
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pytest
import torch

from lslm import devices, interpret
from lslm.cli import main
from lslm.devices import model_device, to_device
from lslm.errors import LslmError
from lslm.evaluate import evaluate
from lslm.generate import compare_methods, sample_perplexity, time_generation
from lslm.model import GPT, GPTConfig
from lslm.seq2seq import Seq2Seq, Seq2SeqConfig
from lslm.tasks import qa, sentiment
from lslm.tasks.common import WordVocab
from lslm.tasks.translation import translate_with
from tests.conftest import RHYME

HAS_MPS = bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())
ACCELERATORS = [
    pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU here")),
    pytest.param("mps", marks=pytest.mark.skipif(not HAS_MPS, reason="no Apple mps here")),
]


# ----- the models every entry point is run with -----------------------------------------------
@dataclass
class Kit:
    """Tiny models of every kind, with what their entry points need."""

    gpt: GPT
    tok: Any
    tokens: torch.Tensor  # a 1-D CPU split
    seq2seq: Seq2Seq
    src_vocab: WordVocab
    tgt_vocab: WordVocab
    classifier: sentiment.SentimentClassifier
    span_qa: qa.SpanQA
    qa_vocab: qa.QAVocab
    qa_examples: list

    def models(self) -> list[torch.nn.Module]:
        return [self.gpt, self.seq2seq, self.classifier, self.span_qa]

    def to(self, device: str) -> "Kit":
        kit = copy.deepcopy(self)
        for model in kit.models():
            model.to(device)
        return kit


SENTENCES = ["the cat sees the dog", "a dog sees a cat", "the bird sings"]


@pytest.fixture
def kit(char_data, tiny_config) -> Kit:
    tok, data = char_data
    gpt = GPT(tiny_config(tok.vocab_size), seed=0)
    src_vocab = WordVocab.from_sentences(SENTENCES)
    tgt_vocab = WordVocab.from_sentences(s.upper() for s in SENTENCES)
    s2s = Seq2Seq(Seq2SeqConfig(src_vocab_size=len(src_vocab), tgt_vocab_size=len(tgt_vocab), block_size=8,
                                n_layer=1, n_head=2, n_embd=16), seed=0)
    train, test = qa.make_qa_data(8, 2, seed=0)
    qa_vocab = qa.QAVocab.build(train)
    span_qa = qa.SpanQA(GPT(GPTConfig(vocab_size=len(qa_vocab), block_size=40, n_layer=1, n_head=2, n_embd=16),
                            seed=0), seed=0)
    return Kit(gpt, tok, data["val"], s2s, src_vocab, tgt_vocab,
               sentiment.classifier(tok, gpt, seed=0), span_qa, qa_vocab, test)


PROMPT = "Twinkle, twinkle"


def _ids(kit: Kit) -> list[int]:
    return kit.tok.encode(PROMPT)


def _widget_attention(kit: Kit):
    from lslm.widgets import AttentionExplorer

    return AttentionExplorer(kit.gpt, kit.tok, PROMPT)._attention


def _widget_sampling(kit: Kit):
    from lslm.widgets import SamplingPlayground

    playground = SamplingPlayground(kit.gpt, kit.tok, PROMPT, max_new_tokens=5)
    return playground.probs()


def _steered(kit: Kit):
    vector = torch.ones(kit.gpt.config.n_embd)
    with interpret.steer(kit.gpt, 1, vector, scale=2.0):
        return interpret.mean_loss(kit.gpt, _ids(kit))


# name -> (call, how results compare across devices: "close" for numbers, "runs" where a
# sample's tokens may flip on a near-tie between devices)
ENTRY_POINTS: dict[str, tuple[Callable[[Kit], Any], str]] = {
    "GPT.generate": (lambda k: k.gpt.generate(torch.tensor([_ids(k)]), 6, temperature=0), "runs"),
    "GPT.generate (1-D, top-k)": (lambda k: k.gpt.generate(torch.tensor(_ids(k)), 6, top_k=5), "runs"),
    "GPT.generate (seeded)": (lambda k: k.gpt.generate(torch.tensor([_ids(k)]), 6, top_p=0.9, seed=1), "runs"),
    "generate.sample_perplexity": (lambda k: sample_perplexity(k.gpt, k.tokens[None, :12], 4), "close"),
    "generate.compare_methods": (lambda k: compare_methods(k.gpt, k.tok, PROMPT, {"greedy": {"temperature": 0.0}},
                                                           num_samples=2, length=4), "runs"),
    "generate.time_generation": (lambda k: time_generation(k.gpt, _ids(k), 3, use_cache=True, repeats=1), "runs"),
    "evaluate.evaluate": (lambda k: evaluate(k.gpt, k.tokens, k.tok, batch_size=4, per_position=True), "close"),
    "interpret.residual_stream": (lambda k: interpret.residual_stream(k.gpt, _ids(k)), "close"),
    "interpret.logit_lens": (lambda k: interpret.logit_lens(k.gpt, torch.tensor([_ids(k)])), "close"),
    "interpret.token_losses": (lambda k: interpret.token_losses(k.gpt, _ids(k)), "close"),
    "interpret.attention_maps": (lambda k: interpret.attention_maps(k.gpt, _ids(k)), "close"),
    "interpret.head_ablation_effect": (lambda k: interpret.head_ablation_effect(k.gpt, _ids(k)), "close"),
    "interpret.induction_probe": (lambda k: interpret.induction_probe(k.gpt, n=4, batch=2).head_scores, "close"),
    "interpret.steering_vector": (lambda k: interpret.steering_vector(k.gpt, [_ids(k)], [k.tok.encode("little")], 1),
                                  "close"),
    "interpret.steer": (_steered, "close"),
    "interpret.paired_prompt_probe": (lambda k: interpret.paired_prompt_probe(
        k.gpt, k.tok, [("Twinkle", "Up above")], [" star"]), "close"),
    "widgets.AttentionExplorer": (_widget_attention, "close"),
    "widgets.SamplingPlayground": (_widget_sampling, "close"),
    "sentiment.probs": (lambda k: k.classifier.probs(["little star", "How I wonder"]), "close"),
    "sentiment.word_attention": (lambda k: sentiment.word_attention(k.classifier, "little star"), "close"),
    "sentiment.occlusion": (lambda k: sentiment.occlusion(k.classifier, "little star", "pos"), "close"),
    "qa.predict": (lambda k: qa.predict(k.span_qa, k.qa_examples, k.qa_vocab, 40), "runs"),
    "qa.sentence_attention": (lambda k: qa.sentence_attention(k.span_qa, k.qa_examples[0], k.qa_vocab, 40), "close"),
    "Seq2Seq.greedy_decode / translate_with": (lambda k: translate_with(k.seq2seq, SENTENCES, k.src_vocab,
                                                                        k.tgt_vocab), "runs"),
    "Seq2Seq.beam_search / translate_with": (lambda k: translate_with(k.seq2seq, SENTENCES, k.src_vocab,
                                                                      k.tgt_vocab, beam_size=3), "runs"),
    "Seq2Seq.sequence_logprob": (lambda k: k.seq2seq.sequence_logprob(
        torch.tensor([[4, 5, 2]]), [[4, 5]]), "close"),
}


# Where meta cannot stand in: a seeded generator must live on a real device (compare_methods
# always seeds; its inputs reach the model through generate and sample_perplexity, above).
NOT_ON_META = {"GPT.generate (seeded)", "generate.compare_methods"}


# ----- watching what reaches the model --------------------------------------------------------
def _tensors(value: Any) -> list[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, dict):
        return [t for v in value.values() for t in _tensors(v)]
    if isinstance(value, (tuple, list)):
        return [t for v in value for t in _tensors(v)]
    return []


@contextmanager
def devices_seen(models: list[torch.nn.Module]):
    """The devices of every tensor any module of ``models`` is called with, as (module, device)."""
    seen: list[tuple[str, torch.device]] = []

    def hook(module, args, kwargs):
        for t in _tensors(args) + _tensors(kwargs):
            seen.append((type(module).__name__, t.device))

    handles = [m.register_forward_pre_hook(hook, with_kwargs=True) for model in models for m in model.modules()]
    try:
        yield seen
    finally:
        for h in handles:
            h.remove()


def run_on_meta(kit: Kit, call: Callable[[Kit], Any]) -> list[tuple[str, torch.device]]:
    """Run ``call`` with every model on meta; the devices the models received until it had to
    stop (a meta tensor holds no numbers to print, compare or copy back)."""
    meta = kit.to("meta")
    with devices_seen(meta.models()) as seen:
        try:
            call(meta)
        except LslmError:
            raise  # a real input error: the entry point refused before reaching the model
        except Exception:
            if not seen:  # it failed before the model was reached: that is not meta's doing
                raise
    return seen


# ----- the meta stand-in, on every machine ----------------------------------------------------
@pytest.mark.parametrize("name", [n for n in ENTRY_POINTS if n not in NOT_ON_META])
def test_every_entry_point_hands_the_model_its_inputs_on_the_models_device(kit, name):
    call, _ = ENTRY_POINTS[name]
    seen = run_on_meta(kit, call)
    assert seen, f"{name} never called the model"
    wrong = sorted({(module, str(device)) for module, device in seen if device.type != "meta"})
    assert not wrong, f"{name} handed the model tensors on the wrong device: {wrong}"


def test_the_meta_stand_in_catches_an_input_left_on_the_cpu(kit):
    # An entry point that forgets to move its ids: the hooks see the CPU tensor, though the
    # meta model itself runs on without an error.
    def forgetful(k: Kit):
        return k.gpt(torch.tensor([_ids(k)]))[0].sum().item()

    seen = run_on_meta(kit, forgetful)
    assert ("GPT", torch.device("cpu")) in seen
    # And a helper that moves the batch passes the same check.
    seen = run_on_meta(kit, lambda k: k.gpt(torch.tensor([_ids(k)]).to(model_device(k.gpt)))[0].sum().item())
    assert seen and all(device.type == "meta" for _, device in seen)


def test_the_cpu_kit_runs_every_entry_point(kit):
    # The calls themselves are right: on the CPU each runs to the end, on CPU tensors.
    for name, (call, _) in ENTRY_POINTS.items():
        with devices_seen(kit.models()) as seen:
            call(kit)
        assert seen and all(device.type == "cpu" for _, device in seen), name


# ----- the real accelerators ------------------------------------------------------------------
def _close(a: Any, b: Any) -> bool:
    """Numbers (and the numbers inside tensors, lists and dicts) agree to float32 rounding."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.device.type == "cpu", "a tensor result did not come back to the CPU"
        return a.shape == b.shape and torch.allclose(a.float(), b.float(), rtol=1e-3, atol=1e-4, equal_nan=True)
    if isinstance(a, float):
        return math.isclose(a, b, rel_tol=1e-3, abs_tol=1e-4)
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_close(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_close(x, y) for x, y in zip(a, b))
    return a == b


@pytest.mark.parametrize("device", ACCELERATORS)
@pytest.mark.parametrize("name", list(ENTRY_POINTS))
def test_every_entry_point_runs_with_the_model_on_an_accelerator(kit, device, name):
    call, compare = ENTRY_POINTS[name]
    expected = call(kit)
    moved = kit.to(device)
    with devices_seen(moved.models()) as seen:
        got = call(moved)
    assert seen and all(d.type == device for _, d in seen), sorted({(m, str(d)) for m, d in seen})
    if compare == "close":
        assert _close(got, expected), name


@pytest.mark.parametrize("device", ACCELERATORS)
def test_task_models_and_the_copy_probe_train_on_an_accelerator(kit, device):
    # Training helpers draw their batches on the CPU; fit() moves each to the model.
    moved = kit.to(device)
    losses = sentiment.train_classifier(moved.classifier, [("Twinkle star", "pos"), ("How I wonder", "neg")],
                                        steps=3, batch_size=2)
    assert len(losses) == 3 and all(math.isfinite(x) for x in losses)
    losses, _ = interpret.train_on_repeats(moved.gpt, n=4, steps=3, batch=2)
    assert len(losses) == 3 and all(math.isfinite(x) for x in losses)


# ----- the command line ---------------------------------------------------------------------------
TINY_RUN = ["--n-layer", "1", "--n-head", "2", "--n-embd", "16", "--block-size", "16",
            "--batch-size", "4", "--max-iters", "6", "--eval-interval", "3", "--no-progress", "--device", "cpu"]


@pytest.fixture
def run(tmp_path, capsys):
    corpus = tmp_path / "rhyme.txt"
    corpus.write_text(RHYME, encoding="utf-8")
    out = tmp_path / "run"
    assert main(["train", "--out", str(out), "--corpus", str(corpus), *TINY_RUN]) == 0
    capsys.readouterr()
    return out


def _eval(run, capsys, device: str) -> dict:
    assert main(["eval", "--ckpt", str(run), "--json", "--device", device]) == 0
    return json.loads(capsys.readouterr().out)


def _sample(run, capsys, device: str) -> str:
    assert main(["sample", "--ckpt", str(run), "--prompt", "Twinkle", "--max-new-tokens", "8",
                 "--seed", "1", "--device", device]) == 0
    return capsys.readouterr().out


def _refused(argv: list[str], capsys) -> str:
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    err = capsys.readouterr().err.strip()
    assert exit_.value.code == 2 and len(err.splitlines()) == 1, err
    return err


def test_cli_eval_and_sample_take_a_device(run, capsys):
    on_cpu = _eval(run, capsys, "cpu")
    assert _eval(run, capsys, "auto").keys() == on_cpu.keys()
    text = _sample(run, capsys, "cpu")
    assert text.startswith("Twinkle") and text == _sample(run, capsys, "cpu")
    for command in ("eval", "sample"):
        assert "is not a device" in _refused([command, "--ckpt", str(run), "--device", "banana"], capsys)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA GPU")
def test_cli_refuses_a_gpu_this_machine_lacks(run, capsys):
    for command in ("eval", "sample"):
        err = _refused([command, "--ckpt", str(run), "--device", "cuda"], capsys)
        assert "no CUDA GPU is visible" in err and "use cpu" in err


@pytest.mark.parametrize("device", ACCELERATORS)
def test_cli_eval_and_sample_on_an_accelerator(run, capsys, device):
    on_cpu = _eval(run, capsys, "cpu")
    there = _eval(run, capsys, device)
    assert there["loss"] == pytest.approx(on_cpu["loss"], rel=1e-3)
    text = _sample(run, capsys, device)
    assert text.startswith("Twinkle") and len(text) == len("Twinkle") + 8 + 1  # 8 characters and print's newline


# ----- the helpers themselves ------------------------------------------------------------------
def test_model_device_and_to_device():
    from collections import namedtuple

    assert model_device(torch.nn.Linear(2, 2)) == torch.device("cpu")
    assert model_device(torch.nn.Linear(2, 2, device="meta")) == torch.device("meta")
    assert model_device(torch.nn.BatchNorm1d(2, affine=False).to("meta")) == torch.device("meta")  # buffers only
    assert model_device(torch.nn.ReLU()) == torch.device("cpu")  # holds nothing
    Pair = namedtuple("Pair", "x y")
    batch = {"a": torch.ones(1), "b": (torch.ones(1), [torch.ones(1), 3]), "c": Pair(torch.ones(1), "text")}
    moved = to_device(batch, "meta")
    assert moved["a"].is_meta and moved["b"][0].is_meta and moved["b"][1][0].is_meta and moved["b"][1][1] == 3
    assert isinstance(moved["c"], Pair) and moved["c"].x.is_meta and moved["c"].y == "text"
    assert isinstance(moved["b"], tuple) and isinstance(moved["b"][1], list)


def _on_path(tmp_path, monkeypatch, *names: str) -> None:
    """PATH holds only a folder with these (empty, executable) programs; no $CXX."""
    for name in names:
        program = tmp_path / name
        program.write_text("")
        program.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("CXX", raising=False)


@pytest.mark.skipif(os.name == "nt", reason="builds fake programs the POSIX way")
def test_cpp_compiler_looks_for_msvc_on_windows_and_gcc_or_clang_elsewhere(tmp_path, monkeypatch):
    _on_path(tmp_path, monkeypatch, "g++", "g++.EXE")
    assert devices.cpp_compiler() == str(tmp_path / "g++")
    # On Windows torch's inductor builds with cl (or clang-cl) only: a MinGW g++ on PATH is no use.
    monkeypatch.setattr(sys, "platform", "win32")
    assert devices.cpp_compiler() is None
    with pytest.raises(LslmError) as err:
        devices.check_cpp_compiler()
    message = str(err.value)
    assert "\n" not in message
    for words in ("Visual Studio Build Tools", "x64 Native Tools Command Prompt", "cl.exe", "--no-compile"):
        assert words in message, message


def test_check_cpp_compiler_says_what_to_install_on_linux_and_macos(tmp_path, monkeypatch):
    _on_path(tmp_path, monkeypatch)
    monkeypatch.setattr(sys, "platform", "linux")
    with pytest.raises(LslmError, match="install g\\+\\+ or clang\\+\\+, or train without compiling"):
        devices.check_cpp_compiler()


def test_stop_signals_work_where_there_is_no_sighup(monkeypatch):
    from lslm.loop import stop_signal_numbers, stop_signals

    if not hasattr(signal, "SIGHUP"):
        pytest.skip("this platform has no SIGHUP to take away")
    hup = signal.SIGHUP
    before = signal.getsignal(hup)
    monkeypatch.delattr(signal, "SIGHUP")  # as on Windows
    assert stop_signal_numbers() == (signal.SIGTERM,)
    got = []
    with stop_signals(got.append):
        assert signal.getsignal(hup) is before  # SIGHUP, which "does not exist", is left alone
        os.kill(os.getpid(), signal.SIGTERM)
    assert got == [signal.SIGTERM]
