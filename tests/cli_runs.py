"""Run `python -m zimage_ui` for the tests.

`cli` calls the command's `main` in this process, where torch, diffusers and the tiny model are
already loaded, so a run costs what the command does and not a fresh interpreter's imports.
`cli_process` starts a real process, for what only a fresh process shows: determinism across
processes, the exact text on stderr (a stray warning), the entry point itself.
"""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
from dataclasses import dataclass
from unittest import mock

from zimage_ui.cli import main


@dataclass(frozen=True)
class CliRun:
    """What a command returned and printed, read like `subprocess.CompletedProcess`."""

    returncode: int
    stdout: str
    stderr: str


def cli(*args: str, env: dict[str, str] | None = None) -> CliRun:
    out, err = io.StringIO(), io.StringIO()
    # with `env`: exactly those variables, as a subprocess given `env=` would see
    environment = mock.patch.dict(os.environ, env or {}, clear=env is not None)
    with environment, contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(list(args))
        except SystemExit as exc:  # argparse: --help, --version, a bad flag
            code = exc.code if isinstance(exc.code, int) else int(exc.code is not None)
    return CliRun(code, out.getvalue(), err.getvalue())


def cli_process(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "zimage_ui", *args], capture_output=True, text=True, timeout=300, env=env
    )
