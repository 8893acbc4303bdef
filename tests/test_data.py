"""Corpora, splits and batches, including tinyshakespeare's real download path (on loopback)."""

import hashlib
import os
import re
import socket
import threading
from collections import Counter
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch

from lslm import data
from tests.conftest import time_limit
from lslm.data import (
    EMBEDDED,
    TINYSHAKESPEARE_SHA256,
    Splits,
    encode_splits,
    get_batch,
    load_corpus,
    python_docs_text,
    read_text,
    split_text,
    tinyshakespeare_path,
)
from lslm.errors import LslmError
from lslm.tokenizers import CharTokenizer

SHARED_COPY = Path(__file__).resolve().parents[2] / "shared/data/tinyshakespeare.txt"
needs_copy = pytest.mark.skipif(
    not SHARED_COPY.is_file(), reason=f"no local tinyshakespeare at {SHARED_COPY} to test or serve"
)


def one_line(err: pytest.ExceptionInfo) -> str:
    message = str(err.value)
    assert "\n" not in message and message.strip() == message
    return message


# --- the embedded corpus ----------------------------------------------------------


def test_embedded_corpus_is_long_english_prose():
    text = python_docs_text()
    assert len(text) >= 400_000
    words = [w.lower() for w in re.findall(r"[A-Za-z]+", text)]
    assert len(words) > 60_000
    top = {w for w, _ in Counter(words).most_common(10)}
    assert {"the", "a", "is", "of", "to", "and"} <= top  # the usual English function words
    assert len(re.findall(r"[a-z]\.\s", text)) > 2_000  # sentences
    assert sum(c.isascii() for c in text) / len(text) > 0.99


def test_embedded_corpus_is_cleaned_and_stable():
    text = python_docs_text()
    lines = text.split("\n")
    assert not any(re.fullmatch(r"([*=-])\1{2,}", line) for line in lines)  # no heading underlines
    assert all(line == line.rstrip() for line in lines)
    assert "\n\n\n" not in text and text == text.strip()
    assert 'The "if" statement\n\nThe "if" statement is used' in text
    python_docs_text.cache_clear()
    assert python_docs_text() == text  # same text when rebuilt
    assert load_corpus() is python_docs_text() and load_corpus(EMBEDDED) is python_docs_text()


# --- reading user text -----------------------------------------------------------


def test_read_text_file_strips_bom_and_windows_line_ends(tmp_path):
    path = tmp_path / "a.txt"
    path.write_bytes(b"\xef\xbb\xbfhello\r\nw\xc3\xb6rld\r\n")
    assert read_text(path) == "hello\nwörld\n"
    assert read_text(str(path)) == load_corpus(path) == load_corpus(str(path))


def test_read_text_folder_joins_txt_files_by_name(tmp_path):
    (tmp_path / "b.txt").write_text("second")
    (tmp_path / "a.txt").write_text("first")
    (tmp_path / "notes.md").write_text("ignored")
    assert read_text(tmp_path) == "first\n\nsecond"


@pytest.mark.parametrize(
    "name, content, expected",
    [
        ("missing.txt", None, r"no such file.*'python-docs'.*'tinyshakespeare'"),
        ("empty.txt", b"", r"empty"),
        ("blank.txt", b"  \n\t\n", r"empty"),
        ("binary.txt", b"PK\x03\x04\x00\x00data", r"binary.*NUL"),
        ("latin1.txt", b"caf\xe9 au lait", r"not valid UTF-8 .*byte offset 3.*re-save it as UTF-8"),
        ("folder", "dir", r"no \.txt files"),
    ],
)
def test_read_text_errors(tmp_path, name, content, expected):
    path = tmp_path / name
    if content == "dir":
        path.mkdir()
        (path / "data.csv").write_text("a,b")
    elif content is not None:
        path.write_bytes(content)
    with pytest.raises(LslmError) as err:
        read_text(path)
    assert re.search(expected, one_line(err)), str(err.value)


def test_unknown_corpus_name_is_a_missing_file():
    with pytest.raises(LslmError) as err:
        load_corpus("shakespeare-complete")
    assert "shakespeare-complete" in one_line(err) and "'tinyshakespeare'" in str(err.value)


# --- splits ----------------------------------------------------------------------


def test_split_is_contiguous_deterministic_and_sized():
    text = "".join(chr(97 + i % 26) for i in range(1_000))
    splits = split_text(text, val_frac=0.1, test_frac=0.05)
    assert isinstance(splits, Splits)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (850, 100, 50)
    assert splits.train + splits.val + splits.test == text
    assert splits.test == text[-50:]
    assert split_text(text, 0.1, 0.05) == splits
    assert split_text(text, 0, 0) == Splits(text, "", "")


@pytest.mark.parametrize(
    "val, test", [(-0.1, 0.1), (0.1, -0.1), (0.5, 0.5), (0.9, 0.2), (float("nan"), 0.1)]
)
def test_split_rejects_bad_fractions(val, test):
    with pytest.raises(LslmError) as err:
        split_text("some text", val, test)
    one_line(err)


