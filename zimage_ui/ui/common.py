"""Plumbing every tab shares: errors shown on the page, run ownership, progress, files, history."""

from __future__ import annotations

import asyncio
import secrets as token_source
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TypeVar

import gradio as gr
from gradio.context import LocalContext

from zimage_ui import env
from zimage_ui.errors import PresetError, ServerBusy
from zimage_ui.history import HistoryEntry, history_from_env
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
HISTORY_LIMIT = 200  # images kept in a browser's history, the newest
RUNS_LIMIT = 1000  # runs a browser keeps for the providers' view
VOTES_LIMIT = 5000  # votes a browser keeps (a public Space: each browser its own leaderboard)
# What a run or a vote adds (`Fresh`) joins what the browser keeps in the browser itself: the
# lists reach the server only when a tab shows them. Each item once (the change can be heard
# twice), the newest first.
MERGE_FRESH_JS = f"""(fresh, images, runs, votes) => {{
    const merged = (added, kept, key, limit) => {{
        const seen = new Set();
        return [...(added || []), ...(kept || [])]
            .filter((item) => item && !seen.has(item[key]) && seen.add(item[key]))
            .slice(0, limit);
    }};
    fresh = fresh || {{}};
    return [
        merged(fresh.images, images, "path", {HISTORY_LIMIT}),
        merged(fresh.runs, runs, "id", {RUNS_LIMIT}),
        merged(fresh.votes, votes, "id", {VOTES_LIMIT}),
    ];
}}"""
STOPPED = "**Stopped.**"


def upload_button(label: str, **options: Any) -> gr.UploadButton:
    """`gr.UploadButton` with its API schema worked out once. Gradio's other components cache
    theirs; UploadButton (6.31) rebuilds it with pydantic on each call, and every new session asks
    every block, three times: the page's few buttons were a third of a session's build time."""
    button = gr.UploadButton(label, **options)
    schema = button.api_info()
    button.api_info = lambda: schema  # type: ignore[method-assign]  # as Component.api_info caches
    return button


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


INPUT_CHIP = "Input image in use · Clear"


def run_buttons(label: str, run_id: str, stop_id: str) -> tuple[gr.Button, gr.Button, gr.Button]:
    """A tab's Run button; its Stop, which stays small and greyed until a run is in flight; and a
    chip shown while an input image is set (the run starts from it), which clears it."""
    run = gr.Button(label, variant="primary", scale=1, min_width=120, elem_id=run_id)
    stop = gr.Button("Stop", variant="secondary", interactive=False, scale=0, min_width=80, elem_id=stop_id)
    chip = gr.Button(
        INPUT_CHIP, size="sm", visible=False, scale=0, min_width=160, elem_classes=["input-chip"]
    )
    return run, stop, chip


def buttons_busy(run: gr.Button, stop: gr.Button, busy: bool) -> dict[Any, Any]:
    """Run greyed and Stop live while a run is in flight; the other way round once it ends."""
    return {
        run: gr.update(interactive=not busy),
        stop: gr.update(interactive=busy, variant="stop" if busy else "secondary"),
    }


def on_run(
    run: gr.Button, stop: gr.Button, fn: Callable[..., Any], inputs: Any, outputs: Any, **kwargs: Any
) -> Any:
    """`run.click(fn, ...)` with the buttons telling the truth: Run can't be clicked twice (a
    double click queued two runs) and Stop is live only while the run is. The buttons come back
    however the run ends (`.then` follows a failure too). Returns the last step, to chain on."""
    return (
        run.click(lambda: buttons_busy(run, stop, True), None, [run, stop], **PRIVATE)
        .then(fn, inputs, outputs, **kwargs)
        .then(lambda: buttons_busy(run, stop, False), None, [run, stop], **PRIVATE)
    )


async def save_run_files(run: Run, outcome: Outcome, prefix: str = "") -> list[Path]:
    """Write an outcome's PNGs into the run's folder (off the event loop)."""
    return await asyncio.to_thread(
        lambda: [run.write(output_name(outcome, i, prefix), data) for i, data in enumerate(outcome.pngs)]
    )


def run_label(provider_id: str, params: GenerationParams) -> str:
    """What a run's progress is headed with: its seed, or for a batch where its seeds start (each
    image's own seed is in its step messages where the provider says it)."""
    if params.num_images == 1:
        return f"{provider_id} · seed {params.seed}"
    return f"{provider_id} · {params.num_images} images from seed {params.seed}"


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


def browser_secret() -> str:
    """From ZIMAGE_BROWSER_SECRET, else one made once and kept in the user data folder, so
    what the browser keeps (presets, history) survives a restart of the app."""
    configured = env.get("ZIMAGE_BROWSER_SECRET").get_secret_value()
    if configured:
        return configured
    from platformdirs import user_data_dir

    path = Path(user_data_dir("zimage-ui", appauthor=False)) / "browser-secret"
    try:
        if path.exists():
            return path.read_text().strip()
        path.parent.mkdir(parents=True, exist_ok=True)
        value = token_source.token_urlsafe(32)
        path.write_text(value)
        path.chmod(0o600)
        return value
    except OSError:
        return token_source.token_urlsafe(32)  # read-only disk: kept until a restart


