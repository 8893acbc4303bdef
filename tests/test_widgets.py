"""The notebook widgets driven from Python (no browser): redraws, error messages, locking."""

from __future__ import annotations

import random
import threading

import pytest
import torch

from lslm.errors import LslmError
from lslm.model import GPT, GPTConfig, count_params, next_token_probs
from lslm.tokenizers import train_tokenizer
from lslm.train import TrainConfig, Trainer
from lslm.widgets import (
    AttentionExplorer,
    ChatWidget,
    ConfigExplorer,
    PlotWidget,
    SamplingPlayground,
    TokenExplorer,
    TrainingDashboard,
    previous_token_score,
)

from .conftest import RHYME, prepare_data_from_text

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
PNG_MAGIC = b"\x89PNG"


@pytest.fixture(scope="module")
def tok():
    return train_tokenizer("char", RHYME)


@pytest.fixture(scope="module")
def model(tok):
    torch.manual_seed(0)
    return GPT(GPTConfig(vocab_size=tok.vocab_size, block_size=32, n_layer=2, n_head=2, n_embd=32))


@pytest.fixture
def attention(model, tok):
    return AttentionExplorer(model, tok, "Up above the world")


def changed_picture(widget: PlotWidget, control: str, value) -> None:
    """Set a control; the picture must be redrawn and differ."""
    before_png, before_count = widget.png, widget.render_count
    getattr(widget, control).value = value
    assert widget.last_error is None, widget.last_error
    assert widget.render_count == before_count + 1
    assert widget.png.startswith(PNG_MAGIC)
    assert widget.png != before_png


def classes(w) -> list[str]:
    return list(w._dom_classes)


# ----- base: CSS classes and the static fallback ----------------------------------------


def test_css_classes_and_descriptions(attention):
    assert {"lslm-widget", "lslm-attention-explorer"} <= set(classes(attention.box))
    assert "lslm-image" in classes(attention.image)
    assert "lslm-message" in classes(attention.message)
    for name in ("layer", "head", "query", "view"):
        control = attention.controls[name]
        assert control is getattr(attention, name)
        assert f"lslm-control-{name}" in classes(control)
        assert control.description
        assert control in _descendants(attention.box), f"{name} is not in the widget's box"


def test_multiword_controls_get_kebab_and_underscore_classes(model, tok):
    w = SamplingPlayground(model, tok, "Twinkle")
    for name, kebab in (("top_k", "top-k"), ("max_new_tokens", "max-new-tokens")):
        assert {f"lslm-control-{kebab}", f"lslm-control-{name}"} <= set(classes(w.controls[name]))
    assert "lslm-control-generate" in classes(w.generate)
    assert "lslm-sampling-playground" in classes(w.box)


def _descendants(widget) -> list:
    found = [widget]
    for child in getattr(widget, "children", ()):
        found += _descendants(child)
    return found


def test_no_pyplot_and_no_output_widgets():
    """The subshell race comes from pyplot + Output capture: the widgets must use neither."""
    import ast
    from pathlib import Path

    import lslm.widgets

    for path in Path(lslm.widgets.__file__).parent.glob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                names = [node.module or ""] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                names = []
            assert not any("pyplot" in n or n.endswith(".Output") for n in names), path.name
            if isinstance(node, ast.Attribute):
                assert node.attr not in ("Output", "pyplot"), f"{path.name}:{node.lineno}"


def test_mimebundle_has_widget_view_and_static_picture(attention):
    import base64

    bundle = attention._repr_mimebundle_()
    assert WIDGET_VIEW in bundle
    assert bundle[WIDGET_VIEW]["model_id"] == attention.box.model_id
    assert base64.b64decode(bundle["image/png"]) == attention.png
    assert "AttentionExplorer" in bundle["text/plain"]


def test_ipython_display_formatter_uses_the_bundle(attention):
    from IPython.core.formatters import DisplayFormatter

    data, _ = DisplayFormatter().format(attention)
    assert WIDGET_VIEW in data and "image/png" in data


def test_html_only_widget_falls_back_to_html():
    w = TokenExplorer(corpus=RHYME, vocab_size=300, text="little star")
    assert w.image is None and w.png == b""
    bundle = w._repr_mimebundle_()
    assert WIDGET_VIEW in bundle and "image/png" not in bundle
    assert "lslm-token" in bundle["text/html"]


# ----- TokenExplorer ----------------------------------------------------------------------


def test_token_explorer_shows_pieces_ids_and_summary():
    text = "Twinkle, twinkle, little star,\nHow I wonder"
    w = TokenExplorer(corpus=RHYME, vocab_size=300, text=text)
    assert w.last_error is None and w.render_count == 1
    pieces, ids = zip(*w.tokens)
    tok = w.current_tokenizer()
    assert tok.kind == "bpe" and tok.vocab_size == 300
    assert list(ids) == tok.encode(text) and tok.decode(ids) == text
    assert len(ids) < len(text)  # subwords: fewer tokens than characters
    page = w.output.value
    assert page.count('class="lslm-token"') == len(ids)
    ratio = len(text) / len(ids)
    assert f"{len(text)} characters → {len(ids)} tokens ({ratio:.2f} chars/token)" in page
    assert "↵" in page and "▁" in page  # newline and spaces made visible


