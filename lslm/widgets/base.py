"""The shared base of the lslm widgets: controls, a message line, and a PNG picture.

Why PNG bytes in an ``ipywidgets.Image`` and not ``Output`` + pyplot: JupyterLab 4.6
handles widget messages on kernel subshells (``commsOverSubshells``), so two callbacks
can run at once on different threads. Output capture of inline plots then races (plots
land under the wrong widget, or vanish). Here each widget draws on its own
``matplotlib.figure.Figure`` on the Agg canvas, renders it to bytes and assigns them to
the Image, all under a lock the widget holds. No pyplot, no shared figure state. To
answer a control at once, a widget may keep its Figure and change only what moved
(``PlotWidget.figure_key`` and ``update``).

A widget is displayed with ``IPython.display.display(widget)`` (or by ending a cell
with it). Its ``_repr_mimebundle_`` holds the live widget view and, for front ends with
no kernel (a notebook saved as HTML, a code host), the latest picture as ``image/png``.
"""

from __future__ import annotations

import base64
import dataclasses
import functools
import html
import re
import struct
import threading
import zlib
from collections.abc import Hashable
from typing import Any, ClassVar

import ipywidgets as widgets
import numpy as np
from matplotlib import font_manager
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from lslm.errors import LslmError

# Matplotlib is not promised to be thread-safe, and two widgets may redraw at once on
# two subshell threads: one process-wide lock around building and rendering figures.
# It is always taken after a widget's own lock, never before, so the two cannot deadlock.
_MPL_LOCK = threading.RLock()

# Soft background colours for token pieces (cycled, so neighbours always differ).
PALETTE = (
    "#fde2e4", "#dfe7fd", "#e2f0cb", "#fff1c1", "#e8dff5", "#cdeffd", "#fce1c8", "#d7f2e3",
)

# Fonts with CJK glyphs that matplotlib may find on a learner's machine. DejaVu Sans
# (matplotlib's own) has none, so without a fallback "注" would draw as an empty box.
_FALLBACK_FONTS = (
    "Noto Sans CJK SC", "Noto Sans CJK JP", "Noto Sans CJK TC", "Source Han Sans SC",
    "WenQuanYi Zen Hei", "WenQuanYi Micro Hei", "Microsoft YaHei", "SimHei",
    "PingFang SC", "Hiragino Sans GB", "Arial Unicode MS",
)

_CONTROL_CHARS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def kebab(name: str) -> str:
    """``"vocab_size"`` -> ``"vocab-size"``, ``"AttentionExplorer"`` -> ``"attention-explorer"``."""
    name = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "-", name)
    return name.replace("_", "-").lower()


def visible(piece: str) -> str:
    """A token piece with invisible characters shown: ``▁`` space, ``↵`` newline, ``⇥`` tab."""
    piece = piece.replace(" ", "▁").replace("\n", "↵").replace("\t", "⇥").replace("\r", "␍")
    return _CONTROL_CHARS.sub(lambda m: f"\\x{ord(m[0]):02x}", piece)


_REGULAR = 400  # the weight matplotlib asks every family of a fallback list for, for normal text
_ALIAS = "{} (lslm regular)"


def font_families() -> tuple[str, ...]:
    """DejaVu Sans first, then any installed font that can draw CJK text (under a name with a
    regular face: see ``_regular_name``)."""
    return _families(font_manager.fontManager)


def _weight(face: font_manager.FontEntry) -> float:
    weight = face.weight
    if isinstance(weight, (int, float)):
        return float(weight)
    return float(font_manager.weight_dict.get(str(weight), _REGULAR))


@functools.lru_cache(maxsize=2)
def _families(manager: font_manager.FontManager) -> tuple[str, ...]:
    found = ["DejaVu Sans"]
    for family in _FALLBACK_FONTS:
        if (name := _regular_name(manager, family)) is not None:
            found.append(name)
    return tuple(found)


def _regular_name(manager: font_manager.FontManager, family: str) -> str | None:
    """A name under which ``family`` has a regular (400) face in ``manager``; None if not installed.

    Matplotlib asks every family of a fallback list for the same weight and logs "findfont:
    Failed to find font weight normal for WenQuanYi Zen Hei, now using 500" when one has no
    face of that weight (WenQuanYi Zen Hei's only face says 500). Such a family gets an
    alias: its own font file, registered as weight 400 under a private name. The glyphs
    drawn are the same; only the lookup stops complaining.
    """
    faces = [f for f in manager.ttflist if f.name == family]
    if not faces:
        return None
    upright = [f for f in faces if f.style == "normal"] or faces
    if any(_weight(f) == _REGULAR for f in upright):
        return family
    alias = _ALIAS.format(family)
    if not any(f.name == alias for f in manager.ttflist):
        face = min(upright, key=lambda f: abs(_weight(f) - _REGULAR))
        manager.ttflist.append(dataclasses.replace(face, name=alias, weight=_REGULAR))
    return alias


