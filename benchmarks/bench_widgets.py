"""How long each notebook widget takes to answer a control change (issue 15: at most 150 ms).

    python benchmarks/bench_widgets.py                       # every widget, 20 changes per control
    python benchmarks/bench_widgets.py --changes 40 --json widgets.json
    python benchmarks/bench_widgets.py --record benchmarks/RESULTS.md
    PYTHONPATH=/tmp/old python benchmarks/bench_widgets.py --modules lslm.widgets,oldwidgets

Each widget is built as the notebooks build it, on a 64-token text (the attention explorer,
the sampling playground's prompt, the token explorer's text), with notebook 04's GPT
(``lslm.pretrained.char_lm()``: trained once and cached, offline, on the built-in corpus;
``--untrained`` uses the same shape with random weights instead). Then each control is set
to a new value ``--changes`` times and each change is timed, from setting ``value`` until the
widget's new picture (PNG bytes) and HTML are in place, as a notebook callback runs it.
Every value a control takes is visited once before timing, so what is timed is a redraw, not
a first-time cost; two of those have rows of their own, not held to the target: the token
explorer training a tokenizer for a new vocabulary size, and the attention explorer's first
switch to its lines view (which draws that view's picture from scratch). The training
dashboard has no controls: its row times one training-loop callback that redraws a
1,200-step history.

``--modules a,b`` times widget packages side by side (e.g. the code before a change, copied
into a package on ``PYTHONPATH``): their changes take turns, so a busy spell of the machine
hits both alike. Results print as a Markdown table; ``--record FILE`` appends them with the
date, the command and the machine.
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import json
import shlex
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from lslm.errors import LslmError

TARGET_MS = 150.0
TOKENS = 64
# Built-in-corpus-like text, long enough for 64 tokens of any lslm tokenizer.
TEXT = (
    "The list is sorted in place, and the sorted list is returned to the caller. "
    "A dictionary maps keys to values; iterating over it yields its keys in insertion order. "
) * 4


@dataclass
class Case:
    """One control of one widget: how to build the widget, and the values to cycle through."""

    widget: str
    control: str
    values: list[Any]
    build: Callable[[Any], Any]  # widgets module -> a widget
    # sets the value on the widget; default: widget.<control>.value = v
    apply: Callable[[Any, Any], None] | None = None
    first_time: bool = False  # time each value's first visit (no warm-up)
    label: str | None = None  # the row's name, when not the control's

    @property
    def name(self) -> str:
        return self.label or self.control


def text_of(tokenizer: Any, n: int, text: str = TEXT) -> str:
    """The first ``n`` tokens of ``text`` as text (exactly ``n`` for lslm's tokenizers)."""
    ids = tokenizer.encode(text)
    if len(ids) < n:
        raise LslmError(f"the benchmark text encodes to only {len(ids)} tokens, fewer than {n}")
    return tokenizer.decode(ids[:n])


def load_model(untrained: bool) -> tuple[Any, Any]:
    """Notebook 04's GPT and its char tokenizer (trained once and cached by lslm.pretrained)."""
    if not untrained:
        from lslm.pretrained import char_lm

        return char_lm()
    from lslm.model import GPT, GPTConfig
    from lslm.pipeline import prepare_data

    tok = prepare_data("python-docs", tokenizer="char").tokenizer
    config = GPTConfig(vocab_size=tok.vocab_size, block_size=64, n_layer=4, n_head=4,
                       n_embd=128, bias=False)
    return GPT(config, seed=0).eval(), tok


class _FakeTrainer:
    """What ``TrainingDashboard.callback`` reads from a Trainer: its history and max_iters."""

    def __init__(self, steps: int) -> None:
        from lslm.train import TrainConfig

        self.config = TrainConfig(max_iters=10 * steps, progress=False)
        self.history: dict[str, list] = {
            "step": list(range(1, steps + 1)),
            "train_loss": [4.0 * 0.999**s for s in range(steps)],
            "lr": [1e-3] * steps, "tokens_per_sec": [15_000.0 + s % 7 for s in range(steps)],
            "eval_step": list(range(0, steps + 1, 100)),
            "val_loss": [4.0 * 0.999**s for s in range(0, steps + 1, 100)],
            "eval_train_loss": [4.0 * 0.999**s for s in range(0, steps + 1, 100)],
        }


def _training_step(dash: Any, step: int) -> None:
    trainer = dash._bench_trainer
    record = {"step": len(trainer.history["step"]) + 1, "train_loss": 2.0 + 0.001 * (step % 9),
              "lr": 1e-3, "tokens_per_sec": 15_000.0}
    for key in ("step", "train_loss", "lr", "tokens_per_sec"):
        trainer.history[key].append(record[key])
    dash.callback(trainer, record)


def _dashboard(w: Any, history_steps: int) -> Any:
    dash = w.TrainingDashboard(every=0)
    dash._bench_trainer = _FakeTrainer(history_steps)
    _training_step(dash, 0)  # the first callback copies the whole history
    return dash


def cases(model: Any, tok: Any, n_tokens: int = TOKENS, corpus: str | None = None,
          history_steps: int = 1200, text: str = TEXT,
          vocab_sizes: tuple[int, ...] = (400, 500, 600, 700, 800)) -> list[Case]:
    """Every control of every widget in lslm.widgets, with the values it cycles through.

    ``vocab_sizes``: the token explorer's, the first two for redraws (the second is where
    it starts), the rest each trained once, timed in their own row.
    """
    text = text_of(tok, n_tokens, text)
    cfg = model.config
    layers, heads = list(range(cfg.n_layer)), [*range(cfg.n_head), "mean"]
    queries = list(range(n_tokens - 1, -1, -max(1, n_tokens // 12)))
    token_text = text

    def attention(view: str) -> Callable[[Any], Any]:
        def build(w: Any) -> Any:
            widget = w.AttentionExplorer(model, tok, text)
            widget.view.value = view
            return widget
        return build

    def sampling(w: Any) -> Any:
        return w.SamplingPlayground(model, tok, prompt=text)

    def tokens(w: Any) -> Any:
        return w.TokenExplorer(text=token_text, corpus=corpus, vocab_size=vocab_sizes[1])

    def config(w: Any) -> Any:
        return w.ConfigExplorer(vocab_size=tok.vocab_size, block_size=cfg.block_size)

    def compute(w: Any) -> Any:
        return w.ComputeEstimator("GPT-2 124M")

    # The chat box needs a chat tokenizer and as many more embedding rows as it has markers.
    from lslm.finetune import add_token_rows
    from lslm.tokenizers import ChatTokenizer

    chat_tok = ChatTokenizer(tok)
    chat_net = add_token_rows(model, len(chat_tok.special_ids))

    def chat(w: Any) -> Any:
        return w.ChatWidget(chat_net, chat_tok, instruction="hi", max_new_tokens=8)

    # Notebook 17's widget reads a tiny vision-language model (untrained: the timing is the same).
    from lslm import vision, vlm

    pictures = vision.pictures(4, seed=0)
    picture_model = vlm.TinyVLM(vlm.vlm_config(n_embd=32, n_head=2), seed=0).eval()

    def patches(w: Any) -> Any:
        return w.PatchAttention(picture_model, pictures)

    def pick(control: str) -> Callable[[Any, int], None]:
        def apply(widget: Any, i: int) -> None:  # the choices depend on the picture: take the i-th
            options = getattr(widget, control).options
            option = options[i % len(options)]
            getattr(widget, control).value = option[1] if isinstance(option, tuple) else option
        return apply

    presets = ["GPT-3 175B", "classroom CPU", "GPT-2 124M"]
    out = [
        Case("AttentionExplorer (heatmap)", "layer", layers, attention("heatmap")),
        Case("AttentionExplorer (heatmap)", "head", heads, attention("heatmap")),
        Case("AttentionExplorer (heatmap)", "query", queries, attention("heatmap")),
        Case("AttentionExplorer (lines)", "layer", layers, attention("lines")),
        Case("AttentionExplorer (lines)", "head", heads, attention("lines")),
        Case("AttentionExplorer (lines)", "query", queries, attention("lines")),
        Case("AttentionExplorer", "view", ["lines", "heatmap"], attention("heatmap")),
        Case("AttentionExplorer", "view", ["lines"], attention("heatmap"), first_time=True,
             label="view (first switch to lines: builds its picture)"),
        Case("SamplingPlayground", "temperature", [0.7, 1.0, 1.3, 0.0], sampling),
        Case("SamplingPlayground", "top_k", [5, 0, 20, 10], sampling),
        Case("SamplingPlayground", "top_p", [0.9, 0.5, 1.0], sampling),
        Case("SamplingPlayground", "prompt", [text[:-1], text], sampling),  # typing
        Case("TokenExplorer", "text", [token_text[:-1], token_text], tokens),
        Case("TokenExplorer", "kind", ["unigram", "char", "bpe"], tokens),
        Case("TokenExplorer", "vocab_size", list(vocab_sizes[:2]), tokens),
        Case("TokenExplorer", "vocab_size", list(vocab_sizes[2:]), tokens, first_time=True,
             label="vocab_size (first time: trains)"),
        Case("ConfigExplorer", "n_layer", [6, 4, 12], config),
        Case("ConfigExplorer", "n_head", [2, 8, 4], config),
        Case("ConfigExplorer", "n_embd", [256, 128, 512], config),
        Case("ConfigExplorer", "block_size", [128, 64, 256], config),
        Case("ConfigExplorer", "vocab_size", [tok.vocab_size + 1, tok.vocab_size], config),
        Case("ConfigExplorer", "bias", [False, True], config),
        Case("ComputeEstimator", "preset", presets, compute),
        Case("ComputeEstimator", "params", [1e9, 3e8, 7e10], compute),
        Case("ComputeEstimator", "tokens", [1e10, 3e11, 1e12], compute),
        Case("ComputeEstimator", "accelerator", ["A100", "H100", "V100"], compute),
        Case("ComputeEstimator", "n_devices", [8, 64, 1024], compute),
        Case("ComputeEstimator", "mfu", [0.3, 0.5, 0.4], compute),
        Case("ComputeEstimator", "micro_batch", [4, 16, 1], compute),
        Case("ComputeEstimator", "recompute", ["full", "none", "selective"], compute),
        Case("ChatWidget", "layer", layers, chat),
        Case("ChatWidget", "head", heads, chat),
        Case("ChatWidget", "send", ["hi", "ho"], chat, apply=lambda widget, text: widget.ask(text),
             label="send (answers and draws)"),
        Case("PatchAttention", "picture", [1, 2, 0], patches),
        Case("PatchAttention", "about", [1, 2, 0], patches, apply=pick("about"),
             label="about (a question: the model answers it)"),
        Case("PatchAttention", "word", [1, 2, 0], patches, apply=pick("word")),
        Case("PatchAttention", "layer", [0, 1, "mean"], patches),
        Case("PatchAttention", "head", ["mean", 0, 1], patches),
        Case("TrainingDashboard", "callback", list(range(1, 4)),
             lambda w: _dashboard(w, history_steps), apply=_training_step,
             label=f"training step ({history_steps:,}-step history)"),
    ]
    return out


def _set(case: Case, widget: Any, value: Any) -> None:
    if case.apply is not None:
        case.apply(widget, value)
    else:
        getattr(widget, case.control).value = value


def _next_value(case: Case, widget: Any, i: int) -> Any:
    """The i-th value to set: cycles, skipping the one the control has now (a real change)."""
    values = case.values
    value = values[i % len(values)]
    control = getattr(widget, case.control, None) if case.apply is None else None
    if control is not None and control.value == value:
        value = values[(i + 1) % len(values)]
    return value


def _check(widget: Any, case: Case) -> None:
    error = getattr(widget, "last_error", None)
    if error:
        raise LslmError(f"{case.widget}.{case.name}: the widget shows an error: {error}")


def time_case(case: Case, modules: dict[str, Any], changes: int) -> dict[str, list[float]]:
    """Seconds per change, per module name; the modules' changes take turns."""
    built = {name: case.build(m) for name, m in modules.items()}
    times: dict[str, list[float]] = {name: [] for name in modules}
    if case.first_time:
        for value in case.values:
            for name, widget in built.items():
                start = time.perf_counter()
                _set(case, widget, value)
                times[name].append(time.perf_counter() - start)
                _check(widget, case)
        return times
    for widget in built.values():  # warm-up: every value once (tokenizers trained, caches filled)
        for i in range(len(case.values) + 1):
            _set(case, widget, _next_value(case, widget, i))
            _check(widget, case)
    for i in range(changes):
        for name, widget in built.items():
            value = _next_value(case, widget, i)
            start = time.perf_counter()
            _set(case, widget, value)
            times[name].append(time.perf_counter() - start)
            _check(widget, case)
    return times


def run(model: Any, tok: Any, modules: list[str], changes: int = 20,
        only: Callable[[Case], bool] | None = None, **setup: Any) -> list[dict[str, Any]]:
    """Time every case; one row per (case, module) with the median and max in milliseconds.

    ``setup``: keyword arguments for ``cases`` (a smaller text or corpus, for a quick run).
    """
    if len(set(modules)) != len(modules):
        raise LslmError(f"each widget package once, please: got {modules}")
    loaded = {name: importlib.import_module(name) for name in modules}
    rows = []
    for case in cases(model, tok, **setup):
        if only is not None and not only(case):
            continue
        for name, secs in time_case(case, loaded, changes).items():
            ms = [1000 * s for s in secs]
            rows.append({"widget": case.widget, "control": case.name, "module": name,
                         "changes": len(ms), "median_ms": statistics.median(ms), "max_ms": max(ms),
                         "first_visit": case.first_time})
        print(f"  {case.widget}.{case.name}: "
              + ", ".join(f"{r['module']} {r['median_ms']:.0f} ms" for r in rows[-len(loaded):]),
              file=sys.stderr)
    return rows


def _ms(value: float) -> str:
    return f"{value:.1f}" if value < 10 else f"{value:.0f}"


def table(rows: list[dict[str, Any]], modules: list[str]) -> str:
    """Markdown: one line per control, the modules' medians and maxima side by side."""
    head = "| widget | control | " + " | ".join(f"{m} median ms | {m} max ms" for m in modules)
    lines = [head + " | target (median ≤ 150 ms) |",
             "| --- | --- | " + " | ".join("--- | ---" for _ in modules) + " | --- |"]
    keys = list(dict.fromkeys((r["widget"], r["control"]) for r in rows))
    for widget, control in keys:
        mine = {r["module"]: r for r in rows if (r["widget"], r["control"]) == (widget, control)}
        cells = " | ".join(f"{_ms(mine[m]['median_ms'])} | {_ms(mine[m]['max_ms'])}"
                           for m in modules)
        last = mine[modules[0]]
        verdict = ("met" if last["median_ms"] <= TARGET_MS else "NOT met") if not last["first_visit"] \
            else "first visit: not held to it"
        lines.append(f"| {widget} | {control} | {cells} | {verdict} ({modules[0]}) |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--changes", type=int, default=20, help="timed changes per control")
    parser.add_argument("--modules", default="lslm.widgets",
                        help="comma-separated widget packages to time side by side")
    parser.add_argument("--untrained", action="store_true",
                        help="notebook 04's GPT shape with random weights (no training, no cache)")
    parser.add_argument("--only", help="time only widgets whose name contains this text")
    parser.add_argument("--json", type=Path, help="also write the raw figures here")
    parser.add_argument("--record", type=Path, help="append the Markdown results to this file")
    args = parser.parse_args()
    if args.changes < 1:
        parser.error("--changes must be at least 1")
    modules = args.modules.split(",")
    if len(set(modules)) != len(modules):
        parser.error("--modules: name each package once")
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from machine import machine

    torch.manual_seed(0)
    model, tok = load_model(args.untrained)
    only = (lambda c: args.only in c.widget) if args.only else None
    rows = run(model, tok, modules, args.changes, only=only)
    slow = [r for r in rows if r["module"] == modules[0] and not r["first_visit"]
            and r["median_ms"] > TARGET_MS]
    command = "python " + " ".join(shlex.quote(a) for a in ["benchmarks/bench_widgets.py",
                                                            *sys.argv[1:]])
    model_text = "random weights" if args.untrained else "trained (lslm.pretrained.char_lm)"
    text = "\n".join([
        f"### {datetime.date.today()}: widget redraw times, {TOKENS} tokens, "
        f"{args.changes} changes per control", "",
        f"Command: `{command}`", "", f"Machine: {machine()}", "",
        f"Model: notebook 04's GPT ({model.config.n_layer} layers, {model.config.n_head} heads, "
        f"{model.config.n_embd} wide), {model_text}.", "",
        table(rows, modules), "",
        f"Target (median ≤ {TARGET_MS:.0f} ms for every redraw of {modules[0]}): "
        + ("met." if not slow else "NOT met: " + ", ".join(
            f"{r['widget']}.{r['control']} {r['median_ms']:.0f} ms" for r in slow) + "."), "",
    ])
    print(text)
    if args.record:
        with args.record.open("a") as f:
            f.write("\n" + text)
    if args.json:
        args.json.write_text(json.dumps({"machine": machine(), "command": command,
                                         "tokens": TOKENS, "changes": args.changes,
                                         "rows": rows}, indent=2))
    return 1 if slow else 0


if __name__ == "__main__":
    sys.exit(main())
