"""Files survive a `kill -9` mid-save, and two app processes on one machine keep each other's files."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.serving import ROOT
from zimage_ui.history import HistoryStore
from zimage_ui.params import GenerationParams

WRITER = """
import sys, time
from pathlib import Path
from zimage_ui.files import write_atomic
from zimage_ui.history import HistoryStore
from zimage_ui.params import GenerationParams
from zimage_ui.preset_sharing import save_team_preset
from zimage_ui.presets import Preset

folder = Path(sys.argv[1])
store = HistoryStore(folder / "runs.sqlite")
params = GenerationParams(prompt="a lighthouse " * 200, seed=1)
number = 0
while True:
    number += 1
    save_team_preset(folder / "presets", Preset(prompt="a lighthouse " * 300, provider="diffusers-tiny",
                                                name=f"p{number}"))
    write_atomic(folder / "copy.png", bytes([number % 256]) * 3_000_000)
    store.record(provider="diffusers-tiny", params=params, seed=number, elapsed_s=0.1)
    if number == 1:
        print("ready", flush=True)  # one of each is saved: the kill lands in later saves
"""


@pytest.mark.parametrize("delay_s", [0.3, 0.7, 1.1])
def test_a_kill_during_saves_leaves_every_file_readable(tmp_path: Path, delay_s: float) -> None:
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(tmp_path)], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    assert writer.stdout is not None and writer.stdout.readline().strip() == "ready"
    time.sleep(delay_s)
    os.kill(writer.pid, signal.SIGKILL)
    writer.wait(10)
    presets = sorted((tmp_path / "presets").glob("*.json"))
    assert presets, "some presets were saved before the kill"
    for path in presets:
        assert json.loads(path.read_text())["prompt"].startswith("a lighthouse")
    copy = (tmp_path / "copy.png").read_bytes()
    assert len(copy) == 3_000_000 and len(set(copy)) == 1, "the copy is one whole write"
    rows = HistoryStore(tmp_path / "runs.sqlite").search(limit=1000)
    assert rows and all(row.provider == "diffusers-tiny" for row in rows)
    with sqlite3.connect(tmp_path / "runs.sqlite") as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


HOLDER = """
import sys, time
from zimage_ui.runs import Run
run = Run(kind="generate", session="a")
path = run.write("image.png", b"png")
print(path, flush=True)
time.sleep(60)
"""


def test_two_processes_keep_each_others_young_files(monkeypatch: pytest.MonkeyPatch) -> None:
    """Process A keeps a 20-minute-old image; process B, with a 10-minute cache TTL, prunes only
    its own runs while A is alive, and A's folder only once A has ended."""
    from zimage_ui.runs import prune, work_root

    holder = subprocess.Popen([sys.executable, "-c", HOLDER], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None
        theirs = Path(holder.stdout.readline().strip())
        twenty_minutes_ago = time.time() - 1200
        for path in (theirs, theirs.parent, theirs.parent.parent):
            os.utime(path, (twenty_minutes_ago, twenty_minutes_ago))
        assert theirs.parent.parent != work_root(), "each process has a run folder of its own"
        mine = work_root() / "old-run"
        mine.mkdir()
        os.utime(mine, (twenty_minutes_ago, twenty_minutes_ago))
        monkeypatch.setenv("ZIMAGE_CACHE_TTL_S", "600")
        prune(wait=True)
        assert theirs.exists(), "another live process's image was pruned"
        assert not mine.exists(), "this process's own old run is pruned"
    finally:
        holder.kill()
        holder.wait(10)
    prune(wait=True)
    assert not theirs.parent.parent.exists(), "an ended process's old folder is pruned"


def test_history_is_shared_by_two_stores_in_wal_mode(tmp_path: Path) -> None:
    first, second = HistoryStore(tmp_path / "runs.sqlite"), HistoryStore(tmp_path / "runs.sqlite")
    first.record(provider="a", params=GenerationParams(prompt="one", seed=1), seed=1, elapsed_s=1)
    second.record(provider="b", params=GenerationParams(prompt="two", seed=2), seed=2, elapsed_s=1)
    assert {row.provider for row in first.search()} == {"a", "b"}
