"""PatchAttention: where a tiny vision-language model looks while it writes each word.

Pick a picture, then what the model writes about it (its caption, or its answer to one of
the picture's questions) and a word of that: the picture is drawn with the attention of
the position that wrote the word laid over it, patch by patch, for one layer and head or
their mean. The title says how much of that position's attention went to the picture at
all (the rest went to the words before it).
"""

from __future__ import annotations

from typing import Any, Sequence

import ipywidgets as widgets
import torch
from matplotlib.figure import Figure

from lslm.errors import LslmError
from lslm.vision import COLOURS, SHAPES, Picture
from lslm.vlm import TinyVLM, answers, captions, word_attention

from .base import PlotWidget, text_kw

MEAN = "mean"
CAPTION = "caption"


def draw_patch_attention(ax: Any, image: torch.Tensor, weights: torch.Tensor | None, title: str = "") -> None:
    """Draw ``image`` (3, H, W uint8) as a spotlight of ``weights`` (grid, grid): the patch
    with the largest weight is shown as it is, the others darker the less weight they got
    (``None``: the plain picture). Grid lines mark the patches; each patch's share is written in it."""
    size = image.size(-1)
    ax.imshow(image.permute(1, 2, 0).numpy(), extent=(0, size, size, 0), interpolation="nearest")
    if weights is not None:
        grid = weights.size(-1)
        top = max(float(weights.max()), 1e-9)
        shade = torch.zeros(grid, grid, 4)
        shade[..., 3] = 0.85 * (1 - weights.float() / top)  # black, more opaque where less attended
        ax.imshow(shade.numpy(), extent=(0, size, size, 0), interpolation="nearest")
        cell = size / grid
        for r in range(grid):
            for c in range(grid):
                ax.text((c + 0.5) * cell, (r + 0.5) * cell, f"{float(weights[r, c]):.0%}", ha="center",
                        va="center", fontsize=7, color="white" if weights[r, c] < 0.6 * top else "black",
                        **text_kw())
        for k in range(1, grid):
            ax.axhline(k * cell, color="grey", lw=0.6)
            ax.axvline(k * cell, color="grey", lw=0.6)
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=10, **text_kw())


