"""The History tab: every image of every run, read back from what a browser sends as untrusted."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import gradio as gr
import pytest

from zimage_ui.history import HistoryEntry, HistoryStore
from zimage_ui.params import GenerationParams
from zimage_ui.presets import import_preset
from zimage_ui.providers import PROVIDERS
from zimage_ui.providers.base import KeyRing, RunResult
from zimage_ui.runner import Outcome
from zimage_ui.runs import work_root
from zimage_ui.ui.common import HISTORY_LIMIT, SessionState, remember
from zimage_ui.ui.history_tab import (
    GONE,
    browser_entries,
    build_history_tab,
    gallery_item,
    kept_file,
    team_entries,
)


@pytest.fixture(autouse=True)
def no_team_log(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ZIMAGE_HISTORY_DB", raising=False)


def outcome_of(prompt: str, seed: int, images: int, seeds: list[int] | None) -> Outcome:
    params = GenerationParams(prompt=prompt, seed=seed, num_images=images, width=256, height=256)
    prepared = PROVIDERS["diffusers-tiny"].prepare(params)
    result = RunResult(
        provider="diffusers-tiny", images=[], seed=seed, sent=prepared.sent, elapsed_s=0.5, seeds=seeds
    )
    return Outcome(provider="diffusers-tiny", prepared=prepared, result=result, elapsed_s=0.5)


def run_files(names: list[str]) -> list[Path]:
    folder = work_root() / "history-test-run"
    folder.mkdir(exist_ok=True)
    paths = [folder / name for name in names]
    for path in paths:
        path.write_bytes(b"\x89PNG not read here")
    return paths


def test_every_image_of_a_batch_is_an_entry_that_makes_that_image_again():
    paths = run_files(["a-0.png", "a-1.png"])
    entries = remember(outcome_of("a paper crane", 70, 2, [70, 71]), paths, KeyRing())
    assert [e["path"] for e in entries] == [str(p) for p in paths]
    assert [e["caption"] for e in entries] == ["seed 70 · diffusers-tiny", "seed 71 · diffusers-tiny"]
    second = import_preset(entries[1]["preset"])
    assert (second.seed, second.num_images, second.prompt) == (71, 1, "a paper crane")


def test_a_batch_whose_seeds_only_the_provider_knows_keeps_the_run_settings():
    paths = run_files(["b-0.png", "b-1.png"])
    entries = remember(outcome_of("a lamp", 9, 2, None), paths, KeyRing())
    assert entries[1]["caption"].startswith("image 2 of the batch of seed 9")
    assert import_preset(entries[1]["preset"]).num_images == 2


def test_a_sweep_cell_entry_names_its_place_on_the_axes():
    [path] = run_files(["row1-col2-c.png"])
    [entry] = remember(outcome_of("a cup", 5, 1, None), [path], KeyRing(), label="Steps: 4")
    assert entry["caption"] == "seed 5 · diffusers-tiny · Steps: 4"


def test_what_a_browser_sends_back_is_read_as_untrusted():
    good = HistoryEntry("/x.png", "seed 1", "A Paper Crane", "{}").as_dict()
    sent = [good, "text", {"path": 3}, {**good, "prompt": "x" * 30_000}, None, {**good, "preset": ["a"]}]
    assert browser_entries(sent, "") == [HistoryEntry.from_dict(good)]
    assert browser_entries(sent, "  crane ") == [HistoryEntry.from_dict(good)]  # any case, trimmed
    assert browser_entries(sent, "fox") == []
    assert browser_entries({"not": "a list"}, "") == []
    flood = [good] * (HISTORY_LIMIT * 50)  # a crafted history is read no further than a real one
    assert len(browser_entries(flood, "")) == HISTORY_LIMIT


def test_only_png_run_files_are_ever_shown(tmp_path: Path):
    [kept] = run_files(["c-0.png"])
    assert kept_file(str(kept)) == kept.resolve()
    outside = tmp_path / "elsewhere.png"
    outside.write_bytes(b"png")
    link = kept.with_name("link.png")
    link.unlink(missing_ok=True)
    link.symlink_to(outside)
    text = kept.with_name("notes.txt")
    text.write_text("x")
    for path in ("/etc/passwd", str(outside), str(link), str(text), str(kept.parent / ".." / "x.png"), "\0"):
        assert kept_file(path) is None, path


def test_an_entry_whose_file_is_gone_says_so():
    [path] = run_files(["d-0.png"])
    entry = HistoryEntry(str(path), "seed 3 · diffusers-tiny", "a fox", "{}")
    assert gallery_item(entry) == (str(path.resolve()), "seed 3 · diffusers-tiny")
    path.unlink()
    image, caption = gallery_item(entry)
    assert caption == "seed 3 · diffusers-tiny" + GONE and Path(image).is_file() and image != str(path)


def test_the_team_log_shows_every_image_of_its_runs_and_forgets_one(tmp_path: Path):
    store = HistoryStore(tmp_path / "runs.sqlite")
    paths = run_files(["e-0.png", "e-1.png"])
    store.record_outcome(outcome_of("a red kite", 11, 2, [11, 12]), [str(p) for p in paths])
    store.record_outcome(outcome_of("a blue boat", 13, 1, None), [str(run_files(["f-0.png"])[0])])
    assert [e.prompt for e in team_entries(store, "kite")] == ["a red kite", "a red kite"]
    assert store.forget_image(str(paths[0])) == 1
    assert [e.path for e in team_entries(store, "kite")] == [str(paths[1])]
    [row] = store.search("kite")
    assert row.image_paths == [str(paths[1])] and row.seed == 11  # the run stays in the log


def test_delete_takes_only_the_picked_image_out_of_the_browser_history():
    with gr.Blocks() as demo:
        state = SessionState()
        with gr.Tab("History") as tab:
            history = build_history_tab()
        presets = _NoPresets(gr.Markdown())
        history.wire(demo, tab, _NoForm(), presets, state)  # type: ignore[arg-type]
    entries = [HistoryEntry(f"/run/{n}.png", f"seed {n}", "a fox", "{}").as_dict() for n in range(3)]
    shown = history.on_show({state.history: entries, history.search: ""})
    assert len(shown[history.gallery]) == 3 and "3 images from this browser" in shown[history.note]
    left = history.on_delete(
        {history.shown: shown[history.shown], history.selected: 1, state.history: entries}
    )
    assert [e["path"] for e in left[state.history]] == ["/run/0.png", "/run/2.png"]
    nothing = history.on_show({state.history: [], history.search: ""})
    assert nothing[history.note] == "No images yet." and nothing[history.gallery] == []


class _NoForm:
    image_inputs = None

    def outputs(self) -> list:
        return []


@dataclass
class _NoPresets:
    status: gr.Markdown


def test_history_entries_are_small_json():
    paths = run_files(["g-0.png"])
    [entry] = remember(outcome_of("a fox", 1, 1, None), paths, KeyRing())
    assert len(json.dumps(entry)) < 2_000  # a browser keeps up to 200 of them