def test_token_explorer_kind_and_vocab_controls():
    w = TokenExplorer(corpus=RHYME, vocab_size=300, text="Twinkle, twinkle, little star")
    bpe_tokens, count = w.tokens, w.render_count
    w.kind.value = "char"
    assert w.render_count == count + 1
    char_tok = w.current_tokenizer()
    assert w.tokens == [(c, char_tok.encode(c)[0]) for c in "Twinkle, twinkle, little star"]
    assert w.vocab_size.disabled  # a char tokenizer has no vocabulary size to choose
    w.kind.value = "unigram"  # this small corpus has room for fewer unigram pieces than bpe
    assert not w.vocab_size.disabled and "largest that works is" in w.last_error
    w.kind.value = "bpe"
    assert w.tokens == bpe_tokens  # cached, same tokenizer
    w.vocab_size.value = 400
    assert w.current_tokenizer().vocab_size == 400 and w.last_error is None


def test_token_explorer_impossible_vocab_size_shows_message():
    w = TokenExplorer(corpus=RHYME, vocab_size=300, text="little star")
    before, count = w.tokens, w.render_count
    w.vocab_size.max = 100_000
    w.vocab_size.value = 100_000
    assert "largest that works" in w.message.value and "lslm-error" in w.message.value
    assert "largest that works" in w.last_error and "--vocab-size" not in w.last_error
    assert w.tokens == before and w.render_count == count  # the last good view stays
    w.vocab_size.value = 300
    assert w.message.value == "" and w.last_error is None


def test_token_explorer_char_tokenizer_cannot_encode_unseen_characters():
    w = TokenExplorer(corpus=RHYME, vocab_size=300)  # the default text has Chinese
    assert w.last_error is None  # bpe spells unseen characters as bytes
    assert any(piece.startswith("<0x") for piece, _ in w.tokens)
    w.kind.value = "char"
    assert "never saw" in w.message.value


def test_token_explorer_with_given_tokenizers(tok):
    w = TokenExplorer({"letters": tok}, text="a star")
    assert list(w.kind.options) == ["letters"] and w.vocab_size.disabled
    assert [i for _, i in w.tokens] == tok.encode("a star")
    with pytest.raises(LslmError, match="not a Tokenizer"):
        TokenExplorer({"x": "nope"})


# ----- AttentionExplorer --------------------------------------------------------------------


def test_attention_weights_are_causal_distributions(attention):
    t = len(attention.ids)
    for layer in range(2):
        heads = [attention.weights(layer, h) for h in range(2)]
        for w in heads:
            assert w.shape == (t, t)
            torch.testing.assert_close(w.sum(dim=-1), torch.ones(t))
            assert torch.all(w.triu(diagonal=1) == 0)
        torch.testing.assert_close(attention.weights(layer, "mean"), torch.stack(heads).mean(0))


def test_attention_weights_match_the_model(model, tok, attention):
    ids = torch.tensor([tok.encode("Up above the world")])
    model.eval()
    with torch.no_grad():
        expected = model.features(ids, return_attention=True)[1][1][0, 1]
    torch.testing.assert_close(attention.weights(1, 1), expected)


def test_attention_controls_redraw(attention):
    assert attention.png.startswith(PNG_MAGIC) and attention.render_count == 1
    changed_picture(attention, "layer", 1)
    changed_picture(attention, "head", "mean")
    changed_picture(attention, "query", 3)
    changed_picture(attention, "view", "lines")
    changed_picture(attention, "query", 10)
    assert "previous-token score" in attention.output.value
    assert attention.frame["layer"] == 1 and attention.frame["query"] == 10


def test_previous_token_score_of_a_previous_token_head():
    t = 6
    synthetic = torch.zeros(t, t)
    synthetic[0, 0] = 1.0
    synthetic[torch.arange(1, t), torch.arange(0, t - 1)] = 1.0  # all weight on the previous token
    assert previous_token_score(synthetic) == 1.0
    uniform = torch.ones(t, t).tril()
    uniform = uniform / uniform.sum(-1, keepdim=True)
    expected = sum(1 / (i + 1) for i in range(1, t)) / (t - 1)  # row i spreads 1 over i+1 keys
    assert previous_token_score(uniform) == pytest.approx(expected)


