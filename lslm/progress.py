"""Training progress: a tqdm bar in a terminal, an updating display in a notebook.

Why not tqdm's notebook widget: a saved notebook keeps only the widget's first text
("0%|          | 0/600"), so a reader of the saved file sees a bar that never moved, and
the widget needs a live kernel and a matching ipywidgets in the front end (Colab, VS Code,
GitHub and nbviewer differ). An IPython display with a ``display_id`` is updated in place:
every front end shows it, and the saved notebook keeps its last state, the finished bar.
"""

from __future__ import annotations

import html
import time
from typing import Any

# Redraw at most this often: each update is a message to the front end.
_MIN_INTERVAL_S = 0.5
_WIDTH = 24  # characters in the text bar


def in_notebook() -> bool:
    """True inside a Jupyter kernel (JupyterLab, Notebook, Colab, VS Code), not a terminal."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and "IPKernelApp" in getattr(shell, "config", {})


class NotebookProgress:
    """A progress bar drawn as one IPython display that is updated in place.

    It has the part of tqdm's interface the training loop uses: ``update``,
    ``set_postfix`` and ``close``.
    """

    def __init__(self, total: int, initial: int = 0, desc: str = "", unit: str = "step") -> None:
        from IPython.display import display

        self.total, self.n, self.desc, self.unit = total, initial, desc, unit
        self.postfix: dict[str, Any] = {}
        self._start = time.perf_counter()
        self._last_draw = 0.0
        self._handle = display(self._bundle(), raw=True, display_id=True)

    def update(self, n: int = 1) -> None:
        self.n += n
        if time.perf_counter() - self._last_draw >= _MIN_INTERVAL_S:
            self._draw()

    def set_postfix(self, **values: Any) -> None:
        self.postfix = dict(values)

    def close(self) -> None:
        self._draw()  # the last state is the one a saved notebook keeps

    def text(self) -> str:
        done = min(self.n / self.total, 1.0) if self.total else 1.0
        filled = round(done * _WIDTH)
        bar = "█" * filled + "·" * (_WIDTH - filled)
        extra = "".join(f", {k}={v}" for k, v in self.postfix.items())
        head = f"{self.desc}: " if self.desc else ""
        elapsed = time.perf_counter() - self._start
        return f"{head}{done:4.0%} |{bar}| {self.n}/{self.total} {self.unit}s [{elapsed:.0f} s{extra}]"

    def _bundle(self) -> dict[str, str]:
        text = self.text()
        value = min(self.n, self.total)
        return {
            "text/plain": text,
            "text/html": (
                f'<div class="lslm-progress" style="font-family:monospace">'
                f'<progress value="{value}" max="{max(self.total, 1)}" style="width:16em;vertical-align:middle">'
                f"</progress> {html.escape(text.split('|')[-1].strip())}"
                f"{' · ' + html.escape(self.desc) if self.desc else ''}</div>"
            ),
        }

    def _draw(self) -> None:
        self._last_draw = time.perf_counter()
        if self._handle is not None:
            self._handle.update(self._bundle(), raw=True)


def progress_bar(total: int, initial: int = 0, desc: str = "", unit: str = "step") -> Any:
    """A progress bar with ``update(n)``, ``set_postfix(**kw)`` and ``close()``."""
    if in_notebook():
        return NotebookProgress(total, initial=initial, desc=desc, unit=unit)
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, desc=desc, unit=unit)
