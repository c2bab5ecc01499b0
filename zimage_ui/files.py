"""Crash-safe file writes: a file is whole or absent, never half written.

Each write goes to a temporary file in the same folder, is flushed to disk, then renamed into
place (`os.replace`, atomic on POSIX and Windows) or, where an existing file must not be
replaced, linked into place (`os.link` fails if the name is taken). A `kill -9` in the middle
leaves at most a `.*.tmp` file behind, which no reader takes for the real one. This module
imports nothing from the app.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path


def _temporary(path: Path, data: bytes) -> Path:
    handle, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(name)
        raise
    return Path(name)


def write_atomic(path: Path, data: bytes | str) -> Path:
    """Write `data` to `path` whole, replacing any file there."""
    raw = data.encode("utf-8") if isinstance(data, str) else data
    temporary = _temporary(path, raw)
    try:
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return path


def create_atomic(path: Path, data: bytes | str) -> Path:
    """Write `data` to `path` whole; FileExistsError (nothing written) when `path` exists."""
    raw = data.encode("utf-8") if isinstance(data, str) else data
    temporary = _temporary(path, raw)
    try:
        os.link(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    return path
