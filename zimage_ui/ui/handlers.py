"""Thin, named event handlers: turn component values into calls on `zimage_ui` and back."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import gradio as gr

from zimage_ui.codegen import copy_as_code
from zimage_ui.errors import InvalidParams, ServerBusy
from zimage_ui.history import history_from_env
from zimage_ui.params import GenerationParams, parse_params
from zimage_ui.presets import export_preset, preset_from_params
from zimage_ui.providers import get_provider
from zimage_ui.providers.base import Capabilities, KeyRing, PreparedRequest, Progress
from zimage_ui.redaction import key_problem
from zimage_ui.runner import Outcome, generate_one, output_name
from zimage_ui.runs import RUNS, Run
from zimage_ui.sizes import CUSTOM_SIZE, family_choices, parse_size, size_choices
from zimage_ui.ui.layout import NEGATIVE_PROMPT_OFF, all_key_names, provider_choices

T = TypeVar("T")

HISTORY_LIMIT = 100  # runs kept in a browser session's history
STOPPED = "**Stopped.**"


def capabilities_text(caps: Capabilities) -> str:
    steps = f"{caps.steps_range[0]}..{caps.steps_range[1]}" if caps.steps_range else "chosen by the provider"
    parts = [f"Sizes: {caps.size_rule}", f"Steps: {steps}", f"Images per run: up to {caps.max_images}"]
    if caps.cost_reporting:
        parts.append("reports cost")
    return " · ".join(parts)


def on_provider_change(provider_id: str, guidance: float, steps: float, num_images: float) -> tuple[Any, ...]:
    """Every hint and range recomputed from the chosen provider's capabilities.

    Each update names its `info` explicitly (Gradio keeps the old hint when an update leaves it
    out), and a value outside the new range is clamped with a note saying so.
    """
    provider = get_provider(provider_id)
    caps = provider.capabilities
    if caps.steps_range:
        low, high = caps.steps_range
        value = min(max(int(steps), low), high)
        note = f"{low}..{high} on {provider_id}"
        if value != int(steps):
            note = f"set to {value}: {provider_id} takes {low}..{high} steps (was {int(steps)})"
        steps_update = gr.update(interactive=True, minimum=low, maximum=high, value=value, info=note)
    else:
        steps_update = gr.update(interactive=False, info=f"{provider_id} picks its own steps")
    status = provider.availability(KeyRing.for_visitor())
    summary = capabilities_text(caps)
    if not status.usable:
        summary = f"**{provider_id} is not usable here:** {status.reason}.\n\n{summary}"
    return (
        gr.update(visible=provider_id == "diffusers-tiny"),
        steps_update,
        gr.update(
            interactive=caps.shift,
            info="scheduler shift (Turbo: 3)" if caps.shift else f"not adjustable on {provider_id}",
        ),
        gr.update(interactive=caps.guidance, info="Turbo: 0" if caps.guidance else f"fixed by {provider_id}"),
        negative_prompt_update(provider_id, guidance),
        images_update(caps.max_images, int(num_images), provider_id),
        summary,
    )


def images_update(max_images: int, current: int = 1, provider_id: str = "this provider") -> Any:
    """A slider's maximum must stay above its minimum (1): a one-image provider locks it instead."""
    if max_images <= 1:
        return gr.update(value=1, maximum=4, interactive=False, info=f"one image per run on {provider_id}")
    value = min(max(current, 1), max_images)
    return gr.update(maximum=max_images, value=value, interactive=True, info=f"up to {max_images}")


def negative_prompt_update(provider_id: str, guidance: float) -> Any:
    """The negative prompt follows each provider's rule: the local pipeline uses it only with
    guidance above 0; a hosted API that takes one (Scenario) applies it its own way."""
    caps = get_provider(provider_id).capabilities
    if not caps.negative_prompt:
        return gr.update(interactive=False, info=f"{provider_id} takes no negative prompt")
    if not caps.guidance:
        return gr.update(interactive=True, info=f"sent to {provider_id}, which applies it its own way")
    if not guidance:
        return gr.update(interactive=False, info=NEGATIVE_PROMPT_OFF)
    return gr.update(interactive=True, info="used because Guidance is above 0")


def on_family_change(family: str, width: float | None, height: float | None) -> tuple[Any, Any, Any]:
    """The sizes of a family; the current size stays when it is one of them, else the first."""
    sizes = family_choices(family)
    current = f"{int(width or 0)}x{int(height or 0)}"
    if current in {size for _label, size in sizes}:
        return gr.update(choices=size_choices(family), value=current), gr.skip(), gr.skip()
    new_width, new_height = parse_size(sizes[0][1])
    return gr.update(choices=size_choices(family), value=sizes[0][1]), new_width, new_height


