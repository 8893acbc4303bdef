"""The notebooks as a learner sees them: JupyterLab in a real, headless Chromium.

Starts JupyterLab on 127.0.0.1, opens notebook 05 in Chromium (Debian's, driven by
playwright), runs all cells, then checks that the widgets render, and that quick
changes of the attention explorer's selectors and a playground slider update those
pictures and no other.

Needs `chromium` (e.g. `apt-get install chromium`) and the `playwright` package (in the
test extra). Without them this test skips with a message, except where
LSLM_REQUIRE_BROWSER=1 (CI), where it fails. Screenshots go to $LSLM_SCREENSHOTS
(the README's come from `LSLM_SCREENSHOTS=docs/screenshots make test`), else to a
temporary folder.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = os.environ.get("LSLM_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]
HOW_TO = ("install Debian's chromium (`sudo apt-get install chromium`) and playwright "
          "(`pip install playwright`, already in the test extra), or set LSLM_CHROMIUM")


def need_browser():
    """The playwright module, or a skip (a failure where LSLM_REQUIRE_BROWSER=1)."""
    problem = None
    try:
        from playwright import sync_api
    except ImportError:
        problem = "the playwright package is missing"
    if problem is None and not Path(CHROMIUM).exists():
        problem = f"no chromium at {CHROMIUM}"
    if problem:
        if os.environ.get("LSLM_REQUIRE_BROWSER") == "1":
            pytest.fail(f"browser test required but {problem}: {HOW_TO}")
        pytest.skip(f"browser test skipped: {problem}; to run it, {HOW_TO}")
    return sync_api


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_settings(settings: Path) -> None:
    """Lab settings that keep a headless run from blocking on dialogs or reaching out."""
    files = {
        "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {
            "autoStartDefaultKernel": True,  # else a kernel dialog blocks the page
            "windowingMode": "none",  # every cell in the DOM, not only the visible ones
        },
        "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {
            "checkForUpdates": False, "fetchNews": "false",
        },
    }
    for name, value in files.items():
        path = settings / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(value))


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """A JupyterLab server on 127.0.0.1 serving a scratch copy of the notebooks."""
    need_browser()
    base = tmp_path_factory.mktemp("lab")
    root = base / "notebooks"
    root.mkdir()
    for nb_path in ROOT.glob("notebooks/[0-9][0-9]_*.ipynb"):
        nb = nbformat.read(nb_path, as_version=4)
        for cell in nb.cells:  # start clean, so "executed" means executed now
            if cell.cell_type == "code":
                cell.outputs, cell.execution_count = [], None
        nbformat.write(nb, root / nb_path.name)
    write_settings(base / "settings")
    port, token = free_port(), uuid.uuid4().hex
    env = {**os.environ, "JUPYTERLAB_SETTINGS_DIR": str(base / "settings"),
           "JUPYTERLAB_WORKSPACES_DIR": str(base / "workspaces"),
           "JUPYTER_CONFIG_DIR": str(base / "config"), "JUPYTER_RUNTIME_DIR": str(base / "runtime")}
    cmd = [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
           f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
           "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--allow-root")
    log = open(base / "server.log", "w")
    server = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=root)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 90
    while True:
        try:
            urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=2)
            break
        except OSError:
            if server.poll() is not None or time.time() > deadline:
                server.kill()
                pytest.fail(f"JupyterLab did not start; its log: {(base / 'server.log').read_text()[-2000:]}")
            time.sleep(0.5)
    yield {"url": url, "token": token, "root": root}
    server.terminate()
    try:
        server.wait(timeout=20)
    except subprocess.TimeoutExpired:
        server.kill()
    log.close()


@pytest.fixture(scope="module")
def browser(lab):
    sync_api = need_browser()
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS)
        yield b
        b.close()


def screenshots_dir(tmp_path: Path) -> Path:
    target = Path(os.environ.get("LSLM_SCREENSHOTS") or tmp_path)
    target.mkdir(parents=True, exist_ok=True)
    return target


def open_and_run_all(browser, lab, notebook: str, timeout_s: int = 400):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    # ?reset: a fresh workspace, so notebooks opened by an earlier test are not restored.
    page.goto(f"{lab['url']}/lab/tree/{notebook}?reset&token={lab['token']}")
    page.wait_for_selector("#jp-main-statusbar >> text=Idle", timeout=120_000)
    page.click(".lm-MenuBar-itemLabel:text-is('Run')")
    page.click("[data-command='runmenu:run-all']")
    # Done when every code cell shows an execution number (a cell with hidden input shows
    # no prompt) and the kernel stays idle.
    all_done = """() => {
        const panel = document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden)');
        if (!panel) return false;
        const prompts = [...panel.querySelectorAll('.jp-CodeCell .jp-InputPrompt')]
            .map(p => p.textContent.trim()).filter(t => t !== '');
        return prompts.length > 0 && prompts.every(t => /^\\[\\d+\\]:?$/.test(t));
    }"""
    page.wait_for_function(all_done, timeout=timeout_s * 1000)
    for _ in range(2):  # idle twice in a row: not a pause between two cells
        page.wait_for_selector("#jp-main-statusbar >> text=Idle", timeout=timeout_s * 1000)
        time.sleep(1.5)
    assert page.evaluate(all_done)
    errors = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']")
    tracebacks = [t for t in errors.all_inner_texts() if "Traceback" in t or "Error" in t]
    assert not tracebacks, f"{notebook} raised in the browser: {tracebacks[0][:1500]}"
    return page


def shoot(page, locator, path: Path) -> None:
    """Screenshot one widget whole: grow the window to fit it first (the notebook scrolls)."""
    height = int(locator.evaluate("e => e.getBoundingClientRect().height"))
    page.set_viewport_size({"width": 1400, "height": max(1000, height + 300)})
    locator.scroll_into_view_if_needed()
    locator.screenshot(path=str(path))
    page.set_viewport_size({"width": 1400, "height": 1000})


def img_state(page, widget_class: str) -> dict:
    """The widget's picture: its src (a new blob URL on every change) and its size."""
    return page.evaluate(
        """(cls) => {
            const imgs = [...document.querySelectorAll('.' + cls + ' img.lslm-image')];
            return {count: imgs.length, src: imgs.map(i => i.src),
                    width: imgs.map(i => i.naturalWidth)};
        }""",
        widget_class,
    )


