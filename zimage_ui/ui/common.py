"""Plumbing every tab shares: errors shown on the page, run ownership, progress, files, history."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import gradio as gr
from gradio.context import LocalContext

from zimage_ui.errors import PresetError, ServerBusy
from zimage_ui.history import history_from_env
from zimage_ui.params import GenerationParams
from zimage_ui.presets import Preset, export_preset, portable_inputs, preset_from_params
from zimage_ui.providers.base import KeyRing, Progress
from zimage_ui.runner import Outcome, output_name
from zimage_ui.runs import RUNS, Run
from zimage_ui.ui.departures import watch_departures

T = TypeVar("T")

# Page-only events: answered at once (no queue) and kept out of the API.
PRIVATE: dict[str, Any] = {"queue": False, "api_visibility": "private"}
# Page-only events that may say something in a toast (gr.Info / gr.Warning): only a queued
# event's messages reach the browser.
PRIVATE_SAYING: dict[str, Any] = {"api_visibility": "private", "concurrency_limit": None}
HISTORY_LIMIT = 100  # runs kept in a browser session's history
STOPPED = "**Stopped.**"


def user_error(message: str, title: str = "Error") -> gr.Error:
    """An error the person can act on: shown on the page, one log line, never a traceback."""
    return gr.Error(message, title=title, print_exception=False)


def problem_text(exc: gr.Error) -> str:
    """A refused form as a status line, for events whose error toast would not reach the page."""
    return f"**Nothing done:** {exc.message}"


def session_of(request: gr.Request | None) -> str | None:
    return request.session_hash if request else None


@contextmanager
def owned_run(kind: str, request: gr.Request | None) -> Iterator[Run]:
    """A run of `kind` for this browser session: its own id, Stop and folder, for the block's life;
    stopped if the session's client goes away (`departures`)."""
    watch_departures(LocalContext.blocks.get(None))
    try:
        with RUNS.start(kind, session_of(request)) as run:
            yield run
    except ServerBusy as exc:
        raise user_error(f"{exc}.", title="Server busy") from None


def stop_handler(kind: str) -> Callable[[gr.Request], str]:
    """Stop for one tab: it reaches this session's runs of that tab, nothing else."""

    def stop(request: gr.Request) -> str:
        if not RUNS.stop(kind, session_of(request)):
            return "Nothing is running."
        return "Stopping…"

    stop.__name__ = f"stop_{kind}"
    return stop


async def save_run_files(run: Run, outcome: Outcome, prefix: str = "") -> list[Path]:
    """Write an outcome's PNGs into the run's folder (off the event loop)."""
    return await asyncio.to_thread(
        lambda: [run.write(output_name(outcome, i, prefix), data) for i, data in enumerate(outcome.pngs)]
    )


def progress_reporter(progress: gr.Progress, label: str) -> Callable[[Progress], None]:
    """Our provider progress as Gradio progress: a step count and the time left where steps are
    known, else the message (place in line, decoding). Gradio's progress reaches the page (a
    bar) and API clients alike."""
    first: tuple[float, int] | None = None  # when, and at which step, counting started

    def report(update: Progress) -> None:
        nonlocal first
        desc = f"{label}: {update.message}"
        if update.step is not None and update.total:
            now = time.monotonic()
            if first is None or update.step < first[1]:
                first = (now, update.step)
            elif update.step > first[1]:
                per_step = (now - first[0]) / (update.step - first[1])
                desc += f" · about {per_step * (update.total - update.step):.0f} s left"
            progress((update.step, update.total), desc=desc, unit="steps")
        else:  # the page shows a message only beside a bar: an unknown fraction shows as 0
            progress(update.fraction or 0.0, desc=desc)

    return report


async def follow(task: asyncio.Task[Any], updates: asyncio.Queue[T]) -> AsyncIterator[T]:
    """Each progress update as it arrives, until the task is done: the one streaming loop."""
    while not task.done():
        try:
            yield await asyncio.wait_for(updates.get(), timeout=0.2)
        except asyncio.TimeoutError:
            continue


async def follow_latest(
    task: asyncio.Task[Any], updates: asyncio.Queue[T], every_s: float
) -> AsyncIterator[T]:
    """Like `follow`, but at most one update every `every_s` seconds: the newest one waiting."""
    async for update in follow(task, updates):
        while not updates.empty():
            update = updates.get_nowait()
        yield update
        await asyncio.sleep(every_s)


@dataclass
class SessionState:
    """What one browser session keeps between events; never part of the API."""

    keys: gr.State = field(default_factory=lambda: gr.State({}))  # keys typed on the page
    history: gr.State = field(default_factory=lambda: gr.State([]))  # this session's runs
    last_seed: gr.State = field(default_factory=lambda: gr.State(None))


def outcome_status(outcome: Outcome) -> str:
    """One status line: what was made and how it went, or why it failed, or that it was stopped."""
    if outcome.stopped:
        return f"{STOPPED} {outcome.error}"
    if not outcome.ok or outcome.result is None or outcome.prepared is None:
        return f"**Failed.** {outcome.error}"
    result, sent = outcome.result, outcome.prepared.sent
    facts = [
        f"**Done** in {outcome.elapsed_s:.2f} s",
        f"{sent.width}x{sent.height}",
        f"steps {sent.steps_label}",
        f"seed {sent.seed}",
    ]
    if result.queue_s is not None:
        facts.append(f"queue {result.queue_s:.2f} s")
    if result.run_s is not None:
        facts.append(f"run {result.run_s:.2f} s")
    if result.cost is not None:
        facts.append(f"cost {result.cost}")
    notes = "".join(f"\n- {note}" for note in outcome.prepared.notes)
    return " · ".join(facts) + notes


def shareable_params(params: GenerationParams) -> GenerationParams:
    """The params without what names a file on this server (uploads, the painted mask, uploaded
    LoRAs): what a preset, a link or the history may carry. URLs and model ids stay."""
    inputs, _left_out = portable_inputs(params.inputs)
    return params.model_copy(update={"inputs": inputs})


def history_preset(params: GenerationParams, provider: str) -> Preset:
    """The run as a preset for the history: its shareable inputs where presets take them, else
    its settings alone (a history entry must never fail a run)."""
    try:
        return preset_from_params(shareable_params(params), provider)
    except PresetError:
        return preset_from_params(params.model_copy(update={"inputs": None}), provider)


def remember(
    outcome: Outcome, paths: list[Path], keys: KeyRing, history: list[dict[str, str]] | None
) -> list[dict[str, str]]:
    """Add a finished run to the session's history (and the team run log, when configured)."""
    store = history_from_env()
    if store is not None:
        store.record_outcome(outcome, [str(p) for p in paths], secrets=keys.secrets())
    if not paths or outcome.prepared is None:
        return history or []
    preset = history_preset(outcome.prepared.params, outcome.provider)
    entry = {
        "path": str(paths[0]),
        "caption": f"{outcome.provider} · seed {outcome.seed}",
        "preset": export_preset(preset),
    }
    return [entry, *(history or [])][:HISTORY_LIMIT]
