"""The Compare tab: 2-6 sides on one prompt and seed, an A/B slider, and blind votes."""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr

from zimage_ui.compare import MAX_SIDES, MIN_SIDES, Side, params_for_sides, run_comparison
from zimage_ui.errors import InvalidParams
from zimage_ui.providers.base import KeyRing, Progress
from zimage_ui.runner import Outcome
from zimage_ui.runs import Run
from zimage_ui.sizes import parse_size
from zimage_ui.ui.handlers import (
    STOPPED,
    follow,
    outcome_status,
    owned_run,
    read_params,
    remember,
    save_run_files,
    user_error,
)
from zimage_ui.ui.layout import provider_choices
from zimage_ui.votes import VERDICT_LABELS, Vote, leaderboard, read_votes, record_vote

BLIND_NAMES = ("Side A", "Side B")


@dataclass
class SideControls:
    row: gr.Row
    provider: gr.Dropdown
    steps: gr.Textbox
    shift: gr.Textbox
    size: gr.Textbox


@dataclass
class SideResult:
    column: gr.Column
    title: gr.Markdown
    image: gr.Image
    status: gr.Markdown
    sent: gr.JSON


@dataclass
class CompareTab:
    count: gr.Slider
    blind: gr.Checkbox
    sides: list[SideControls]
    run: gr.Button
    stop: gr.Button
    summary: gr.Markdown
    results: list[SideResult]
    left: gr.Dropdown
    right: gr.Dropdown
    slider: gr.ImageSlider
    vote_row: gr.Row
    vote_buttons: dict[str, gr.Button]
    leaderboard: gr.Dataframe
    images: gr.State
    blind_state: gr.State


def build_compare_tab(default_provider: str) -> CompareTab:
    gr.Markdown(
        "Every side runs at once on the prompt, seed and settings on the left; a blank override "
        "keeps the shared value. The whole comparison takes about as long as its slowest side."
    )
    with gr.Row():
        count = gr.Slider(
            label="Sides", minimum=MIN_SIDES, maximum=MAX_SIDES, step=1, value=2, elem_id="sides"
        )
        blind = gr.Checkbox(label="Blind mode: hide providers until I vote (2 sides)", elem_id="blind")
    sides: list[SideControls] = []
    for index in range(MAX_SIDES):
        with gr.Row(visible=index < 2, equal_height=True) as row:
            provider = gr.Dropdown(
                label=f"Side {index + 1} provider",
                choices=provider_choices(KeyRing.for_visitor()),
                value=default_provider,
                scale=3,
                elem_id=f"side-{index + 1}-provider",
            )
            steps = gr.Textbox(
                label="Steps", placeholder="shared", scale=1, max_lines=1, elem_id=f"side-{index + 1}-steps"
            )
            shift = gr.Textbox(
                label="Shift", placeholder="shared", scale=1, max_lines=1, elem_id=f"side-{index + 1}-shift"
            )
            size = gr.Textbox(
                label="Size",
                placeholder="shared, or WxH",
                scale=1,
                max_lines=1,
                elem_id=f"side-{index + 1}-size",
            )
        sides.append(SideControls(row, provider, steps, shift, size))
    with gr.Row():
        run = gr.Button("Run comparison", variant="primary", elem_id="compare-run")
        stop = gr.Button("Stop", variant="stop", elem_id="compare-stop")
    summary = gr.Markdown(elem_id="compare-summary")
    results: list[SideResult] = []
    with gr.Row():
        for index in range(MAX_SIDES):
            with gr.Column(visible=index < 2, min_width=220) as column:
                title = gr.Markdown(f"**Side {index + 1}**")
                image = gr.Image(
                    label=f"Side {index + 1}",
                    type="filepath",
                    format="png",
                    interactive=False,
                    height=300,
                    elem_id=f"side-{index + 1}-image",
                )
                status = gr.Markdown(elem_id=f"side-{index + 1}-status")
                with gr.Accordion("What was sent", open=False):
                    sent = gr.JSON(show_label=False)
            results.append(SideResult(column, title, image, status, sent))
    with gr.Accordion("A/B slider", open=True):
        with gr.Row():
            left = gr.Dropdown(label="Left", choices=["1", "2"], value="1", elem_id="slider-left")
            right = gr.Dropdown(label="Right", choices=["1", "2"], value="2", elem_id="slider-right")
        slider = gr.ImageSlider(label="Drag to compare", type="filepath", format="png", elem_id="ab-slider")
    with gr.Row(visible=False) as vote_row:
        vote_buttons = {
            verdict: gr.Button(label, elem_id=f"vote-{verdict}") for verdict, label in VERDICT_LABELS.items()
        }
    with gr.Accordion("Blind vote leaderboard", open=False):
        board = gr.Dataframe(value=leaderboard_rows(), interactive=False, elem_id="leaderboard")
    return CompareTab(
        count,
        blind,
        sides,
        run,
        stop,
        summary,
        results,
        left,
        right,
        slider,
        vote_row,
        vote_buttons,
        board,
        gr.State([]),
        gr.State(None),
    )


