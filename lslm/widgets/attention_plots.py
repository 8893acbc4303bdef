"""How an AttentionExplorer draws its two views, on Figures it keeps between redraws.

The heatmap (with the chosen query's row as bars under it) and the lines view are each
built once; a control change then only rewrites the artists that change (see
``PlotWidget``), which is why the axes here hold fixed ticks and the changing numbers
are Text artists of their own.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from matplotlib.collections import LineCollection, PolyCollection
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from matplotlib.transforms import offset_copy

from lslm.errors import LslmError

from .base import plot_label, text_kw, visible

HIGHLIGHT = "#d62728"
# Heatmap labels: texts up to FULL_LABELS tokens get every token's piece; longer ones get
# every k-th position, at most MAX_LABELS of them, level, and the text itself in chunks.
FULL_LABELS = 24
MAX_LABELS = 16
CHUNK_FONTSIZE = 8
COLOUR_TICKS = (0.0, 0.25, 0.5, 0.75, 1.0)  # fractions of the head's largest weight
BAR_TICKS = (0.0, 0.5, 1.0)  # fractions of the bar chart's top
BAR_TOPS = (0.05, 0.1, 0.2, 0.25, 0.5, 0.75, 1.0)
# Lines view: for each query, its strongest links up to this share of its weight, at most
# this many links (grey); the chosen query's (red) likewise.
GREY_SHARE, GREY_MOST = 0.5, 3
RED_SHARE, RED_MOST = 0.9, 20


def label_stride(t: int) -> int:
    """1 (label every token) up to ``FULL_LABELS`` tokens, else the k for ``MAX_LABELS`` labels."""
    return 1 if t <= FULL_LABELS else math.ceil(t / MAX_LABELS)


def text_chunks(pieces: list[str], stride: int) -> list[tuple[int, str]]:
    """The text in runs of ``stride`` tokens: (first position, the run's pieces, visible)."""
    return [(i, "".join(visible(p) for p in pieces[i : i + stride]))
            for i in range(0, len(pieces), stride)]


def _label_offset(axis: Any) -> float:
    """Points from an axis's spine to its tick labels' near edge (tick length + pad)."""
    major = axis.get_major_ticks()[0]
    return float(major.get_tick_padding() + major.get_pad())


def _fit(text: Any, chunk: str, renderer: Any, room: float) -> float:
    """Set ``text`` to ``chunk``, cut short (with "…") until at most ``room`` pixels wide.

    Returns its width in pixels. Measured, not counted: a CJK character is twice as wide.
    """
    length = len(visible(chunk))
    while True:
        text.set_text(plot_label(chunk, length))
        width = float(text.get_window_extent(renderer).width)
        if width <= room or length <= 2:
            return width
        length -= 1


def _tick_numbers(ax: Any, fig: Figure, ticks: tuple[float, ...], side: str) -> list[Any]:
    """Tick marks at ``ticks`` on ``ax``'s y axis, and a Text for each one's number.

    The axis keeps fixed marks with empty labels (drawn once); the numbers are Text
    artists that an update rewrites (cheap), instead of redrawing the whole axis.
    """
    ax.set_yticks(ticks, [""] * len(ticks))
    offset = _label_offset(ax.yaxis)
    place = offset_copy(ax.get_yaxis_transform(), fig=fig, x=offset if side == "right" else -offset,
                        units="points")
    x, ha = (1, "left") if side == "right" else (0, "right")
    return [ax.text(x, y, " ", transform=place, ha=ha, va="center", fontsize=8, clip_on=False)
            for y in ticks]


def _bar_top(largest: float) -> float:
    """The bar chart's top: the first of 0.05, 0.1, 0.2, 0.25, 0.5, 0.75, 1 above ``largest``."""
    return next((top for top in BAR_TOPS if largest * 1.1 <= top), 1.0)


def strongest_links(
    weights: np.ndarray, share: float, most: int, rows: list[int] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(query, key) index arrays: each row's heaviest keys until they hold ``share`` of it.

    ``weights`` is a (T, T) attention matrix (rows = queries). Per row, at most ``most``
    keys, heaviest first; keys of weight 0 (the masked future) never count.
    """
    if not 0 < share <= 1 or most < 1:
        raise LslmError(f"share must be in (0, 1] and most >= 1, got {share} and {most}")
    picked = np.arange(len(weights)) if rows is None else np.asarray(rows, dtype=int)
    w = weights[picked]
    order = np.argsort(-w, axis=1, kind="stable")[:, :most]
    heavy = np.take_along_axis(w, order, axis=1)
    before = np.cumsum(heavy, axis=1) - heavy  # weight held by the heavier keys of the row
    keep = (before < share * w.sum(axis=1, keepdims=True)) & (heavy > 0)
    row_index = np.broadcast_to(picked[:, None], order.shape)
    return row_index[keep], order[keep]


class AttentionPlots:
    """The heatmap and lines views of one text's attention, drawn and then updated in place.

    ``draw(fig, frame, head)`` builds a view on a fresh Figure and returns its handles
    (with the ``"dynamic"`` artists for blitting); ``update(handles, frame, head)`` shows
    another frame on it. ``frame`` is an AttentionExplorer frame, ``head`` its head's name.
    """

    def __init__(self, pieces: list[str]) -> None:
        t = len(pieces)
        self.pieces = pieces
        self.stride = label_stride(t)
        self.line_stride = 1  # set when the lines view is drawn
        self.future = np.triu(np.ones((t, t), dtype=bool), k=1)  # masked keys: drawn grey

    def draw(self, fig: Figure, frame: dict[str, Any], head: str) -> dict[str, Any]:
        lines = frame["view"] == "lines"
        handles = self._draw_lines(fig) if lines else self._draw_heatmap(fig)
        self.update(handles, frame, head)
        return handles

    def update(self, handles: dict[str, Any], frame: dict[str, Any], head: str) -> None:
        if frame["view"] == "lines":
            self._update_lines(handles, frame, head)
        else:
            self._update_heatmap(handles, frame, head)

    def _label_keys(self, ax: Any, fig: Figure) -> None:
        """Key labels under ``ax``: each token, or (long texts) positions and the text in chunks."""
        t, stride = len(self.pieces), self.stride
        if stride == 1:
            size = float(np.clip(12 - t / 8, 6, 11))
            labels = [plot_label(p, 10) for p in self.pieces]
            # Level when every label is a character or two (a char tokenizer), else sideways.
            rotation = 0 if max(len(label) for label in labels) <= 2 else 90
            ax.set_xticks(range(t), labels, rotation=rotation, fontsize=size, **text_kw())
            return
        ax.set_xticks(range(0, t, stride), [str(i) for i in range(0, t, stride)], fontsize=8)
        ax.set_xticks(range(t), minor=True)
        # Two staggered rows, so a chunk may be as wide as two strides (of an axes about
        # 60% of the figure's width), less a gap.
        room = 2 * stride * 0.6 * fig.get_figwidth() * fig.dpi / t - 4
        renderer = fig.canvas.get_renderer()
        for n, (first, chunk) in enumerate(text_chunks(self.pieces, stride)):
            row = offset_copy(ax.get_xaxis_transform(), fig=fig, y=-17 - 10 * (n % 2),
                              units="points")
            last = min(first + stride, t) - 1
            text = ax.text((first + last) / 2, 0, " ", transform=row, ha="center", va="top",
                           fontsize=CHUNK_FONTSIZE, color="#333", clip_on=False, **text_kw())
            _fit(text, chunk, renderer, room)

    def _draw_heatmap(self, fig: Figure) -> dict[str, Any]:
        from matplotlib import colormaps

        t, stride = len(self.pieces), self.stride
        ax, bar_ax = fig.subplots(2, 1, height_ratios=[3, 1.1])
        # Future keys are masked out by the causal mask: grey, not "weight 0" blue. The
        # colours span 0 to this head's largest weight: the image holds w / largest on a
        # fixed 0..1 scale, so the colour bar stays put and only its numbers change.
        cmap = colormaps["Blues"].with_extremes(bad="#e6e6e6")
        im = ax.imshow(np.ma.masked_where(self.future, np.zeros((t, t))), cmap=cmap, vmin=0.0,
                       vmax=1.0, interpolation="nearest", aspect="auto")
        rect = Rectangle((-0.5, -0.5), t, 1, fill=False, edgecolor=HIGHLIGHT, lw=2)
        ax.add_patch(rect)
        self._label_keys(ax, fig)
        size = float(np.clip(12 - t / 8, 6, 11)) if stride == 1 else 8.0
        if stride == 1:
            ax.set_yticks(range(t), [plot_label(p, 10) for p in self.pieces], fontsize=size,
                          **text_kw())
            ax.set_xlabel("key: the token looked at")
            ax.set_ylabel("query: the token looking")
        else:
            ax.set_yticks(range(0, t, stride), [str(i) for i in range(0, t, stride)], fontsize=size)
            # The text runs down the left side in chunks, level, so it reads as text.
            column = offset_copy(ax.get_yaxis_transform(), fig=fig, x=-26, units="points")
            renderer = fig.canvas.get_renderer()
            widest = 0.0
            for first, chunk in text_chunks(self.pieces, stride):
                last = min(first + stride, t) - 1
                text = ax.text(0, (first + last) / 2, " ", transform=column, ha="right",
                               va="center", fontsize=CHUNK_FONTSIZE, color="#333", clip_on=False,
                               **text_kw())
                width = _fit(text, chunk, renderer, 1.3 * fig.dpi)  # at most 1.3 inches
                widest = max(widest, width * 72 / fig.dpi)
            ax.set_xlabel("key: the token looked at", labelpad=26)  # below the text rows
            ax.set_ylabel("query: the token looking")
            # Left of the text column (the right edge of a y label is its anchor).
            ax.yaxis.set_label_coords(0, 0.5, transform=offset_copy(
                ax.transAxes, fig=fig, x=-30 - widest, units="points"))
        # The query's label again, in red over the axis's own (an opaque box hides that one).
        marker = ax.text(0, 0, " ", transform=offset_copy(
            ax.get_yaxis_transform(), fig=fig, x=-_label_offset(ax.yaxis), units="points"),
            ha="right", va="center", fontsize=size, color=HIGHLIGHT, clip_on=False,
            bbox={"facecolor": "white", "edgecolor": "none", "pad": 0.5}, **text_kw())
        colorbar = fig.colorbar(im, ax=ax, shrink=0.8)
        colorbar.set_label("attention weight", labelpad=24)
        colour_numbers = _tick_numbers(colorbar.ax, fig, COLOUR_TICKS, side="right")

        # One collection of bars (one draw call), on a fixed 0..1 scale like the image.
        bars = PolyCollection([], facecolors=HIGHLIGHT, edgecolors="none")
        bar_ax.add_collection(bars)
        bar_ax.set_xlim(-0.5, t - 0.5)
        bar_ax.set_ylim(0, 1.0)
        self._label_keys(bar_ax, fig)
        bar_ax.set_ylabel("weight", labelpad=24)
        bar_numbers = _tick_numbers(bar_ax, fig, BAR_TICKS, side="left")
        title = ax.set_title(" ", fontsize=10, loc="left")
        ax.set_title("rows sum to 1; grey: the masked future", fontsize=9, loc="right",
                     color="#444")
        bar_title = bar_ax.set_title(" ", fontsize=10, loc="left", **text_kw())
        bar_ax.set_title("where its attention goes", fontsize=9, loc="right", color="#444")
        # What update changes, in drawing order; the rest is drawn once and kept as pixels.
        dynamic = [im, rect, *ax.spines.values(), marker, title, *colour_numbers, bars,
                   *bar_ax.spines.values(), *bar_numbers, bar_title]
        return {"im": im, "rect": rect, "marker": marker, "bars": bars, "title": title,
                "bar_title": bar_title, "colour_numbers": colour_numbers,
                "bar_numbers": bar_numbers, "dynamic": dynamic}

    def _update_heatmap(self, h: dict[str, Any], f: dict[str, Any], head: str) -> None:
        w, q = f["w"], f["query"]
        largest = max(float(w.max()), 1e-6)
        h["im"].set_data(np.ma.masked_where(self.future, w / largest))
        for text, fraction in zip(h["colour_numbers"], COLOUR_TICKS):
            text.set_text(f"{fraction * largest:.2f}")
        h["rect"].set_y(q - 0.5)
        h["marker"].set_y(q)
        h["marker"].set_text(plot_label(self.pieces[q], 10) if self.stride == 1 else str(q))
        h["title"].set_text(f"layer {f['layer']}, {head}")
        row = w[q, : q + 1]
        top = _bar_top(float(row.max()))
        verts = np.zeros((q + 1, 4, 2))
        verts[:, :, 0] = np.arange(q + 1)[:, None] + np.array([-0.4, -0.4, 0.4, 0.4])
        verts[:, 1:3, 1] = row[:, None] / top
        h["bars"].set_verts(verts)
        for text, fraction in zip(h["bar_numbers"], BAR_TICKS):
            text.set_text(f"{fraction * top:g}")
        h["bar_title"].set_text(f"query {q} “{plot_label(self.pieces[q])}”")

    def _draw_lines(self, fig: Figure) -> dict[str, Any]:
        t = len(self.pieces)
        ax = fig.add_subplot()
        size = float(np.clip(12 - t / 8, 8, 10))
        # Rows closer than about a line of text: label every k-th (and always the query).
        row_pt = fig.get_figheight() * 72 * 0.85 / (t + 2)
        self.line_stride = max(1, int(np.ceil(1.1 * size / row_pt)))
        for i, piece in enumerate(self.pieces):
            if i % self.line_stride == 0:
                for x, ha in ((-0.02, "right"), (1.02, "left")):
                    ax.text(x, i, plot_label(piece), ha=ha, va="center", fontsize=size,
                            **text_kw())
        # The query's label again, on top: red on a tinted box (not bold: a CJK fallback
        # font may have no bold face, and matplotlib would warn).
        marker = ax.text(-0.02, 0, " ", ha="right", va="center", fontsize=size, color=HIGHLIGHT,
                         bbox={"facecolor": "#fde2e4", "edgecolor": HIGHLIGHT, "pad": 1.5},
                         **text_kw())
        grey = LineCollection([], capstyle="round")
        red = LineCollection([], capstyle="round")
        ax.add_collection(grey)
        ax.add_collection(red)
        ax.set_xlim(-0.45, 1.45)
        ax.set_ylim(t - 0.5, -0.8)
        # A header row just above the first token, whatever the number of rows.
        header = offset_copy(ax.get_xaxis_transform(), fig=fig, y=2, units="points")
        ax.text(-0.02, 1, "queries", ha="right", va="bottom", fontsize=9, color="#555",
                transform=header)
        ax.text(1.02, 1, "keys", ha="left", va="bottom", fontsize=9, color="#555",
                transform=header)
        ax.axis("off")
        ax.set_title(
            f"line width = attention weight. Grey: each query's strongest links,\n"
            f"up to {GREY_SHARE:.0%} of its weight (≤ {GREY_MOST}); red: the chosen query's, "
            f"up to {RED_SHARE:.0%} (≤ {RED_MOST})", fontsize=9, pad=18)
        # Only this short line changes with the controls (the title above is kept as pixels).
        heading = ax.text(0.5, 1, " ", ha="center", va="bottom", fontsize=10, transform=header)
        return {"marker": marker, "grey": grey, "red": red, "heading": heading,
                "dynamic": [grey, red, marker, heading]}

    def _update_lines(self, h: dict[str, Any], f: dict[str, Any], head: str) -> None:
        w, q = f["w"], f["query"]
        h["marker"].set_y(q)
        h["marker"].set_text(plot_label(self.pieces[q]))
        # Grey: every other query's strongest links; the chosen query's on top in red.
        # Width and opacity both grow with the weight.
        qi, kj = strongest_links(w, GREY_SHARE, GREY_MOST)
        others = qi != q
        qi, kj = qi[others], kj[others]
        weight = w[qi, kj]
        rgba = np.zeros((len(qi), 4))
        rgba[:, :3] = 0.35
        rgba[:, 3] = 0.15 + 0.6 * weight
        h["grey"].set_segments([((0.0, i), (1.0, j)) for i, j in zip(qi, kj)])
        h["grey"].set_color(rgba)
        h["grey"].set_linewidth(0.4 + 3 * weight)
        _, rk = strongest_links(w, RED_SHARE, RED_MOST, rows=[q])
        row = w[q, rk]
        colours = np.tile(np.array([0.84, 0.15, 0.16, 0.0]), (len(rk), 1))
        colours[:, 3] = 0.3 + 0.7 * row / max(float(row.max()), 1e-6)
        h["red"].set_segments([((0.0, q), (1.0, j)) for j in rk])
        h["red"].set_color(colours)
        h["red"].set_linewidth(0.6 + 6 * row)
        h["heading"].set_text(f"layer {f['layer']}, {head}, query {q}")