def test_notebook_05_widgets_in_chromium(browser, lab, tmp_path):
    notebook = "05_evaluation.ipynb"
    if not (lab["root"] / notebook).exists():
        pytest.fail(f"notebooks/{notebook} is missing")
    page = open_and_run_all(browser, lab, notebook)
    shots = screenshots_dir(tmp_path)

    widgets = ["lslm-attention-explorer", "lslm-training-dashboard", "lslm-sampling-playground"]
    before = {}
    for cls in widgets:
        page.locator(f".{cls} img.lslm-image").first.scroll_into_view_if_needed()
        page.wait_for_function(
            "(cls) => { const i = document.querySelector('.' + cls + ' img.lslm-image');"
            " return i && i.complete && i.naturalWidth > 0; }", arg=cls, timeout=60_000)
        state = img_state(page, cls)
        assert state["count"] == 1, f"{cls}: expected one picture, found {state['count']}"
        before[cls] = state
        if cls != "lslm-attention-explorer":  # that one is photographed after the clicks
            shoot(page, page.locator(f".{cls}").first, shots / f"{cls.removeprefix('lslm-')}.png")
    outputs_before = page.locator(".jp-OutputArea-output").count()

    # Quick changes: view, layer, head, then the query token, without waiting in between.
    explorer = page.locator(".lslm-attention-explorer").first
    explorer.scroll_into_view_if_needed()
    explorer.locator(".lslm-control-view button", has_text="heatmap").click()
    explorer.locator(".lslm-control-layer select").select_option(index=1)
    explorer.locator(".lslm-control-head select").select_option(index=1)
    explorer.locator(".lslm-control-query select").select_option(index=1)
    # ...and at once a slider of another widget: the playground's temperature.
    playground = page.locator(".lslm-sampling-playground").first
    readout = playground.locator(".lslm-control-temperature .widget-readout").first
    readout.click()
    page.keyboard.press("Control+A")
    page.keyboard.type("0.5")
    page.keyboard.press("Enter")
    page.wait_for_function(
        "([cls, old]) => { const i = document.querySelector('.' + cls + ' img.lslm-image');"
        " return i && i.src !== old && i.complete && i.naturalWidth > 0; }",
        arg=["lslm-attention-explorer", before["lslm-attention-explorer"]["src"][0]], timeout=30_000)
    time.sleep(2)  # let any late (wrong) redraws land before we judge

    # The caption drawn with the picture names the layer and head the selectors show now.
    chosen = [explorer.locator(f".lslm-control-{c} select").evaluate("s => s.options[s.selectedIndex].text")
              for c in ("layer", "head")]
    expected = f"layer {chosen[0]}, head {chosen[1]}:"
    page.wait_for_function(
        "(want) => { const s = document.querySelector('.lslm-attention-explorer .lslm-summary');"
        " return s && s.innerText.startsWith(want); }", arg=expected, timeout=30_000)
    page.wait_for_function(
        "(old) => { const i = document.querySelector('.lslm-sampling-playground img.lslm-image');"
        " return i && i.src !== old && i.complete && i.naturalWidth > 0; }",
        arg=before["lslm-sampling-playground"]["src"][0], timeout=30_000)
    time.sleep(2)
    after = {cls: img_state(page, cls) for cls in widgets}
    assert after["lslm-attention-explorer"]["src"] != before["lslm-attention-explorer"]["src"]
    assert after["lslm-sampling-playground"]["src"] != before["lslm-sampling-playground"]["src"]
    assert readout.inner_text().strip() == "0.50"
    for cls in widgets:
        assert after[cls]["count"] == 1, f"{cls} now shows {after[cls]['count']} pictures"
        assert all(w > 0 for w in after[cls]["width"]), f"{cls} went blank"
    assert after["lslm-training-dashboard"]["src"] == before["lslm-training-dashboard"]["src"], \
        "changing the explorer and the playground redrew the training dashboard"
    assert page.locator(".jp-OutputArea-output").count() == outputs_before, "a plot landed as a new output"
    shoot(page, explorer, shots / "attention-explorer.png")
    page.close()