class PatchAttention(PlotWidget):
    """Pictures, what the model writes about each, and its attention on the patches.

    The model writes greedily once per picture and question (when the picture is chosen);
    moving the word, layer or head only reads the kept attention. ``weights()`` returns
    the numbers behind the picture for a notebook to check.
    """

    widget_name = "patch-attention"
    figsize = (7.6, 3.9)
    dpi = 90
    layout = None

    def __init__(self, model: TinyVLM, pictures: Sequence[Picture], picture: int = 0) -> None:
        super().__init__()
        if not isinstance(model, TinyVLM):
            raise LslmError(f"PatchAttention needs a lslm.vlm.TinyVLM, got a {type(model).__name__}")
        if not pictures or not all(isinstance(p, Picture) for p in pictures):
            raise LslmError("give PatchAttention a list of pictures, e.g. lslm.vision.pictures(8, split='test')")
        if isinstance(picture, bool) or not isinstance(picture, int) or not 0 <= picture < len(pictures):
            raise LslmError(f"picture must be a number from 0 to {len(pictures) - 1}, got {picture!r}")
        self.model, self.pictures = model, list(pictures)
        self._said: dict[tuple[int, str], str] = {}
        n_layer, n_head = model.gpt.config.n_layer, model.gpt.config.n_head
        self._add_control("picture", widgets.Dropdown(
            options=[(f"{i}: {p.caption}", i) for i, p in enumerate(self.pictures)], value=picture))
        self._add_control("about", widgets.Dropdown(options=[CAPTION], value=CAPTION), "writes")
        self._add_control("word", widgets.Dropdown(options=[("", -1)], value=-1))  # set by _sync_controls
        self._add_control("layer", widgets.Dropdown(
            options=[(str(i), i) for i in range(n_layer)] + [("mean of layers", MEAN)], value=n_layer - 1))
        self._add_control("head", widgets.Dropdown(
            options=[("mean of heads", MEAN)] + [(str(h), h) for h in range(n_head)], value=MEAN))
        self._set_children([self.picture, self.about], [self.word, self.layer, self.head])
        self._syncing = False
        self.redraw()

    # ----- what the model writes -------------------------------------------------------
    def text(self, picture: int, about: str = CAPTION) -> tuple[str, int]:
        """What the model writes about picture ``picture`` (its caption, or ``about`` as a
        question followed by its answer), and where its own words start."""
        key = (picture, about)
        if key not in self._said:
            pic = self.pictures[picture]
            self._said[key] = (captions(self.model, [pic])[0] if about == CAPTION
                               else answers(self.model, [pic], [about])[0])
        said = self._said[key]
        if about == CAPTION:
            return said, 0
        return f"{about} {said}", len(about.replace("?", " ?").split())

    def weights(self, picture: int, about: str, word: int, layer: int | str = MEAN,
                head: int | str = MEAN) -> torch.Tensor:
        """The (grid, grid) attention onto the patches while writing word ``word`` of
        ``text(picture, about)`` (counted from the start of that text)."""
        text, _ = self.text(picture, about)
        w = word_attention(self.model, self.pictures[picture].image, text, word)
        w = w.mean(0) if layer == MEAN else w[layer]
        return w.mean(0) if head == MEAN else w[head]

    def _sync_controls(self) -> None:
        if self._syncing:
            return
        self._syncing = True  # changing the options below fires their observers
        try:
            pic = self.pictures[self.picture.value]
            about = [CAPTION] + [q for q, _ in pic.questions]
            if list(self.about.options) != about:
                keep = self.about.value if self.about.value in about else CAPTION
                self.about.options = about
                self.about.value = keep
            text, first = self.text(self.picture.value, self.about.value)
            words = text.replace("?", " ?").split()
            options = [(f"{k - first + 1}: {w}", k) for k, w in enumerate(words) if k >= first]
            if not options:
                raise LslmError("the model wrote nothing here (it ended at once): pick another picture")
            if [tuple(o) for o in self.word.options] != options:
                named = [k for k in (o[1] for o in options) if words[k] in COLOURS or words[k] in SHAPES]
                keep = self.word.value if self.word.value in [k for _, k in options] else (named or [options[0][1]])[0]
                self.word.options = options
                self.word.value = keep
        finally:
            self._syncing = False

    def _on_control(self, change: dict) -> None:
        if not self._syncing:
            self.redraw()

    # ----- drawing ---------------------------------------------------------------------
    def prepare(self) -> dict[str, Any]:
        picture, about, word = self.picture.value, self.about.value, self.word.value
        layer, head = self.layer.value, self.head.value
        text, first = self.text(picture, about)
        words = text.replace("?", " ?").split()
        w = self.weights(picture, about, word, layer, head)
        return {"picture": picture, "about": about, "word": word, "layer": layer, "head": head,
                "words": words, "first": first, "w": w, "share": float(w.sum())}

    def draw(self, fig: Figure) -> None:
        f = self.frame
        pic = self.pictures[f["picture"]]
        left = fig.add_axes((0.02, 0.04, 0.44, 0.74))
        right = fig.add_axes((0.54, 0.04, 0.44, 0.74))
        draw_patch_attention(left, pic.image, None, "the picture")
        where = ("mean of layers" if f["layer"] == MEAN else f"layer {f['layer']}") + ", " + \
            ("mean of heads" if f["head"] == MEAN else f"head {f['head']}")
        draw_patch_attention(right, pic.image, f["w"],
                             f"writing \u201c{f['words'][f['word']]}\u201d: "
                             f"{f['share']:.0%} of attention on the picture\n({where})")
        said = " ".join(f"[{w}]" if k == f["word"] else w for k, w in enumerate(f["words"]))
        fig.text(0.5, 0.93, said, ha="center", va="center", fontsize=11, **text_kw())

    def describe(self) -> str:
        if not self.frame:
            return "<PatchAttention>"
        f = self.frame
        return (f"<PatchAttention: picture {f['picture']}, writing {f['words'][f['word']]!r} of "
                f"{' '.join(f['words'])!r}, {f['share']:.0%} of attention on the picture>")