def kept_in_browser(name: str) -> gr.BrowserState:
    """A list this browser keeps under the page's storage key (`name`: history, runs, votes)."""
    key = f"{env.get('ZIMAGE_BROWSER_STORAGE_KEY')}:{name}"
    return gr.BrowserState([], storage_key=key, secret=browser_secret())


@dataclass
class SessionState:
    """What one browser session keeps between events, and what the browser keeps across reloads
    (its history); never part of the API."""

    keys: gr.State = field(default_factory=lambda: gr.State({}))  # keys typed on the page
    last_seed: gr.State = field(default_factory=lambda: gr.State(None))
    # Every image this browser made (`HistoryEntry`s, newest first), kept in the browser: it
    # survives a reload and a restart (whose run files may be gone by then: the History says so).
    history: gr.BrowserState = field(default_factory=lambda: kept_in_browser("history"))
    # Every run this browser made (`run_record`s), for the providers' view where there is no team log.
    runs: gr.BrowserState = field(default_factory=lambda: kept_in_browser("runs"))
    # This browser's votes (`votes.VoteRecord`s) where there is no team database.
    votes: gr.BrowserState = field(default_factory=lambda: kept_in_browser("votes"))
    # What a run or a vote just added (`Fresh.value`), on its way into the lists (hidden).
    fresh: gr.JSON = field(default_factory=lambda: gr.JSON(visible="hidden"))

    def keep_fresh(self) -> None:
        """What each run or vote adds joins the browser's lists in the browser (no round trip)."""
        kept = [self.history, self.runs, self.votes]
        self.fresh.change(None, [self.fresh, *kept], kept, js=MERGE_FRESH_JS, **PRIVATE)


@dataclass
class Fresh:
    """What a run (or a vote) adds to what the browser keeps: images, runs and votes."""

    images: list[dict[str, str]] = field(default_factory=list)
    runs: list[dict[str, Any]] = field(default_factory=list)
    votes: list[dict[str, Any]] = field(default_factory=list)

    def add(self, outcome: Outcome, paths: list[Path], keys: KeyRing, label: str = "") -> None:
        """A finished run: its images and its record (and the run in the team log, if any)."""
        self.images += remember(outcome, paths, keys, label)
        self.runs.append(run_record(outcome, len(paths)))

    def value(self) -> dict[str, list[Any]]:
        return {"images": self.images, "runs": self.runs, "votes": self.votes}


def run_record(outcome: Outcome, images: int) -> dict[str, Any]:
    """One run as the providers' view counts it: who, when, how long, how it ended, what it cost.
    Nothing in it names the prompt or a key."""
    cost = outcome.result.cost if outcome.result else None
    return {
        "id": uuid.uuid4().hex,
        "tstamp": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "provider": outcome.provider,
        "ok": outcome.ok,
        "stopped": outcome.stopped,
        "failure": None if outcome.ok or outcome.stopped else (outcome.failure or "unexpected error"),
        "elapsed_s": round(outcome.elapsed_s, 3),
        "images": images,
        "cost_usd": cost.amount if cost and cost.unit == "USD" else None,
    }


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
    enhanced = outcome.prepared.params.enhanced
    if enhanced is not None:  # what was drawn is not what the person typed: say so, with the rewrite
        drawn = outcome.prepared.params.prompt
        notes += f"\n- drew {enhanced.model}'s rewrite of your prompt: “{drawn[:400]}”"
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


def remember(outcome: Outcome, paths: list[Path], keys: KeyRing, label: str = "") -> list[dict[str, str]]:
    """A finished run's images as history entries, one per image with its own seed (`label`: a
    sweep cell's place on the axes); the run goes into the team run log too, when there is one."""
    store = history_from_env()
    if store is not None:
        store.record_outcome(outcome, [str(p) for p in paths], secrets=keys.secrets())
    if not paths or outcome.prepared is None:
        return []
    params, result = outcome.prepared.params, outcome.result
    run_preset = export_preset(history_preset(params, outcome.provider))
    entries = []
    for index, path in enumerate(paths):
        seed = result.image_seed(index) if result else None
        if seed is None:  # only the provider knows it: the entry makes the whole batch again
            made, preset = f"image {index + 1} of the batch of seed {outcome.seed}", run_preset
        elif len(paths) == 1:
            made, preset = f"seed {seed}", run_preset
        else:  # this image alone, again
            made = f"seed {seed}"
            preset = export_preset(
                history_preset(params.model_copy(update={"seed": seed, "num_images": 1}), outcome.provider)
            )
        caption = " · ".join(part for part in (made, outcome.provider, label) if part)
        entries.append(HistoryEntry(str(path), caption, params.prompt, preset).as_dict())
    return entries