def test_find_heads_puts_the_previous_token_head_first(attention):
    t = len(attention.ids)
    fake = torch.zeros(t, t)
    fake[0, 0] = 1.0
    fake[torch.arange(1, t), torch.arange(0, t - 1)] = 1.0
    attention._attention[1][0] = fake
    assert attention.previous_token_score(1, 0) == 1.0
    found = attention.find_heads()
    assert found[0] == (1, 0, 1.0) and len(found) == 4
    assert [s for *_, s in found] == sorted((s for *_, s in found), reverse=True)
    first_token = attention.find_heads(lambda w: float(w[:, 0].mean()))
    assert first_token[0][2] == max(float(attention.weights(l, h)[:, 0].mean())
                                    for l in range(2) for h in range(2))


def test_attention_bad_arguments(model, tok, attention):
    with pytest.raises(LslmError, match="layer must be"):
        attention.weights(2, 0)
    with pytest.raises(LslmError, match="head must be"):
        attention.weights(0, 7)
    with pytest.raises(LslmError, match="never saw"):
        AttentionExplorer(model, tok, "Ωmega")
    long = AttentionExplorer(model, tok, RHYME[:50])
    assert len(long.ids) == 32 and "block_size" in long.message.value and long.last_error is None


def test_attention_concurrent_changes_keep_picture_and_state_consistent(model, tok):
    attention = AttentionExplorer(model, tok, "little star")  # short: quick redraws
    t = len(attention.ids)
    choices = {"layer": [0, 1], "head": [0, 1, "mean"], "query": list(range(t)),
               "view": ["heatmap", "lines"]}
    rounds = 5  # 4 threads x 5 rounds = 20 changes
    step = threading.Barrier(4)
    errors: list[BaseException] = []

    def work(name: str, seed: int) -> None:
        # Each thread owns one control and changes it once per round, all threads at once,
        # so redraws started by different threads overlap (as on JupyterLab's subshells).
        rng = random.Random(seed)
        control = getattr(attention, name)
        try:
            for _ in range(rounds):
                step.wait(timeout=60)
                control.value = rng.choice([v for v in choices[name] if v != control.value])
        except BaseException as e:  # noqa: BLE001 - any failure in a thread fails the test
            errors.append(e)

    threads = [threading.Thread(target=work, args=(name, i)) for i, name in enumerate(choices)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=120)
    assert not errors and attention.last_error is None
    assert attention.render_count == 1 + 4 * rounds
    state = {n: getattr(attention, n).value for n in choices}
    assert {n: attention.frame[n] for n in choices} == state  # the picture shows the final state
    shown = attention.png
    assert attention.image.value == shown
    attention.redraw()
    assert attention.png == shown


# ----- ConfigExplorer -----------------------------------------------------------------------


def test_config_explorer_chart_table_and_config():
    w = ConfigExplorer(vocab_size=65, block_size=64)
    assert w.valid and w.png.startswith(PNG_MAGIC)
    cfg = w.config()
    assert cfg == GPTConfig(vocab_size=65, block_size=64)
    assert f"{count_params(cfg):,} parameters" in w.describe()
    table = w.output.value
    assert "(1, 4, 64, 32)" in table  # q, k, v: (B, H, T, C/H)
    assert "(1, 4, 64, 64)" in table  # attention weights: (B, H, T, T)
    assert "(1, 64, 512)" in table  # MLP hidden: (B, T, 4C)
    assert "(1, 64, 65)" in table  # logits: (B, T, V)
    changed_picture(w, "n_layer", 6)
    changed_picture(w, "bias", False)
    assert w.config() == GPTConfig(vocab_size=65, block_size=64, n_layer=6, bias=False)


def test_config_explorer_invalid_combination_keeps_last_picture():
    w = ConfigExplorer()
    w.n_head.value = 4
    png, count, table = w.png, w.render_count, w.output.value
    w.n_embd.value = 30
    assert not w.valid
    assert "divisible" in w.message.value and "divisible" in w.last_error
    assert w.png == png and w.image.value == png and w.render_count == count
    assert w.output.value == table
    with pytest.raises(LslmError, match="divisible"):
        w.config()
    w.n_embd.value = 32
    assert w.valid and w.message.value == "" and w.config().n_embd == 32
    w.vocab_size.value = 0
    assert not w.valid and "vocab_size must be a positive" in w.message.value


# ----- TrainingDashboard --------------------------------------------------------------------


def test_dashboard_updates_while_training_runs(tok):
    _, data = prepare_data_from_text(RHYME)
    tiny = GPT(GPTConfig(vocab_size=tok.vocab_size, block_size=16, n_layer=1, n_head=2, n_embd=16))
    live, lazy = TrainingDashboard(every=0), TrainingDashboard(every=1000)
    seen: list[tuple[int, int, int]] = []
    cfg = TrainConfig(max_iters=30, batch_size=4, eval_interval=10, eval_iters=2,
                      warmup_iters=5, progress=False)
    trainer = Trainer(tiny, tok, data, cfg, callbacks=[
        live.callback, lazy.callback,
        lambda tr, rec: seen.append((rec["step"], live.render_count, lazy.render_count)),
    ])
    trainer.fit()
    live_counts = [c for _, c, _ in seen]
    # every=0: a new picture after every callback, while fit() is still running
    assert live_counts == list(range(live_counts[0], live_counts[0] + len(seen)))
    assert len(seen) == 31 and live.png.startswith(PNG_MAGIC)
    # every=1000: redrawn only after evaluations (steps 0, 10, 20, 30)
    lazy_steps = [step for (step, _, c), (_, _, prev) in zip(seen[1:], seen) if c > prev]
    assert lazy_steps == [10, 20, 30]
    assert live.history["step"] == trainer.history["step"]
    assert live.history["train_loss"] == trainer.history["train_loss"]
    assert live.history["val_loss"] == trainer.history["val_loss"]
    assert live.history is not trainer.history
    assert "step 30/30" in live.output.value and "val loss" in live.output.value