def run_scratch_notebook(browser, lab, name: str, sources: list[str]):
    """Write a notebook of these code cells into the lab's folder, open it and run it all."""
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(src) for src in sources]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, lab["root"] / name)
    return open_and_run_all(browser, lab, name, timeout_s=180)


GALLERY = [
    "from lslm.data import python_docs_text\n"
    "from lslm.widgets import ConfigExplorer, TokenExplorer\n"
    "corpus = python_docs_text()[:60_000]",
    "TokenExplorer(corpus=corpus)",
    "ConfigExplorer(vocab_size=65, block_size=64)",
]


def test_token_and_config_explorers_in_chromium(browser, lab, tmp_path):
    """The two widgets that notebooks 01 and 03 show, in a small scratch notebook."""
    page = run_scratch_notebook(browser, lab, "gallery.ipynb", GALLERY)
    shots = screenshots_dir(tmp_path)

    tokens = page.locator(".lslm-token-explorer").first
    tokens.wait_for(timeout=60_000)
    first_view = tokens.locator(".lslm-output").inner_text()
    assert "tokens" in first_view
    shoot(page, tokens, shots / "token-explorer.png")
    # Switch tokenizer: the pieces shown must change (the default text has Chinese in it,
    # which the char tokenizer of an English corpus cannot encode, so go BPE <-> unigram).
    kind = tokens.locator(".lslm-control-kind select")
    kind.select_option("unigram" if kind.input_value() != "unigram" else "bpe")
    page.wait_for_function(
        "(old) => { const o = document.querySelector('.lslm-token-explorer .lslm-output');"
        " return o && o.innerText !== old; }", arg=first_view, timeout=60_000)

    config = page.locator(".lslm-config-explorer").first
    config.scroll_into_view_if_needed()
    page.wait_for_function(
        "() => { const i = document.querySelector('.lslm-config-explorer img.lslm-image');"
        " return i && i.complete && i.naturalWidth > 0; }", timeout=60_000)
    shoot(page, config, shots / "config-explorer.png")
    # Two quick edits: 6 layers (valid, redraws), then 5 heads for 128 dimensions (invalid).
    src = img_state(page, "lslm-config-explorer")["src"]
    for control, value in (("n-layer", "6"), ("n-head", "5")):
        readout = config.locator(f".lslm-control-{control} .widget-readout").first
        readout.click()
        page.keyboard.press("Control+A")
        page.keyboard.type(value)
        page.keyboard.press("Enter")
    page.wait_for_function(
        "() => { const m = document.querySelector('.lslm-config-explorer .lslm-message');"
        " return m && /divisible/.test(m.innerText); }", timeout=30_000)
    time.sleep(1.5)
    after = img_state(page, "lslm-config-explorer")
    assert after["count"] == 1 and after["width"][0] > 0  # the last valid picture stays
    assert after["src"] != src  # ...and it is the 6-layer one, drawn before the bad edit
    shoot(page, config, Path(tmp_path) / "config-explorer-invalid.png")
    page.close()