def on_size_change(size: str | None) -> tuple[Any, Any]:
    if not size or size == CUSTOM_SIZE:
        return gr.update(), gr.update()
    width, height = parse_size(size)
    return width, height


def on_custom_size(width: float | None, height: float | None, family: str) -> Any:
    """Width and height, however they were set (typed, a preset, a link), pick the matching
    size of the family, or "Custom": the Size box never shows a size that is not in use."""
    value = f"{int(width or 0)}x{int(height or 0)}"
    known = {size for _label, size in family_choices(family)}
    return gr.update(value=value if value in known else CUSTOM_SIZE)


def on_random_toggle(random_seed: bool) -> Any:
    if random_seed:
        return gr.update(interactive=False, value="")
    return gr.update(interactive=True)


def on_reuse_seed(last_seed: int | None) -> tuple[Any, Any]:
    if last_seed is None:
        gr.Info("No image yet: generate once, then reuse its seed.")
        return gr.skip(), gr.skip()
    return gr.update(value=str(last_seed), interactive=True), False


def keys_changed(dropdowns: int) -> Callable[..., list[Any]]:
    """A handler that keeps the session's keys and relabels `dropdowns` provider dropdowns."""

    def on_keys_change(*values: str) -> list[Any]:
        keys: dict[str, str] = {}
        for name, value in zip(all_key_names(), values, strict=True):
            if not value:
                continue
            problem = key_problem(value)
            if problem:  # never kept, never echoed: the message names the field only
                gr.Warning(f"{name} is malformed: {problem}. Paste the key again.")
                continue
            keys[name] = value
        choices = provider_choices(KeyRing.for_visitor(keys))
        return [keys, *(gr.update(choices=choices) for _ in range(dropdowns))]

    return on_keys_change


def read_params(
    prompt: str,
    negative_prompt: str,
    width: float | None,
    height: float | None,
    seed: str | None,
    random_seed: bool,
    steps: float,
    guidance: float,
    shift: float,
    num_images: float,
) -> GenerationParams:
    """Form values -> validated params; raises gr.Error naming each wrong field."""
    try:
        return parse_params(
            prompt=prompt or "",
            negative_prompt=negative_prompt or "",
            width=_whole(width, "width"),
            height=_whole(height, "height"),
            seed=None if random_seed else _seed_text(seed),
            num_inference_steps=int(steps),
            guidance_scale=float(guidance),
            shift=float(shift),
            num_images=int(num_images),
        )
    except InvalidParams as exc:
        raise user_error(f"Check the form: {exc}", title="Invalid settings") from None


def _whole(value: float | None, name: str) -> int:
    if value is None:
        raise InvalidParams({name: "empty: enter a number"})
    return int(value)


def _seed_text(value: str | float | None) -> str:
    text = str(value if value is not None else "").strip()
    if not text:
        raise InvalidParams({"seed": "empty: enter a seed or tick Random seed"})
    return text


def outcome_status(outcome: Outcome) -> str:
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


def user_error(message: str, title: str = "Error") -> gr.Error:
    """An error the person can act on: shown on the page, one log line, never a traceback."""
    return gr.Error(message, title=title, print_exception=False)


def session_of(request: gr.Request | None) -> str | None:
    return request.session_hash if request else None


@contextmanager
def owned_run(kind: str, request: gr.Request | None) -> Iterator[Run]:
    """A run of `kind` for this browser session: its own id, Stop and folder, for the block's life."""
    try:
        with RUNS.start(kind, session_of(request)) as run:
            yield run
    except ServerBusy as exc:
        raise user_error(f"{exc}.", title="Server busy") from None


async def save_run_files(run: Run, outcome: Outcome, prefix: str = "") -> list[Path]:
    """Write an outcome's PNGs into the run's folder (off the event loop)."""
    return await asyncio.to_thread(
        lambda: [run.write(output_name(outcome, i, prefix), data) for i, data in enumerate(outcome.pngs)]
    )


def stop_handler(kind: str) -> Callable[[gr.Request], str]:
    """Stop for one tab: it reaches this session's runs of that tab, nothing else."""

    def stop(request: gr.Request) -> str:
        if not RUNS.stop(kind, session_of(request)):
            return "Nothing is running."
        return "Stopping…"

    stop.__name__ = f"stop_{kind}"
    return stop