def test_dashboard_update_from_history_and_resume():
    w = TrainingDashboard()
    empty_png = w.png
    history = {
        "step": [1, 2, 3, 4], "train_loss": [4.0, 3.5, 3.2, 3.0], "lr": [1e-4, 2e-4, 3e-4, 3e-4],
        "tokens_per_sec": [900.0, 1000.0, 1100.0, 1000.0],
        "eval_step": [0, 4], "val_loss": [4.2, 3.1], "eval_train_loss": [4.2, 3.0],
    }
    w.update_from_history(history)
    assert w.png != empty_png and w.png.startswith(PNG_MAGIC)
    assert "train loss 3.0000" in w.output.value and "val loss 3.1000 (at step 4)" in w.output.value
    history["step"].append(99)
    assert w.history["step"] == [1, 2, 3, 4]  # its own copy

    class Resumed:  # like Trainer.resume: steps 1-4 in its history already
        config = TrainConfig(max_iters=10, progress=False)

        def __init__(self):
            self.history = {k: list(v[:4]) for k, v in history.items()}

        def step_done(self, record):  # what Trainer.fit does before calling back
            for key in ("step", "train_loss", "lr", "tokens_per_sec"):
                self.history[key].append(record[key])
            w.callback(self, record)

    trainer = Resumed()
    trainer.step_done({"step": 5, "train_loss": 2.9, "lr": 3e-4, "tokens_per_sec": 1000.0})
    assert w.history["step"] == [1, 2, 3, 4, 5]  # the resumed run's earlier steps are kept
    trainer.step_done({"step": 6, "train_loss": 2.8, "lr": 3e-4, "tokens_per_sec": 1000.0,
                       "val_loss": 2.95, "eval_train_loss": 2.8})
    assert w.history["step"] == [1, 2, 3, 4, 5, 6] and w.history["val_loss"] == [4.2, 3.1, 2.95]
    assert "step 6/10" in w.output.value
    with pytest.raises(LslmError, match="every"):
        TrainingDashboard(every=-1)
    with pytest.raises(LslmError, match="different lengths"):
        w.update_from_history({**history, "lr": [1e-4]})


# ----- SamplingPlayground -------------------------------------------------------------------


def test_sampling_probs_follow_the_controls(model, tok):
    w = SamplingPlayground(model, tok, "Twinkle, twinkle, little ")
    ids = torch.tensor([tok.encode("Twinkle, twinkle, little ")])
    model.eval()
    with torch.no_grad():
        logits = model(ids)[0][:, -1]
    torch.testing.assert_close(w.probs(), next_token_probs(logits)[0])
    changed_picture(w, "temperature", 0.5)
    torch.testing.assert_close(w.probs(), next_token_probs(logits, 0.5)[0])
    changed_picture(w, "top_k", 3)
    assert int((w.probs() > 0).sum()) == 3 and w.probs().sum().item() == pytest.approx(1.0)
    assert set(w.probs().nonzero().flatten().tolist()) == set(logits[0].topk(3).indices.tolist())
    changed_picture(w, "top_k", 0)
    changed_picture(w, "top_p", 0.2)
    torch.testing.assert_close(w.probs(), next_token_probs(logits, 0.5, None, 0.2)[0])
    changed_picture(w, "temperature", 0.0)
    assert w.probs().max().item() == 1.0 and int(w.probs().argmax()) == int(logits.argmax())


def test_sampling_generate_button(model, tok):
    w = SamplingPlayground(model, tok, "Twinkle", max_new_tokens=40)
    assert w.generation_count == 1 and len(w.last_text) == 40  # once at start
    first = w.last_text
    w.max_new_tokens.value = 25
    w.generate.click()
    assert w.generation_count == 2 and len(w.last_text) == 25  # char tokenizer: 25 characters
    assert w.last_text == first[:25]  # same seed and settings: the same sample
    w.seed.value = 1
    w.generate.click()
    assert w.last_text != first[:25]
    assert "lslm-generation" in w.output.value and "seed 1" in w.output.value