@functools.lru_cache(maxsize=2)
def _codepoints(families: tuple[str, ...]) -> frozenset[int]:
    from matplotlib.ft2font import FT2Font

    points: set[int] = set()
    for family in families:
        try:
            path = font_manager.findfont(
                font_manager.FontProperties(family=family), fallback_to_default=False
            )
            points.update(FT2Font(path).get_charmap())
        except (ValueError, OSError, RuntimeError):  # a broken font file: just skip it
            continue
    return frozenset(points)


def _drawable_codepoints() -> frozenset[int]:
    return _codepoints(font_families())


def plot_label(piece: str, max_len: int = 14) -> str:
    """A token piece as a matplotlib label: visible whitespace, no missing-glyph boxes, short.

    Characters no installed font can draw are spelled ``U+6CE8``, which also keeps
    matplotlib from printing a "Glyph missing" warning for every redraw.
    """
    drawable = _drawable_codepoints()
    text = "".join(
        c if ord(c) in drawable or not drawable else f"U+{ord(c):04X}" for c in visible(piece)
    )
    return text if len(text) <= max_len else text[: max_len - 1] + "…"


def text_kw() -> dict[str, Any]:
    """Matplotlib text properties for user text (token pieces, prompts).

    Font fallback for CJK, and no mathtext, so a "$" in a token cannot break the drawing.
    Normal weight only: a fallback font may have no bold face (matplotlib then logs a
    warning), so emphasise user text with colour, not ``fontweight``.
    """
    return {"fontfamily": list(font_families()), "parse_math": False}


def error_html(message: str) -> str:
    return (
        '<div class="lslm-error" style="color:#b00020;font-weight:500">⚠ '
        f"{html.escape(message, quote=False)}</div>"
    )


def note_html(message: str) -> str:
    text = html.escape(message, quote=False)
    return f'<div class="lslm-note" style="color:#555">ℹ {text}</div>'


def figure_png(fig: Figure, dpi: float | None = None) -> bytes:
    """Render a Figure on its Agg canvas to PNG bytes.

    One draw (``savefig`` draws twice when the figure has a layout engine), then a quick
    PNG encoding of the pixels (``_encode``).
    """
    canvas = fig.canvas if isinstance(fig.canvas, FigureCanvasAgg) else FigureCanvasAgg(fig)
    if dpi is not None and fig.dpi != dpi:
        fig.set_dpi(dpi)
    canvas.draw()
    return _encode(canvas)


def _encode(canvas: FigureCanvasAgg) -> bytes:
    """The canvas's pixels as PNG: RGB (the figures are opaque), no row filters, zlib level 3.

    Written by hand because PIL's encoder spends most of its time choosing row filters,
    which gain nothing on flat-coloured plots: this takes about half as long, for files
    of about the same size.
    """
    rgba = np.asarray(canvas.buffer_rgba())
    height, width = rgba.shape[:2]
    rows = np.empty((height, 1 + 3 * width), dtype=np.uint8)
    rows[:, 0] = 0  # filter type 0 (none) before each row
    rows[:, 1:].reshape(height, width, 3)[:] = rgba[:, :, :3]
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    return b"\x89PNG\r\n\x1a\n" + b"".join(
        _png_chunk(kind, data)
        for kind, data in ((b"IHDR", header), (b"IDAT", zlib.compress(rows.tobytes(), 3)),
                           (b"IEND", b""))
    )


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _freeze_layout(fig: Figure) -> None:
    """Keep the margins and axis-label places of a Figure's first render for the next ones.

    Placing them again costs more than drawing: the layout engine, and each axis label
    measuring every tick label of its axis and of the axes beside it.
    """
    fig.set_layout_engine("none")
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            label = axis.label
            axis.set_label_coords(*label.get_position(), transform=label.get_transform())