CHAT = [
    "from lslm.finetune import encode_example, finetune\n"
    "from lslm.model import GPT, GPTConfig\n"
    "from lslm.tokenizers import ChatTokenizer, train_tokenizer\n"
    "from lslm.widgets import ChatWidget\n"
    "text = 'Tom had a red kite. Anna went to the farm. Where did Tom go? He went to the park. ' * 30\n"
    "chat = ChatTokenizer(train_tokenizer('bpe', text, vocab_size=300))\n"
    "model = GPT(GPTConfig(vocab_size=chat.vocab_size, block_size=128, n_layer=2, n_head=2,\n"
    "                      n_embd=32, position='rope'), seed=0)\n"
    "t = chat.template\n"
    "pairs = [('Where did Tom go?', 'the park'), ('Who went to the farm?', 'Anna')]\n"
    "finetune(model, [encode_example(chat.encode, t.prompt(' ' + q), t.response(' ' + a), 128)\n"
    "                 for q, a in pairs], steps=60, batch_size=4, lr=1e-2, amp=False)",
    "ChatWidget(model, chat, 'Where did Tom go?')",
]


def test_chat_widget_in_chromium(browser, lab, tmp_path):
    """Type an instruction, press Send: the answer and the attention picture change."""
    page = run_scratch_notebook(browser, lab, "chat.ipynb", CHAT)

    widget = page.locator(".lslm-chat-widget").first
    widget.wait_for(timeout=60_000)
    widget.scroll_into_view_if_needed()
    page.wait_for_function(
        "() => { const i = document.querySelector('.lslm-chat-widget img.lslm-image');"
        " return i && i.complete && i.naturalWidth > 0; }", timeout=60_000)
    assert "the park" in widget.locator(".lslm-answer").inner_text()
    src = img_state(page, "lslm-chat-widget")["src"]

    box = widget.locator(".lslm-control-instruction textarea")
    box.fill("Who went to the farm?")
    widget.locator("button.lslm-control-send").click()
    page.wait_for_function(
        "() => { const a = document.querySelector('.lslm-chat-widget .lslm-answer');"
        " return a && a.innerText.includes('Anna'); }", timeout=30_000)
    page.wait_for_function(
        "(old) => { const i = document.querySelector('.lslm-chat-widget img.lslm-image');"
        " return i && i.src !== old && i.complete && i.naturalWidth > 0; }", arg=src[0],
        timeout=30_000)
    after = img_state(page, "lslm-chat-widget")
    assert after["count"] == 1 and after["width"][0] > 0
    size = widget.locator("img.lslm-image").bounding_box()
    assert size and size["width"] > 0 and size["height"] > 0, "the picture is not laid out"
    assert box.input_value() == "Who went to the farm?"
    assert "the park" not in widget.locator(".lslm-answer").inner_text()
    shoot(page, widget, screenshots_dir(tmp_path) / "chat-widget.png")
    page.close()


PATCHES = [
    "from lslm import vision, vlm\n"
    "from lslm.widgets import PatchAttention\n"
    "pics = vision.pictures(600, seed=7)\n"
    "model, _ = vlm.train_vlm(pics, 'caption', steps=300, batch_size=32, seed=0)",
    "PatchAttention(model, vision.pictures(6, seed=7, split='test'))",
]


def test_patch_attention_in_chromium(browser, lab, tmp_path):
    """Notebook 17's widget: pick another word, then another picture; the picture follows."""
    page = run_scratch_notebook(browser, lab, "patches.ipynb", PATCHES)
    widget = page.locator(".lslm-patch-attention").first
    widget.wait_for(timeout=60_000)
    widget.scroll_into_view_if_needed()
    has_picture = ("(old) => { const i = document.querySelector('.lslm-patch-attention img.lslm-image');"
                   " return i && i.src !== old && i.complete && i.naturalWidth > 0; }")
    page.wait_for_function(has_picture, arg="", timeout=60_000)
    src = img_state(page, "lslm-patch-attention")["src"][0]

    words = widget.locator(".lslm-control-word select")
    first_words = [w.replace("\xa0", " ") for w in words.locator("option").all_inner_texts()]
    assert len(first_words) >= 4 and first_words[0].startswith("1: a")  # the model's caption, word by word
    words.select_option(index=len(first_words) - 1)
    page.wait_for_function(has_picture, arg=src, timeout=30_000)
    src = img_state(page, "lslm-patch-attention")["src"][0]

    widget.locator(".lslm-control-picture select").select_option(index=3)
    page.wait_for_function(has_picture, arg=src, timeout=30_000)
    after = img_state(page, "lslm-patch-attention")
    assert after["count"] == 1 and after["width"][0] > 0
    assert widget.locator(".lslm-message").inner_text().strip() == ""
    questions = widget.locator(".lslm-control-about select option").all_inner_texts()
    assert questions[0] == "caption" and all(q.endswith("?") for q in questions[1:])
    shoot(page, widget, screenshots_dir(tmp_path) / "patch-attention.png")
    page.close()