def test_sampling_bad_prompt_and_long_prompt(model, tok):
    w = SamplingPlayground(model, tok, "Twinkle")
    png, count = w.png, w.render_count
    w.prompt.value = "Ωmega"
    assert "never saw" in w.message.value and "never saw" in w.last_error
    assert w.png == png and w.render_count == count
    assert w.generate_text() is None and "never saw" in w.message.value
    w.prompt.value = ""
    assert "at least one character" in w.message.value
    w.prompt.value = RHYME[:60]
    assert w.last_error is None
    assert "lslm-note" in w.message.value and "block_size" in w.message.value
    assert w.png != png


def test_sampling_sees_a_model_trained_after_it_was_made(tok):
    torch.manual_seed(1)
    fresh = GPT(GPTConfig(vocab_size=tok.vocab_size, block_size=16, n_layer=1, n_head=2, n_embd=16))
    w = SamplingPlayground(fresh, tok, "Twinkle")
    before = w.probs()
    with torch.no_grad():
        fresh.lm_head.weight.mul_(5.0)  # any change of the weights
    w.redraw()
    assert not torch.allclose(w.probs(), before)


# ----- answering at once: kept Figures, blitting, the PNG encoder ----------------------------


def _pixels(png: bytes):
    import io

    import numpy as np
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))


def test_png_holds_the_canvas_pixels():
    import numpy as np

    w = ConfigExplorer()
    fig = w._figures[w.figure_key()][0]
    canvas = np.asarray(fig.canvas.buffer_rgba())[:, :, :3]
    assert np.array_equal(_pixels(w.png), canvas)


def test_kept_figure_is_reused_and_blitting_draws_what_a_full_render_draws(long_explorer):
    import numpy as np

    from lslm.widgets.base import figure_png

    w = long_explorer
    fig = w._figures["heatmap"][0]
    for layer, query in ((1, 63), (0, 5), (1, 40)):  # bars shrink and grow: no stale pixels
        w.layer.value, w.query.value = layer, query
    assert w._figures["heatmap"][0] is fig and w.last_error is None
    shown = _pixels(w.png)

    fig, handles, _ = w._figures["heatmap"]
    for artist in handles["dynamic"]:
        artist.set_animated(False)
    del w._figures["heatmap"]  # this Figure is spent: the widget must not blit on it again
    full = _pixels(figure_png(fig))
    assert shown.shape == full.shape
    differ = np.any(shown != full, axis=-1).mean()
    assert differ < 0.002, f"{differ:.2%} of the pixels differ from a full render"


def test_a_failed_update_drops_the_kept_figure(long_explorer, monkeypatch):
    w = long_explorer
    w.view.value = "heatmap"
    kept = w._figures["heatmap"][0]

    def broken(fig, handles):
        raise RuntimeError("boom")

    monkeypatch.setattr(w, "update", broken)
    with pytest.raises(RuntimeError, match="boom"):
        w.layer.value = 1 - w.layer.value
    assert "heatmap" not in w._figures and "a bug in lslm" in w.message.value
    monkeypatch.undo()
    w.layer.value = 1 - w.layer.value
    assert w.last_error is None and w._figures["heatmap"][0] is not kept


# ----- legible attention: labels for long texts, thinned lines -------------------------------

LONG = RHYME[:64]  # 64 tokens of the char tokenizer


@pytest.fixture(scope="module")
def long_model(tok):
    torch.manual_seed(0)
    return GPT(GPTConfig(vocab_size=tok.vocab_size, block_size=64, n_layer=2, n_head=2, n_embd=32))


@pytest.fixture
def long_explorer(long_model, tok):
    return AttentionExplorer(long_model, tok, LONG)


def _labels(texts) -> list:
    return [t for t in texts if t.get_visible() and t.get_text()]


def test_long_text_heatmap_has_few_level_labels_and_the_text_in_chunks(long_explorer):
    from lslm.widgets.attention_plots import MAX_LABELS
    from lslm.widgets.base import visible

    w = long_explorer
    assert len(w.ids) == 64
    heat, bars = w._figures["heatmap"][0].axes[:2]
    for axis_labels in (heat.get_xticklabels(), heat.get_yticklabels(), bars.get_xticklabels()):
        shown = _labels(axis_labels)
        assert 4 <= len(shown) <= MAX_LABELS
        assert all(t.get_rotation() == 0 and t.get_fontsize() >= 8 for t in shown)
        assert all(t.get_text().isdigit() for t in shown)  # positions
    # The text itself, level, in chunks: read in order they give back the whole text.
    under = sorted((t for t in heat.texts if t.get_verticalalignment() == "top"),
                   key=lambda t: t.get_position()[0])
    beside = sorted((t for t in heat.texts if t.get_horizontalalignment() == "right"
                     and t.get_bbox_patch() is None), key=lambda t: t.get_position()[1])
    for chunks in (under, beside):
        assert len(chunks) <= MAX_LABELS and all(t.get_rotation() == 0 for t in chunks)
        assert "".join(t.get_text() for t in chunks) == visible(LONG)