# --- batches ---------------------------------------------------------------------


def test_get_batch_shapes_and_shift():
    tokens = torch.arange(1_000) * 7  # distinct values, so positions can be recovered
    x, y = get_batch(tokens, batch_size=8, block_size=16)
    assert x.shape == y.shape == (8, 16) and x.dtype == y.dtype == torch.long
    assert torch.equal(y[:, :-1], x[:, 1:])
    starts = x[:, 0] // 7
    expected = tokens[starts[:, None] + torch.arange(17)]
    assert torch.equal(x, expected[:, :-1]) and torch.equal(y, expected[:, 1:])


def test_get_batch_is_deterministic_with_a_seeded_generator():
    tokens = torch.arange(10_000)
    a = get_batch(tokens, 4, 32, generator=torch.Generator().manual_seed(0))
    b = get_batch(tokens, 4, 32, generator=torch.Generator().manual_seed(0))
    c = get_batch(tokens, 4, 32, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])


def test_get_batch_uses_the_whole_range():
    # With block_size + 1 tokens, the only block is the whole tensor.
    tokens = torch.arange(9)
    x, y = get_batch(tokens, 3, 8)
    assert torch.equal(x, torch.arange(8).expand(3, 8))
    assert torch.equal(y, torch.arange(1, 9).expand(3, 8))


def test_get_batch_too_short():
    with pytest.raises(LslmError) as err:
        get_batch(torch.arange(10), batch_size=2, block_size=10)
    message = one_line(err)
    assert "10 tokens" in message and "block_size is 10" in message and "--block-size" in message


def test_encode_splits():
    splits = split_text(python_docs_text()[:10_000])
    tok = CharTokenizer.train(splits.train + splits.val + splits.test)
    encoded = encode_splits(splits, tok)
    assert set(encoded) == {"train", "val", "test"}
    for name, ids in encoded.items():
        assert ids.dtype == torch.long and ids.dim() == 1
        assert tok.decode(ids.tolist()) == getattr(splits, name)


# --- tinyshakespeare: local copies -----------------------------------------------


@needs_copy
def test_tinyshakespeare_from_argument_and_env(monkeypatch, tmp_path):
    monkeypatch.setenv("LSLM_CACHE", str(tmp_path / "cache"))  # never touch the real cache
    assert tinyshakespeare_path(SHARED_COPY) == SHARED_COPY
    monkeypatch.setenv("LSLM_TINYSHAKESPEARE", str(SHARED_COPY))
    assert tinyshakespeare_path(download=False) == SHARED_COPY
    text = load_corpus("tinyshakespeare")
    assert len(text) == 1_115_394 and text.startswith("First Citizen:")
    assert not (tmp_path / "cache").exists()


@needs_copy
def test_tinyshakespeare_local_copy_with_wrong_checksum(monkeypatch, tmp_path):
    changed = tmp_path / "tinyshakespeare.txt"
    changed.write_bytes(SHARED_COPY.read_bytes() + b"\nextra line\n")
    with pytest.raises(LslmError) as err:
        tinyshakespeare_path(changed)
    assert TINYSHAKESPEARE_SHA256 in one_line(err) and str(changed) in str(err.value)
    monkeypatch.setenv("LSLM_TINYSHAKESPEARE", str(changed))
    with pytest.raises(LslmError) as err:
        tinyshakespeare_path()
    assert "LSLM_TINYSHAKESPEARE" in one_line(err) and TINYSHAKESPEARE_SHA256 in str(err.value)


def test_tinyshakespeare_env_path_missing(monkeypatch, tmp_path):
    monkeypatch.setenv("LSLM_TINYSHAKESPEARE", str(tmp_path / "nowhere.txt"))
    with pytest.raises(LslmError) as err:
        tinyshakespeare_path()
    assert "nowhere.txt" in one_line(err)


# --- tinyshakespeare: the download path, against a loopback server ----------------


