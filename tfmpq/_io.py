"""Files and native output, done once: atomic writes (with fsync) and capturing file descriptor 2.

Every file tfmpq writes that a kill must not tear (checkpoints, outputs, .tflite files, C arrays,
records) goes through :func:`write_bytes_atomic`: a temporary file in the same folder, flushed and
``fsync``-ed, then moved over the target with ``os.replace`` (atomic on POSIX). A failure leaves the old
file or none, never a partial one, and no temporary file behind.

TensorFlow, the TFLite converter and TFLite Micro write from C++ straight to file descriptor 2, below
Python's ``sys.stderr``; :func:`captured_stderr` redirects that descriptor into a temporary file for a
block and hands the text back.
"""
from __future__ import annotations

import contextlib
import json
import os
import sys
import tempfile
from typing import Any, Iterator

__all__ = ["write_bytes_atomic", "write_text_atomic", "write_json_atomic", "captured_stderr"]


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    """Writes ``data`` to ``path`` atomically (temporary file in the same folder, fsync, ``os.replace``).

    Raises:
        OSError: the folder is missing or not writable, the disk is full, ...; nothing is left behind.
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=directory)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        tmp = None
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)


def write_text_atomic(path: str | os.PathLike, text: str, encoding: str = "utf-8") -> None:
    """:func:`write_bytes_atomic` of ``text``."""
    write_bytes_atomic(path, text.encode(encoding))


def write_json_atomic(path: str | os.PathLike, obj: Any, indent: int = 1, default=None) -> None:
    """Writes ``obj`` as JSON (and a final newline) with :func:`write_bytes_atomic`."""
    write_text_atomic(path, json.dumps(obj, indent=indent, default=default) + "\n")


@contextlib.contextmanager
def captured_stderr() -> Iterator[list]:
    """Captures what native code writes to file descriptor 2 during the block.

    Yields a list that holds the captured text (one string) once the block exits, also when it
    raises. Where the process has no real descriptor 2 (some embedded interpreters), nothing is
    captured and the list gets an empty string.
    """
    sink: list = []
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):
        try:
            yield sink
        finally:
            sink.append("")
        return
    with tempfile.TemporaryFile(mode="w+b") as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield sink
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            sink.append(tmp.read().decode("utf-8", "replace"))
