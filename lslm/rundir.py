"""A run folder (``lslm train --out DIR``) while a run uses it: made, locked, tidied.

* ``run_folder(path)`` creates the folder, holds its lock file (``DIR/.lock``) for the
  run's life, so that a second ``lslm train`` on the same folder stops with one line
  instead of silently writing over the first, and removes the hidden temporary files
  that a killed save left behind.
* The lock is the operating system's (``fcntl.flock`` on POSIX, ``msvcrt.locking`` on
  Windows): it goes away with the process that held it, so a crashed run never leaves a
  stale lock to clean up by hand.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import IO

from lslm.errors import LslmError
from lslm.utils import error_summary

LOCK_NAME = ".lock"
# What lslm.utils.atomic_write names the file it writes before renaming it to ckpt.pt.
STALE_TEMP_PATTERN = ".ckpt.pt.*.tmp"
_WINDOWS_LOCK_OFFSET = 2**20  # Windows locks bytes: lock one past the pid, so it stays readable


def _try_lock(f: IO[bytes]) -> bool:
    """Take the lock on ``f`` without waiting: True if this process now holds it."""
    try:
        import fcntl
    except ImportError:  # Windows
        import msvcrt

        f.seek(_WINDOWS_LOCK_OFFSET)
        try:
            msvcrt.locking(f.fileno(), msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True
    try:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    except OSError:  # a file system without locks (some network shares): run unlocked
        return True
    return True


def _holder(path: Path) -> str:
    """' (process N)' from the lock file, or '' when it names no process."""
    try:
        text = path.read_bytes()[:20].decode("ascii", "replace").strip()
    except OSError:
        return ""
    return f" (process {text})" if text.isdigit() else ""


@contextmanager
def locked(folder: Path) -> Iterator[None]:
    """Hold ``folder``'s lock for the block; an ``LslmError`` if another process holds it."""
    path = folder / LOCK_NAME
    for _ in range(10):  # the file was removed and made again under us: lock the new one
        try:
            f = open(path, "a+b")
        except OSError as e:
            raise LslmError(
                f"cannot write in the run folder {folder} ({error_summary(e.strerror or e)}): "
                "pick a folder you can write to"
            ) from None
        if not _try_lock(f):
            f.close()
            raise LslmError(
                f"another lslm train{_holder(path)} is using {folder}: wait for it to finish, "
                "or pick another --out"
            )
        try:
            same = os.path.samestat(os.fstat(f.fileno()), os.stat(path))
        except OSError:
            same = False
        if same:
            break
        f.close()
    else:
        raise LslmError(f"could not lock the run folder {folder}: try again")
    try:
        f.seek(0)
        f.truncate()
        f.write(str(os.getpid()).encode())  # for the message a second run shows
        f.flush()
        yield
    finally:
        f.close()  # closing the file releases the lock


def remove_stale_temp_files(folder: Path) -> list[Path]:
    """Delete the temporary files that interrupted saves left in ``folder``; hold its lock first."""
    removed = []
    for p in folder.glob(STALE_TEMP_PATTERN):
        with suppress(OSError):  # one we may not remove (permissions) is harmless: never read
            p.unlink()
            removed.append(p)
    return removed


@contextmanager
def run_folder(path: str | Path, lock: bool = True) -> Iterator[Path]:
    """Create the run folder ``path``, lock it and tidy it, for the block.

    ``lock=False`` only creates it: the other processes of a torchrun job, whose rank 0
    holds the lock. A folder created here is removed again if the block fails while the
    folder holds nothing but the lock file, so a mistyped option leaves no empty run behind.
    """
    path = Path(path)
    try:
        existed = path.is_dir()
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:  # under a file, in /proc, read-only, ...
        raise LslmError(
            f"cannot create the run folder {path} ({error_summary(e.strerror or e)}): "
            "pick a folder you can write to"
        ) from None
    if not lock:
        yield path
        return
    try:
        with locked(path):
            remove_stale_temp_files(path)
            try:
                yield path
            except BaseException:
                if not existed and _only_the_lock(path):
                    (path / LOCK_NAME).unlink(missing_ok=True)  # while we hold it: see locked()
                raise
    except BaseException:
        if not existed:
            try:
                path.rmdir()  # only if empty
            except OSError:
                pass
        raise


def _only_the_lock(path: Path) -> bool:
    try:
        return {p.name for p in path.iterdir()} <= {LOCK_NAME}
    except OSError:
        return False