def test_short_text_heatmap_labels_every_token(attention):
    from lslm.widgets.base import plot_label

    heat = attention._figures["heatmap"][0].axes[0]
    pieces = [plot_label(p, 10) for p in attention.pieces]
    assert [t.get_text() for t in heat.get_xticklabels()] == pieces
    assert [t.get_text() for t in heat.get_yticklabels()] == pieces
    # single characters: written level, not sideways
    assert all(t.get_rotation() == 0 for t in heat.get_xticklabels())


def test_strongest_links_keep_each_rows_heaviest_keys():
    import numpy as np

    from lslm.widgets.attention_plots import strongest_links

    t = 64
    rng = np.random.default_rng(0)
    scores = rng.normal(size=(t, t)) * 3
    scores[np.triu_indices(t, 1)] = -np.inf
    w = np.exp(scores - scores.max(axis=1, keepdims=True))
    w /= w.sum(axis=1, keepdims=True)
    qi, kj = strongest_links(w, 0.5, 3)
    assert len(qi) <= 3 * t < t * (t + 1) // 2
    assert np.all(kj <= qi) and np.all(w[qi, kj] > 0)  # never the masked future
    strongest = np.unravel_index(np.argmax(w), w.shape)
    assert strongest in set(zip(qi.tolist(), kj.tolist()))
    for row in range(t):
        kept = np.sort(w[row, kj[qi == row]])[::-1]
        top = np.sort(w[row])[::-1][: len(kept)]
        np.testing.assert_allclose(kept, top)  # the heaviest ones, none skipped
        assert len(kept) == 3 or kept.sum() >= 0.5 * w[row].sum() - 1e-9
        assert kept[:-1].sum() < 0.5 * w[row].sum() + 1e-9  # no more than needed
    only = strongest_links(w, 1.0, 64, rows=[10])
    assert set(only[0].tolist()) == {10} and len(only[1]) == 11  # all of row 10's keys
    with pytest.raises(LslmError, match="share"):
        strongest_links(w, 0.0, 3)


def test_lines_view_draws_only_the_strongest_links(long_explorer):
    import numpy as np

    w = long_explorer
    w.layer.value, w.query.value = 1, 40
    w.view.value = "lines"
    t = len(w.ids)
    handles = w._figures["lines"][1]
    grey = [(int(s[0][1]), int(s[1][1])) for s in handles["grey"].get_segments()]
    red = [(int(s[0][1]), int(s[1][1])) for s in handles["red"].get_segments()]
    assert 0 < len(grey) < t * (t + 1) // 2 / 4  # far fewer than every causal link
    weights = w.weights(1, 0).numpy()
    others = weights.copy()
    others[40] = 0  # the query's own links are the red ones
    strongest = np.unravel_index(np.argmax(others), others.shape)
    assert tuple(int(i) for i in strongest) in grey
    assert all(q == 40 for q, _ in red) and (40, int(weights[40].argmax())) in red
    assert len(red) < 41
    widths = handles["grey"].get_linewidths()
    heavy = [weights[q, k] for q, k in grey]
    assert widths[int(np.argmax(heavy))] == max(widths)  # width grows with the weight


# ----- fonts: no matplotlib font warnings with a CJK fallback font -----------------------------

CJK = "注意力就是你所需要的。大规模语言模型"


@pytest.fixture
def fresh_font_lookups(monkeypatch):
    """Font lookups as in a new kernel: matplotlib's cache and lslm's fallback names cleared."""
    from matplotlib import font_manager

    from lslm.widgets import base

    manager = font_manager.fontManager
    monkeypatch.setattr(manager, "ttflist",
                        [f for f in manager.ttflist if not f.name.endswith(" (lslm regular)")])
    for cached in (manager._findfont_cached, base._families, base._codepoints):
        cached.cache_clear()
    yield
    monkeypatch.undo()
    for cached in (manager._findfont_cached, base._families, base._codepoints):
        cached.cache_clear()