def _render_figure(widget: PlotWidget) -> bytes:
    """``widget.frame`` as PNG: on its kept Figure if it has one for this frame, else a new one."""
    key = widget.figure_key()
    # Taken out while it changes, and put back only once it rendered: a failed update
    # leaves no half-changed Figure behind (the next redraw starts afresh).
    kept = widget._figures.pop(key, None) if key is not None else None
    if kept is not None:
        fig, handles, background = kept
        widget.update(fig, handles)
        if background is None:
            png = figure_png(fig, widget.dpi)
        else:
            fig.canvas.restore_region(background)
            png = _draw_dynamic(fig, handles["dynamic"])
    else:
        fig = Figure(figsize=widget.figure_size(), dpi=widget.dpi, layout=widget.layout)
        FigureCanvasAgg(fig)
        handles = widget.draw(fig)
        dynamic = handles.get("dynamic") if isinstance(handles, dict) else None
        if dynamic is None:
            png, background = figure_png(fig, widget.dpi), None
        else:
            for artist in dynamic:
                artist.set_animated(True)  # left out of the kept background
            fig.canvas.draw()
            background = fig.canvas.copy_from_bbox(fig.bbox)
            png = _draw_dynamic(fig, dynamic)
        if key is not None and handles is not None:
            _freeze_layout(fig)
    if key is not None and handles is not None:
        widget._figures[key] = (fig, handles, background)
    return png


def _draw_dynamic(fig: Figure, artists: list[Any]) -> bytes:
    """Draw ``artists`` over what the canvas holds, and encode it."""
    for artist in artists:
        fig.draw_artist(artist)
    return _encode(fig.canvas)


