"""The training progress bar: a saved notebook shows the finished bar, a terminal gets tqdm."""

import nbformat
import pytest
from nbclient import NotebookClient

from lslm.progress import in_notebook, progress_bar

TRAIN_IN_A_KERNEL = """
import torch
from lslm.loop import TrainConfig, TrainLoop

model = torch.nn.Linear(4, 1)
data = torch.randn(64, 4), torch.randn(64, 1)
loop = TrainLoop(model, lambda net, batch: torch.nn.functional.mse_loss(net(batch[0]), batch[1]),
                 lambda: data, TrainConfig(max_iters=37, eval_interval=0, warmup_iters=0))
loop.fit()
"""


def test_a_saved_notebook_shows_the_finished_bar_not_0_percent():
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(TRAIN_IN_A_KERNEL)])
    NotebookClient(nb, timeout=120, kernel_name="python3").execute()
    outputs = nb.cells[0].outputs
    texts = [o["data"]["text/plain"] for o in outputs if o.get("output_type") == "display_data"]
    assert len(texts) == 1, outputs  # one display, updated in place
    assert "100%" in texts[0] and "37/37 steps" in texts[0], texts[0]
    assert "train_loss" not in texts[0] and "loss=" in texts[0]
    assert "<progress value=\"37\" max=\"37\"" in outputs[0]["data"]["text/html"]
    assert not any("widget-view" in k for o in outputs for k in o.get("data", {}))


def test_outside_a_kernel_the_bar_is_tqdm():
    assert not in_notebook()
    bar = progress_bar(5, desc="x")
    try:
        assert type(bar).__module__.startswith("tqdm")
    finally:
        bar.close()


@pytest.mark.parametrize("n, total, shown", [(0, 600, "  0%"), (300, 600, " 50%"), (600, 600, "100%")])
def test_the_text_bar_says_how_far(monkeypatch, n, total, shown):
    import IPython.display

    from lslm.progress import NotebookProgress

    monkeypatch.setattr(IPython.display, "display", lambda *a, **k: None)
    bar = NotebookProgress(total, initial=n, desc="train")
    bar.set_postfix(loss="1.234")
    text = bar.text()
    assert text.startswith(f"train: {shown} |") and f"{n}/{total} steps" in text and "loss=1.234" in text
    assert text.count("█") == round(24 * n / total)