def leaderboard_rows() -> Any:
    from zimage_ui.votes import LEADERBOARD_COLUMNS

    rows = leaderboard(read_votes())
    return {"headers": LEADERBOARD_COLUMNS, "data": rows or [["no votes yet", 0, 0, 0, 0, "-"]]}


def on_count_change(count: float) -> list[Any]:
    """Show `count` sides; blind mode compares exactly 2, so it is off (and says why) otherwise."""
    n = int(count)
    updates = [gr.update(visible=index < n) for index in range(MAX_SIDES)]
    blind = (
        gr.update(interactive=True, info="names stay hidden until you vote")
        if n == 2
        else gr.update(value=False, interactive=False, info="blind mode compares exactly 2 sides")
    )
    return [*updates, *updates, blind]  # the side controls, the result columns, blind mode


def read_sides(count: float, values: tuple[Any, ...]) -> list[Side]:
    """Side controls (provider, steps, shift, size per side) -> sides; blank overrides stay shared."""
    sides, problems = [], {}
    for index in range(int(count)):
        provider, steps, shift, size = (str(v or "").strip() for v in values[index * 4 : index * 4 + 4])
        fields: dict[str, Any] = {"provider": provider}
        for name, text, kind in (("num_inference_steps", steps, int), ("shift", shift, float)):
            if text:
                try:
                    fields[name] = kind(text)
                except ValueError:
                    problems[f"side {index + 1} {name}"] = f"{text!r} is not a number"
        if size:
            try:
                fields["width"], fields["height"] = parse_size(size.lower())
            except ValueError:
                problems[f"side {index + 1} size"] = f"{size!r} is not WxH, e.g. 512x512"
        if not problems:
            sides.append(Side(**fields))
    if problems:
        raise user_error(f"Check the sides: {InvalidParams(problems)}", title="Invalid comparison")
    return sides


async def run_compare(request: gr.Request, *values: Any) -> AsyncIterator[list[Any]]:
    """Inputs: shared form values (10), session keys, side count, blind, 4 values per side, history."""
    shared, session_keys, count, blind = values[:10], values[10], values[11], values[12]
    sides, history = read_sides(count, values[13:-1]), values[-1]
    n = len(sides)
    if blind and n != 2:
        raise user_error("Blind mode compares exactly 2 sides: set Sides to 2.", title="Invalid comparison")
    params = read_params(*shared).with_concrete_seed()
    try:
        params_for_sides(sides, params)
    except InvalidParams as exc:
        raise user_error(f"Check the sides: {exc}", title="Invalid comparison") from None
    order = list(range(n))
    if blind:
        random.shuffle(order)  # position must not reveal the provider
    shown = [sides[i] for i in order]
    titles = [BLIND_NAMES[k] if blind else f"**{k + 1}. {side.title()}**" for k, side in enumerate(shown)]
    statuses = ["waiting…"] * n
    keys = KeyRing.for_visitor(session_keys)
    summary = f"Running {n} sides on seed {params.seed}…"
    with owned_run("compare", request) as run:
        updates: asyncio.Queue[tuple[int, Progress]] = asyncio.Queue()
        task = asyncio.create_task(
            run_comparison(
                shown,
                params,
                keys=keys,
                cancel=run.token,
                progress=lambda index, update: updates.put_nowait((index, update)),
                hosted_gate=run.hosted_gate,
            )
        )
        yield [*_frame(n, titles, [None] * n, statuses, [None] * n, summary), gr.skip()]
        async for index, update in follow(task, updates):
            statuses[index] = update.message
            yield [*_frame(n, titles, None, statuses, None, summary), gr.skip()]
        outcomes = task.result()
        failed = sum(not outcome.ok for outcome in outcomes)
        hidden = blind and not failed  # a failed side ends the blind round: no vote, names shown
        saved = [await save_run_files(run, o, f"side{k + 1}-") for k, o in enumerate(outcomes)]
        images = [
            await _shown_image(run, outcome, paths, blind_name=BLIND_NAMES[k] if hidden else None)
            for k, (outcome, paths) in enumerate(zip(outcomes, saved, strict=True))
        ]
        stopped = run.token.cancelled
    if blind and failed:
        titles = [f"**{k + 1}. {side.title()}**" for k, side in enumerate(shown)]
    statuses = [_blind_status(o) if hidden else _side_status(o) for o in outcomes]
    sent = [None if hidden or not o.prepared else o.prepared.display() for o in outcomes]
    slowest = max(outcome.elapsed_s for outcome in outcomes)
    summary = f"Seed {params.seed} · {n - failed} of {n} sides done · slowest side {slowest:.2f} s" + (
        " · **stopped**" if stopped else ""
    )
    if blind and failed:
        summary += " · blind round ended without a vote: a side failed"
    blind_state = (
        {"providers": [side.provider for side in shown], "prompt": params.prompt, "seed": params.seed}
        if hidden
        else None
    )
    if not blind:  # a blind round stays out of the history: it would name the sides before the vote
        for outcome, paths in zip(outcomes, saved, strict=True):
            history = remember(outcome, paths, keys, history)
    yield [*_frame(n, titles, images, statuses, sent, summary, blind_state=blind_state, final=True), history]