def progress_reporter(progress: gr.Progress, label: str) -> Callable[[Progress], None]:
    """Our provider progress as Gradio progress: a step count where known, else the message."""

    def report(update: Progress) -> None:
        desc = f"{label}: {update.message}"
        if update.step is not None and update.total:
            progress((update.step, update.total), desc=desc, unit="steps")
        else:  # the page shows a message only beside a bar: an unknown fraction shows as 0
            progress(update.fraction or 0.0, desc=desc)

    return report


async def follow(task: asyncio.Task[Any], updates: asyncio.Queue[T]) -> AsyncIterator[T]:
    """Each progress update as it arrives, until the task is done."""
    while not task.done():
        try:
            yield await asyncio.wait_for(updates.get(), timeout=0.2)
        except asyncio.TimeoutError:
            continue


def remember(
    outcome: Outcome, paths: list[Path], keys: KeyRing, history: list[dict[str, str]] | None
) -> list[dict[str, str]]:
    """Add a finished run to the session's history (and the team run log, when configured)."""
    store = history_from_env()
    if store is not None:
        store.record_outcome(outcome, [str(p) for p in paths], secrets=keys.secrets())
    if not paths or outcome.prepared is None:
        return history or []
    preset = preset_from_params(outcome.prepared.params, outcome.provider)
    entry = {
        "path": str(paths[0]),
        "caption": f"{outcome.provider} · seed {outcome.seed}",
        "preset": export_preset(preset),
    }
    return [entry, *(history or [])][:HISTORY_LIMIT]


async def generate(
    provider_id: str,
    prompt: str,
    negative_prompt: str,
    width: float | None,
    height: float | None,
    seed: str | None,
    random_seed: bool,
    steps: float,
    guidance: float,
    shift: float,
    num_images: float,
    session_keys: dict[str, str] | None,
    history: list[dict[str, str]] | None,
    request: gr.Request,
    progress: gr.Progress = gr.Progress(),  # noqa: B008 - Gradio's way of asking for progress
) -> AsyncIterator[tuple[Any, ...]]:
    """Generate on one provider: progress (steps, place in line) on Gradio's progress channel,
    then the images and the seed used, in one update.

    Outputs: gallery, seed used, status, what was sent, then (not in the API) the last seed,
    the prepared request for "copy as code", and the session history. Progress goes through
    `gr.Progress`, which API clients see too, not through intermediate yields: each yield
    makes Gradio rebuild every skipped output component.
    """
    params = read_params(
        prompt, negative_prompt, width, height, seed, random_seed, steps, guidance, shift, num_images
    ).with_concrete_seed()
    keys = KeyRing.for_visitor(session_keys)
    skip = gr.skip()
    with owned_run("generate", request) as run:
        outcome = await generate_one(
            provider_id,
            params,
            keys=keys,
            progress=progress_reporter(progress, f"{provider_id} · seed {params.seed}"),
            cancel=run.token,
            hosted_gate=run.hosted_gate,
        )
        paths = await save_run_files(run, outcome)
    sent = outcome.prepared.display() if outcome.prepared else None
    history = remember(outcome, paths, keys, history)
    if outcome.stopped:
        yield skip, str(params.seed), f"{STOPPED} {outcome.error}", sent, skip, outcome.prepared, history
        return
    if not outcome.ok:
        yield skip, str(params.seed), outcome_status(outcome), sent, skip, outcome.prepared, history
        raise user_error(outcome.error or "failed", title=f"{provider_id} failed")
    yield (
        gallery_items(outcome, paths),
        str(outcome.seed),
        outcome_status(outcome),
        sent,
        outcome.seed,
        outcome.prepared,
        history,
    )


def gallery_items(outcome: Outcome, paths: list[Path]) -> list[tuple[str, str]]:
    """Each image with the seed it can be made again from (or the batch it came from)."""
    result = outcome.result
    items = []
    for index, path in enumerate(paths):
        seed = result.image_seed(index) if result else None
        items.append((str(path), f"seed {seed}" if seed is not None else f"image {index + 1} of the batch"))
    return items


def show_code(prepared: PreparedRequest | None, session_keys: dict[str, str] | None) -> tuple[str, str]:
    """ "Copy as code": the request as cURL and as Python, keys only as variable names."""
    if prepared is None:
        return "", ""
    return copy_as_code(prepared, secrets=KeyRing(session_keys).secrets())