def test_no_font_warnings_when_drawing_cjk_text(fresh_font_lookups, caplog):
    """With a CJK font whose only face is not "normal" weight (WenQuanYi Zen Hei: 500), every
    lookup used to log "findfont: Failed to find font weight ...", in every notebook."""
    import logging

    from matplotlib.figure import Figure

    from lslm.tasks.sentiment import draw_words
    from lslm.widgets.base import font_families

    caplog.set_level(logging.WARNING, logger="matplotlib.font_manager")
    if len(font_families()) == 1:
        pytest.skip("no CJK font installed (e.g. apt-get install fonts-wqy-zenhei)")
    text = "Twinkle, little star. " + CJK
    cjk_tok = train_tokenizer("char", RHYME + CJK)
    torch.manual_seed(0)
    m = GPT(GPTConfig(vocab_size=cjk_tok.vocab_size, block_size=64, n_layer=1, n_head=2,
                      n_embd=16))
    for shown in (text, text[-12:]):  # thinned labels and full ones
        w = AttentionExplorer(m, cjk_tok, shown)
        for control, value in (("view", "lines"), ("query", 3), ("head", "mean"),
                               ("view", "heatmap"), ("layer", 0)):
            getattr(w, control).value = value
        assert w.last_error is None
    s = SamplingPlayground(m, cjk_tok, CJK + "\n" + CJK, max_new_tokens=5)
    s.temperature.value = 0.5
    TokenExplorer({"chars": cjk_tok}, text=text)
    ConfigExplorer().n_layer.value = 6
    from lslm.widgets import ComputeEstimator

    ComputeEstimator().preset.value = "GPT-2 124M"
    TrainingDashboard().update_from_history({
        "step": [1, 2], "train_loss": [4.0, 3.9], "lr": [1e-4, 2e-4],
        "tokens_per_sec": [900.0, 1000.0], "eval_step": [2], "val_loss": [4.1],
        "eval_train_loss": [3.9]})
    fig = Figure()
    draw_words(fig.add_subplot(), [("not", 0.9), ("bad", 0.4)], "a sentiment helper")
    fig.canvas.draw()
    warned = [r.getMessage() for r in caplog.records if r.name == "matplotlib.font_manager"
              and r.levelno >= logging.WARNING]
    assert not warned, warned[:3]


# ----- ChatWidget ------------------------------------------------------------------------------

CHAT_TEXT = "Tom had a red kite. Anna went to the farm. Where did Tom go? He went to the park. " * 30


@pytest.fixture(scope="module")
def chat_tok():
    from lslm.tokenizers import ChatTokenizer

    return ChatTokenizer(train_tokenizer("bpe", CHAT_TEXT, vocab_size=300))


def _chat_gpt(chat_tok) -> GPT:
    return GPT(GPTConfig(vocab_size=chat_tok.vocab_size, block_size=128, n_layer=2, n_head=2,
                         n_embd=32, position="rope"), seed=0)


@pytest.fixture(scope="module")
def chat_gpt(chat_tok):
    return _chat_gpt(chat_tok)


@pytest.fixture(scope="module")
def taught_gpt(chat_tok):
    """The tiny model taught two answers (a second or so), so it stops at <|end|>."""
    from lslm.finetune import encode_example, finetune

    t = chat_tok.template
    model = _chat_gpt(chat_tok)
    examples = [encode_example(chat_tok.encode, t.prompt(" " + q), t.response(" " + a), 128)
                for q, a in (("Where did Tom go?", "the park"), ("Who went to the farm?", "Anna"))]
    finetune(model, examples, steps=60, batch_size=4, lr=1e-2, amp=False)
    return model


def test_chat_ask_matches_reply(chat_gpt, taught_gpt, chat_tok):
    from lslm.assistant import reply

    w = ChatWidget(chat_gpt, chat_tok, "Where did Tom go?")
    assert {"lslm-widget", "lslm-chat-widget"} <= set(classes(w.box))
    for name in ("instruction", "layer", "head", "send"):
        assert f"lslm-control-{name}" in classes(w.controls[name])
        assert w.controls[name] in _descendants(w.box)
    assert w.answer in _descendants(w.box) and "lslm-answer" in classes(w.answer)
    assert w.last_answer == reply(chat_gpt, chat_tok, "Where did Tom go?")
    for q in ("Who had a red kite?", "Anna went to the farm."):
        assert w.ask(q) == reply(chat_gpt, chat_tok, q)
        assert w.instruction.value == q  # asked from code: the box shows what was asked
    # An untrained model never writes <|end|>: the answer is cut, said as a note, not an error.
    assert w.last_error is None and "cut" in w.message.value and "lslm-note" in w.message.value

    taught = ChatWidget(taught_gpt, chat_tok, "Where did Tom go?")
    assert taught.last_answer == "the park" == reply(taught_gpt, chat_tok, "Where did Tom go?")
    assert "the park" in taught.answer.value and taught.message.value == ""
    result = taught.frame["result"]
    assert result["written"][-1] == chat_tok.special_ids["<|end|>"]  # the end marker's row too


def test_chat_picture_is_the_attention_from_the_answer_to_the_prompt(taught_gpt, chat_tok):
    from lslm.interpret import attention_maps

    w = ChatWidget(taught_gpt, chat_tok, "Who went to the farm?")
    assert w.png.startswith(PNG_MAGIC) and w.image.value == w.png
    result = w.frame["result"]
    prompt, written = result["prompt"], result["written"]
    assert w.frame["w"].shape == (len(written), len(prompt))
    # Row k: the position that wrote answer token k (the one before it), over the prompt.
    maps = attention_maps(taught_gpt, prompt + written[:-1])
    p = len(prompt)
    expected = maps[w.layer.value, 0].mean(dim=0)[p - 1:, :p]
    torch.testing.assert_close(torch.from_numpy(w.frame["w"]), expected)
    changed_picture(w, "layer", 0)
    expected = maps[0, 0, 1, p - 1:, :p]
    changed_picture(w, "head", 1)
    torch.testing.assert_close(torch.from_numpy(w.frame["w"]), expected)
    assert "head 1" in w.describe()


