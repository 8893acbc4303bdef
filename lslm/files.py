"""Reading files that someone else made: regular files only, with a size bound.

A path can name a device (``/dev/zero`` never ends), a FIFO (reading blocks until a
writer comes), a folder, or a symlink to any of these. Every loader in lslm opens its
input through ``open_regular``, which opens without blocking, asks the open file itself
what it is (no gap between checking and reading) and refuses anything but a regular file
below a size limit. Error messages name the file, never its contents.

The limits (bytes):

* ``MAX_TEXT_BYTES``: a TSV or text file of examples (512 MiB);
* ``MAX_JSON_BYTES``: a JSON data file such as SQuAD (256 MiB; parsed JSON takes several
  times its size in memory);
* ``MAX_CONFIG_BYTES``: a small JSON settings file such as a Hugging Face config.json (1 MiB).
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any, BinaryIO

from lslm.errors import LslmError

MAX_TEXT_BYTES = 512 * 2**20
MAX_JSON_BYTES = 256 * 2**20
MAX_CONFIG_BYTES = 2**20


def _size(n: int) -> str:
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} bytes"


def open_regular(path: str | Path, limit: int, what: str = "file") -> BinaryIO:
    """``path`` opened for binary reading, if it is a regular file of at most ``limit`` bytes.

    ``what`` names the file in messages ("checkpoint", "TSV file" ...). Raises a one-line
    ``LslmError`` for a missing or unreadable path, a device, FIFO, socket or folder, and a
    file over the limit.
    """
    path = Path(path)
    # O_NONBLOCK: opening a FIFO must not wait for a writer; it changes nothing for regular files.
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise LslmError(f"no {what} at {path}: check the path") from None
    except IsADirectoryError:  # Windows refuses to open a folder
        raise LslmError(f"{path} is a folder, not a {what}: give the path of the file") from None
    except OSError as e:
        raise LslmError(f"cannot open the {what} {path} ({e.strerror or type(e).__name__}): "
                        "check its permissions") from None
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise LslmError(f"{path} is a folder, not a {what}: give the path of the file")
        if not stat.S_ISREG(info.st_mode):
            raise LslmError(f"{path} is not a regular file (a device, FIFO or socket): lslm reads "
                            f"a {what} only from an ordinary file")
        if info.st_size > limit:
            raise LslmError(f"{path} is {_size(info.st_size)}, above lslm's limit of {_size(limit)} "
                            f"for a {what}: split it or give a smaller file")
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_bytes(path: str | Path, limit: int, what: str = "file") -> bytes:
    """The bytes of a regular file of at most ``limit`` bytes (see ``open_regular``)."""
    with open_regular(path, limit, what) as f:
        data = f.read(limit + 1)  # a file that grew since it was opened is still bounded
    if len(data) > limit:
        raise LslmError(f"{path} grew above lslm's limit of {_size(limit)} for a {what} while "
                        "being read: give a file that is not being written")
    return data


def read_text(path: str | Path, limit: int = MAX_TEXT_BYTES, what: str = "text file") -> str:
    """A regular file's text, decoded as UTF-8, with a byte order mark at the start removed."""
    data = read_bytes(path, limit, what)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise LslmError(f"{path} is not UTF-8 text (at byte {e.start}): save it as UTF-8") from None
    return text.removeprefix("\ufeff")


def parse_json(text: str | bytes, where: str | Path) -> Any:
    """``json.loads`` with a one-line ``LslmError`` for text that is not JSON, nesting too
    deep for Python's parser, or numbers too long to convert; the text is never echoed."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise LslmError(f"{where} is not valid JSON (line {e.lineno}, column {e.colno}): "
                        "fix or re-export the file") from None
    except RecursionError:
        raise LslmError(f"{where} is nested too deeply to read as JSON: "
                        "fix or re-export the file") from None
    except (ValueError, TypeError) as e:  # e.g. an integer with more digits than Python converts
        raise LslmError(f"{where} is not valid JSON ({type(e).__name__}): fix or re-export the file") from None


def read_json(path: str | Path, limit: int = MAX_JSON_BYTES, what: str = "JSON file") -> Any:
    """The parsed JSON of a regular UTF-8 file of at most ``limit`` bytes."""
    return parse_json(read_text(path, limit, what), path)


def split_lines(text: str) -> list[str]:
    """``text`` cut into lines at ``\\n`` and ``\\r\\n`` only.

    ``str.splitlines`` also cuts at U+2028, U+0085, form feeds and other characters that
    are ordinary text inside a field. A last line without a newline counts; a final
    newline adds no empty line.
    """
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [line[:-1] if line.endswith("\r") else line for line in lines]