async def _shown_image(
    run: Run, outcome: Outcome, paths: list[Path], blind_name: str | None = None
) -> str | None:
    """The side's first PNG; in blind mode a copy under a neutral name that reveals nothing."""
    if not paths:
        return None
    if blind_name is None:
        return str(paths[0])
    name = f"{uuid.uuid4().hex}-{blind_name.replace(' ', '-').lower()}.png"
    return str(await asyncio.to_thread(run.write, name, outcome.pngs[0]))


def _side_status(outcome: Outcome) -> str:
    return f"{STOPPED} {outcome.error}" if outcome.stopped else outcome_status(outcome)


def _blind_status(outcome: Outcome) -> str:
    """Nothing that tells the sides apart (no notes, no request, no time) until the vote."""
    return "**Done.** Vote to see which provider made it."


def _frame(
    n: int,
    titles: list[str],
    images: list[str | None] | None,
    statuses: list[str],
    sent: list[Any] | None,
    summary: str,
    *,
    blind_state: dict[str, Any] | None = None,
    final: bool = False,
) -> list[Any]:
    """One update of every result column, the summary, slider choices, state and vote row."""
    frame: list[Any] = []
    for index in range(MAX_SIDES):
        if index >= n:
            frame += [gr.skip()] * 4
            continue
        frame += [
            titles[index],
            images[index] if images is not None else gr.skip(),
            statuses[index],
            sent[index] if sent is not None else gr.skip(),
        ]
    if not final:
        return [*frame, summary, gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip()]
    choices = [str(index + 1) for index in range(n)]
    pair = (images[0], images[1]) if images and images[0] and images[1] else None
    return [
        *frame,
        summary,
        images,
        gr.update(choices=choices, value="1"),
        gr.update(choices=choices, value="2"),
        pair,
        blind_state,
        gr.update(visible=blind_state is not None),
    ]


def on_slider_pick(images: list[str | None], left: str, right: str) -> Any:
    try:
        pair = (images[int(left) - 1], images[int(right) - 1])
    except (IndexError, ValueError, TypeError):
        return gr.skip()
    if not all(pair):
        gr.Info("One of those sides has no image.")
        return gr.skip()
    return pair


def vote_handler(verdict: str):
    def vote(blind_state: dict[str, Any] | None) -> list[Any]:
        if not blind_state:
            raise user_error("Run a blind comparison of 2 sides first.")
        left, right = blind_state["providers"]
        record_vote(Vote(left, right, verdict, blind_state["prompt"], blind_state["seed"]))  # type: ignore[arg-type]
        reveal = f"Voted **{VERDICT_LABELS[verdict]}**. Side A was **{left}**, Side B was **{right}**."
        return [
            f"**A: {left}**",
            f"**B: {right}**",
            reveal,
            None,
            gr.update(visible=False),
            leaderboard_rows(),
        ]

    vote.__name__ = f"vote_{verdict}"
    return vote