@contextmanager
def serve(body: bytes, status: int = 200):
    """An HTTP server on 127.0.0.1 that answers every GET with ``body``; yields (url, hits)."""
    hits: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            hits.append(self.path)
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):  # keep pytest output clean
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    # A short poll interval makes shutdown() quick.
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
    )
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/input.txt", hits
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture
def cache(monkeypatch, tmp_path) -> Path:
    """An empty cache folder, no local copy configured, and no proxy in the way of loopback."""
    monkeypatch.setenv("LSLM_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("LSLM_TINYSHAKESPEARE", raising=False)
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    return tmp_path / "cache"


def cache_files(cache: Path) -> list[str]:
    return sorted(p.name for p in cache.iterdir()) if cache.exists() else []


@needs_copy
def test_download_once_into_the_cache(monkeypatch, cache):
    with serve(SHARED_COPY.read_bytes()) as (url, hits):
        monkeypatch.setenv("LSLM_TINYSHAKESPEARE_URL", url)
        first = tinyshakespeare_path()
        assert first == cache / "tinyshakespeare.txt" and len(hits) == 1
        assert hashlib.sha256(first.read_bytes()).hexdigest() == TINYSHAKESPEARE_SHA256
        assert cache_files(cache) == ["tinyshakespeare.txt"]  # no temp file left
        assert tinyshakespeare_path() == first and len(hits) == 1  # served from the cache
        assert load_corpus("tinyshakespeare").startswith("First Citizen:") and len(hits) == 1


@needs_copy
def test_damaged_cache_is_downloaded_again(monkeypatch, cache):
    cache.mkdir()
    (cache / "tinyshakespeare.txt").write_text("half a file")
    with serve(SHARED_COPY.read_bytes()) as (url, hits):
        monkeypatch.setenv("LSLM_TINYSHAKESPEARE_URL", url)
        path = tinyshakespeare_path()
    assert len(hits) == 1
    assert hashlib.sha256(path.read_bytes()).hexdigest() == TINYSHAKESPEARE_SHA256


def test_download_with_wrong_bytes_leaves_nothing(monkeypatch, cache):
    with serve(b"These are not the plays you are looking for.\n") as (url, hits):
        monkeypatch.setenv("LSLM_TINYSHAKESPEARE_URL", url)
        with pytest.raises(LslmError) as err:
            tinyshakespeare_path()
    assert len(hits) == 1
    assert "not tinyshakespeare" in one_line(err) and TINYSHAKESPEARE_SHA256 in str(err.value)
    assert cache_files(cache) == []


def test_download_http_error(monkeypatch, cache):
    with serve(b"Not Found", status=404) as (url, _):
        monkeypatch.setenv("LSLM_TINYSHAKESPEARE_URL", url)
        with pytest.raises(LslmError) as err:
            tinyshakespeare_path()
    assert "HTTP 404" in one_line(err) and str(cache / "tinyshakespeare.txt") in str(err.value)
    assert cache_files(cache) == []


def test_unreachable_url_says_where_to_put_the_file(monkeypatch, cache):
    with socket.socket() as s:  # a port that was free a moment ago: nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/input.txt"
    monkeypatch.setenv("LSLM_TINYSHAKESPEARE_URL", url)
    with pytest.raises(LslmError) as err:
        tinyshakespeare_path()
    message = one_line(err)
    assert "could not be downloaded" in message and url in message
    assert str(cache / "tinyshakespeare.txt") in message and "LSLM_TINYSHAKESPEARE=" in message
    assert cache_files(cache) == []


def test_no_download_when_downloads_are_off(cache):
    with pytest.raises(LslmError) as err:
        tinyshakespeare_path(download=False)
    assert str(cache / "tinyshakespeare.txt") in one_line(err)
    assert cache_files(cache) == []


def test_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("LSLM_CACHE", str(tmp_path))
    assert data.cache_dir() == tmp_path
    monkeypatch.delenv("LSLM_CACHE")
    assert data.cache_dir() == Path.home() / ".cache" / "lslm"


# --- hostile corpora: only regular files, bounded, nothing of a bad file quoted -----------------



@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_fifos_and_devices_are_refused_before_reading(tmp_path):
    fifo = tmp_path / "pipe.txt"
    os.mkfifo(fifo)
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "a.txt").write_text("some text")
    os.mkfifo(folder / "b.txt")  # in a folder too: refused, not skipped
    sources = [fifo, folder] + [Path(d) for d in ("/dev/zero", "/dev/urandom") if Path(d).exists()]
    with time_limit(30):
        for source in sources:
            with pytest.raises(LslmError) as err:
                load_corpus(source)
            assert "not a regular file" in one_line(err), source


def test_corpora_over_the_size_limit_are_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "MAX_CORPUS_BYTES", 1000)
    big = tmp_path / "big.txt"
    big.write_text("x" * 1001)
    with pytest.raises(LslmError) as err:
        read_text(big)
    assert "limit" in one_line(err) and "big.txt" in str(err.value)
    folder = tmp_path / "parts"
    folder.mkdir()
    for name in ("a.txt", "b.txt"):
        (folder / name).write_text("y" * 600)
    with pytest.raises(LslmError) as err:
        read_text(folder)
    assert "above lslm's corpus limit" in one_line(err)
    (folder / "b.txt").unlink()
    assert read_text(folder) == "y" * 600


def test_an_empty_corpus_path_is_not_the_current_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "notes.txt").write_text("private notes in the current folder")
    with pytest.raises(LslmError, match="empty"):  # Path("") is Path("."): only the string can tell
        load_corpus("")


def test_a_file_that_is_not_utf8_is_not_quoted(tmp_path):
    path = tmp_path / "secret.txt"
    path.write_bytes(b"password: hunter2 \xff\xfe")
    with pytest.raises(LslmError) as err:
        read_text(path)
    message = one_line(err)
    assert "byte offset 18" in message and "0xff" not in message and "hunter2" not in message