class PlotWidget:
    """Base of the lslm widgets: controls that redraw a picture (or an HTML view) safely.

    Subclasses add controls with ``_add_control``, lay them out with ``_set_children``,
    and implement some of:

    * ``prepare()``: read the controls, compute everything, raise ``LslmError`` for bad
      settings. Its result becomes ``self.frame`` only if the whole redraw succeeds, so
      ``frame`` always describes the picture on screen.
    * ``draw(fig)``: draw ``self.frame`` on a fresh Figure (widgets with a picture).
    * ``figure_key()`` and ``update(fig, handles)``: to answer at once, a widget can keep
      its Figure: ``draw`` returns handles to its artists, and later frames with the same
      ``figure_key()`` only change those artists' data (``update``) before rendering again.
      The layout (margins) found at the first render is kept too. If the handles are a
      dict with a ``"dynamic"`` list (the only artists ``update`` changes, in drawing
      order), the rest of the picture is rendered once and kept as pixels, and each
      update draws just those artists over it (blitting).
    * ``draw_html()``: the HTML for ``self.output`` (``None`` leaves it as it is).

    Attributes: ``box`` (the whole UI), ``image`` (``None`` for HTML-only widgets),
    ``message`` (empty when all is well), ``output`` (HTML text, or ``None``),
    ``controls`` (name -> control widget), ``render_count``, ``png``, ``last_error``.
    """

    #: kebab-case name, used for the CSS class ``lslm-<widget_name>``
    widget_name: ClassVar[str] = "plot-widget"
    has_image: ClassVar[bool] = True
    has_output: ClassVar[bool] = False
    figsize: ClassVar[tuple[float, float]] = (7.0, 4.0)
    dpi: ClassVar[float] = 96
    #: matplotlib layout engine; None (place axes by hand in draw) is ~3x quicker to render
    layout: ClassVar[str | None] = "constrained"

    def __init__(self) -> None:
        # Re-entrant: a redraw may be started from a callback that already holds it.
        self._lock = threading.RLock()
        self.render_count = 0
        self.png = b""
        self.last_error: str | None = None
        self.frame: Any = None
        self.controls: dict[str, widgets.Widget] = {}
        self._notes: list[str] = []
        self._fixed_notes: list[str] = []  # notes shown after every redraw (e.g. "text cropped")
        # Kept Figures by figure_key(): (figure, draw()'s handles, background pixels or None)
        self._figures: dict[Hashable, tuple[Figure, Any, Any]] = {}

        self.message = widgets.HTML(value="")
        self.message.add_class("lslm-message")
        self.image: widgets.Image | None = None
        if self.has_image:
            self.image = widgets.Image(format="png", layout=widgets.Layout(max_width="100%"))
            self.image.add_class("lslm-image")
        self.output: widgets.HTML | None = None
        if self.has_output:
            self.output = widgets.HTML(value="")
            self.output.add_class("lslm-output")
        self.box = widgets.VBox()
        self.box.add_class("lslm-widget")
        self.box.add_class(f"lslm-{self.widget_name}")

    # ----- building the UI -------------------------------------------------------------
    def _add_control(
        self, name: str, control: widgets.Widget, description: str | None = None,
        redraw: bool = True,
    ) -> widgets.Widget:
        """Register ``control`` as ``self.<name>``, label it, tag it for browser tests, watch it."""
        control.description = description if description is not None else name.replace("_", " ")
        if hasattr(control.style, "description_width"):  # buttons have no separate label
            control.style.description_width = "initial"
        control.add_class(f"lslm-control-{kebab(name)}")
        if kebab(name) != name:  # also the literal attribute name, so either spelling finds it
            control.add_class(f"lslm-control-{name}")
        setattr(self, name, control)
        self.controls[name] = control
        if redraw:
            control.observe(self._on_control, names="value")
        return control

    def _set_children(self, *rows: widgets.Widget | list[widgets.Widget]) -> None:
        """Lay out ``rows`` (a widget, or a list side by side), then message, image, output."""
        children: list[widgets.Widget] = []
        for row in rows:
            children.append(widgets.HBox(list(row)) if isinstance(row, (list, tuple)) else row)
        children.append(self.message)
        if self.image is not None:
            children.append(self.image)
        if self.output is not None:
            children.append(self.output)
        self.box.children = tuple(children)

    def _on_control(self, change: dict) -> None:
        self.redraw()

    # ----- what subclasses implement ---------------------------------------------------
    def prepare(self) -> Any:
        """Read the controls and compute what to show; raise ``LslmError`` for bad settings."""
        return None

    def draw(self, fig: Figure) -> Any:
        """Draw ``self.frame`` on ``fig``, a fresh Figure.

        Return ``None``, or handles (say a dict of artists) to keep ``fig`` for the later
        frames with the same ``figure_key()``: those are drawn by ``update(fig, handles)``.
        A ``"dynamic"`` entry (a list of artists) turns on blitting: see the class notes.
        """
        return None

    def figure_key(self) -> Hashable | None:
        """Which kept Figure can show ``self.frame`` (``None``: draw a fresh one)."""
        return None

    def update(self, fig: Figure, handles: Any) -> None:
        """Show ``self.frame`` on a kept Figure by changing the artists in ``handles``."""
        raise NotImplementedError

    def draw_html(self) -> str | None:
        """HTML for ``self.output`` from ``self.frame``; ``None`` keeps the current one."""
        return None

    def figure_size(self) -> tuple[float, float]:
        """Size in inches of the next figure (may depend on ``self.frame``)."""
        return self.figsize

    def _sync_controls(self) -> None:
        """Update control states that follow others (e.g. disable a slider); runs before prepare."""

    def _on_success(self) -> None:
        """Called under the lock after a redraw was committed."""

    def _on_failure(self, message: str) -> None:
        """Called under the lock after a redraw failed with an ``LslmError``."""

    # ----- redrawing -------------------------------------------------------------------
    def note(self, text: str) -> None:
        """Show ``text`` as a note (not an error) in the message area after this redraw."""
        self._notes.append(text)

    def _show_error(self, text: str) -> None:
        self.last_error = text
        self.message.value = error_html(text)

    def _show_notes(self) -> None:
        self.last_error = None
        self.message.value = "".join(note_html(n) for n in (*self._fixed_notes, *self._notes))

    def redraw(self) -> bool:
        """Recompute and redraw from the current control values; True if it worked.

        An ``LslmError`` (bad settings) goes to ``message`` and ``last_error``; the
        previous picture and ``frame`` stay, so what is shown stays consistent.
        """
        with self._lock:
            self._notes = []
            previous = self.frame
            try:
                self._sync_controls()
                self.frame = self.prepare()
                png = self._render() if self.image is not None else None
                page = self.draw_html() if self.output is not None else None
            except LslmError as e:
                self.frame = previous
                self._show_error(str(e))
                self._on_failure(str(e))
                return False
            except Exception as e:
                # A bug, not a user error: say so in the widget too (a callback's traceback
                # only reaches the log console in JupyterLab), then raise it.
                self.frame = previous
                self._show_error(
                    f"unexpected {type(e).__name__}: {' '.join(str(e).split())[:200]} "
                    "(a bug in lslm: please report it with the settings you used)"
                )
                raise
            if png is not None:
                self.png = png
                self.image.value = png  # type: ignore[union-attr]
            if page is not None:
                self.output.value = page  # type: ignore[union-attr]
            self.render_count += 1
            self._show_notes()
            self._on_success()
            return True

    def _render(self) -> bytes:
        with _MPL_LOCK:
            return _render_figure(self)

    # ----- display ---------------------------------------------------------------------
    def display(self) -> None:
        """Show the widget (same as ``IPython.display.display(widget)``)."""
        from IPython.display import display

        display(self)

    def describe(self) -> str:
        """A short plain-text description (the ``text/plain`` fallback)."""
        return f"<{type(self).__name__}: an interactive lslm widget; run the notebook to use it>"

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any]:
        """The live widget view, plus the latest picture for front ends without a kernel."""
        with self._lock:
            bundle = dict(self.box._repr_mimebundle_(**kwargs) or {})
            if self.png:
                bundle["image/png"] = base64.b64encode(self.png).decode("ascii")
            elif self.output is not None:
                bundle["text/html"] = self.message.value + self.output.value
            bundle["text/plain"] = self.describe()
            return bundle