def test_chat_mimebundle_has_a_png_fallback(chat_gpt, chat_tok):
    import base64

    w = ChatWidget(chat_gpt, chat_tok, "Where did Tom go?")
    bundle = w._repr_mimebundle_()
    assert WIDGET_VIEW in bundle and bundle[WIDGET_VIEW]["model_id"] == w.box.model_id
    assert base64.b64decode(bundle["image/png"]) == w.png
    assert "ChatWidget" in bundle["text/plain"]


def test_chat_bad_instructions_show_a_message_and_keep_everything(taught_gpt, chat_tok):
    w = ChatWidget(taught_gpt, chat_tok, "Where did Tom go?")
    png, answer, count = w.png, w.answer.value, w.ask_count
    w.instruction.value = "   "
    w.send.click()
    assert "type an instruction" in w.message.value and "type an instruction" in w.last_error
    assert w.instruction.value == "   "
    assert w.ask("") is None and "type an instruction" in w.message.value
    long = "Tom had a red kite. " * 40
    w.instruction.value = long
    assert w.ask(long) is None
    assert "shorten it" in w.message.value and "128" in w.message.value
    assert w.instruction.value == long  # the text stays, to be shortened
    assert (w.png, w.answer.value, w.ask_count) == (png, answer, count)
    assert not w.send.disabled
    assert w.ask("Where did Tom go?") == "the park" and w.last_error is None
    # An empty default instruction: a message, no exception, no picture yet.
    empty = ChatWidget(taught_gpt, chat_tok, "")
    assert empty.png == b"" and "type an instruction" in empty.message.value


def test_chat_needs_a_chat_tokenizer(chat_gpt, chat_tok):
    with pytest.raises(LslmError, match="ChatTokenizer"):
        ChatWidget(chat_gpt, chat_tok.base)
    with pytest.raises(LslmError, match="max_new_tokens"):
        ChatWidget(chat_gpt, chat_tok, max_new_tokens=0)


def test_chat_send_button_answers_the_text_box(taught_gpt, chat_tok):
    w = ChatWidget(taught_gpt, chat_tok, "Where did Tom go?")
    png, count = w.png, w.ask_count
    w.instruction.value = "Who went to the farm?"
    w.send.click()  # runs the button's click handlers, as a click in the browser does
    assert w.ask_count == count + 1 and w.last_answer == "Anna"
    assert "Anna" in w.answer.value and "the park" not in w.answer.value
    assert w.png != png and w.last_error is None


# ----- PatchAttention (notebook 17) ----------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_vlm():
    from lslm import vision, vlm

    pics = vision.pictures(6, seed=3)
    model, _ = vlm.train_vlm(pics, "both", steps=30, config=vlm.vlm_config(n_embd=32, n_head=2), seed=0)
    return model, pics


def test_patch_attention_shows_the_models_own_words_and_attention(tiny_vlm):
    from lslm import vlm
    from lslm.widgets import PatchAttention

    model, pics = tiny_vlm
    w = PatchAttention(model, pics, picture=2)
    assert w.png.startswith(PNG_MAGIC) and w.image.value == w.png and w.last_error is None
    said = vlm.captions(model, [pics[2]])[0]
    assert [label.split(": ", 1)[1] for label, _ in w.word.options] == said.split()
    assert w.about.options[0] == "caption" and list(w.about.options[1:]) == [q for q, _ in pics[2].questions]
    # the picture is the attention of the chosen word, layer and head
    w.word.value = w.word.options[-1][1]
    w.layer.value, w.head.value = 0, 1
    expected = vlm.word_attention(model, pics[2].image, said, w.word.value)[0, 1]
    torch.testing.assert_close(w.frame["w"], expected)
    assert w.frame["share"] == pytest.approx(float(expected.sum()))
    # a question: its words are the question's, the choices only the answer's
    question = pics[2].questions[0][0]
    w.about.value = question
    answer = vlm.answers(model, [pics[2]], [question])[0]
    assert [label.split(": ", 1)[1] for label, _ in w.word.options] == answer.split()
    assert w.frame["words"] == (question.replace("?", " ?") + " " + answer).split()
    before = w.render_count
    w.picture.value = 4  # a new picture: the choices follow it
    assert w.render_count > before and w.last_error is None
    assert "image/png" in w._repr_mimebundle_()


def test_patch_attention_bad_arguments(tiny_vlm):
    from lslm.widgets import PatchAttention

    model, pics = tiny_vlm
    for args, words in (((model, []), "list of pictures"), ((model, pics, 9), "picture must be"),
                        ((object(), pics), "TinyVLM")):
        with pytest.raises(LslmError, match=words) as e:
            PatchAttention(*args)
        assert "\n" not in str(e.value)
