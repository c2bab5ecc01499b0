"""The Compare tab: 2-6 sides on one prompt and seed, an A/B slider, and blind votes."""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gradio as gr

from zimage_ui.compare import MAX_SIDES, MIN_SIDES, Side, params_for_sides, run_comparison
from zimage_ui.errors import InvalidParams
from zimage_ui.metadata import without_metadata
from zimage_ui.params import GenerationParams
from zimage_ui.providers.base import KeyRing, Progress
from zimage_ui.runner import Outcome
from zimage_ui.runs import Run
from zimage_ui.ui.common import (
    PRIVATE,
    PRIVATE_SAYING,
    Fresh,
    SessionState,
    browser_secret,
    follow,
    on_run,
    outcome_status,
    owned_run,
    run_buttons,
    save_run_files,
    session_of,
    stop_handler,
    user_error,
)
from zimage_ui.ui.endpoints import ApiArg, settings_endpoint
from zimage_ui.ui.form import (
    UNCHANGED,
    Form,
    SideControls,
    Updates,
    Values,
    api_params,
)
from zimage_ui.ui.generate_tab import use_as_input_updates
from zimage_ui.ui.settings_panel import provider_choices
from zimage_ui.votes import VERDICT_IDS, VERDICT_LABELS, VoteRecord, prompt_hash, voter_id, votes_from_env

# One name per side everywhere in a blind round: the titles, the slider and the vote buttons.
BLIND_NAMES = ("A", "B")


def _override_box(label: str, elem_id: str, placeholder: str = "shared") -> gr.Textbox:
    """One of a side's override boxes: blank keeps the shared setting."""
    return gr.Textbox(
        label=label, placeholder=placeholder, scale=1, max_lines=1, min_width=90, elem_id=elem_id
    )


@dataclass
class SideResult:
    column: gr.Column
    title: gr.Markdown
    image: gr.Image
    status: gr.Markdown
    sent: gr.JSON
    use_as_input: gr.Button


@dataclass
class Finished:
    """A comparison that has run: its sides in the order shown, their outcomes and files."""

    params: GenerationParams
    sides: list[Side]
    outcomes: list[Outcome]
    images: list[str | None]
    saved: list[list[Path]]
    stopped: bool


def side_name(index: int, side: Side) -> str:
    """A side as its column's title and the A/B slider's pickers name it: "2. runpod (steps 4)"."""
    return f"{index + 1}. {side.title()}"


def blind_allowed(count: int) -> Any:
    """Blind mode compares exactly 2 sides, so it is off (and says why) otherwise."""
    if count == 2:
        return gr.update(interactive=True, info="names stay hidden until you vote")
    return gr.update(value=False, interactive=False, info="blind mode compares exactly 2 sides")


def _blind_status() -> str:
    """Nothing that tells the sides apart (no notes, no request, no time) until the vote."""
    return "**Done.** Vote to see which provider made it."


async def _shown_image(run: Run, outcome: Outcome, paths: list[Path], blind_name: str | None) -> str | None:
    """The side's first PNG; in blind mode a copy under a neutral name and without the PNG's text
    (which names the provider): nothing in it reveals the side."""
    if not paths:
        return None
    if blind_name is None:
        return str(paths[0])
    name = f"{uuid.uuid4().hex}-side-{blind_name.lower()}.png"
    neutral = await asyncio.to_thread(without_metadata, outcome.pngs[0])  # its text names the provider
    return str(await asyncio.to_thread(run.write, name, neutral))


async def compare_sides(
    sides: Sequence[Side],
    params: GenerationParams,
    keys: KeyRing,
    request: gr.Request | None,
    *,
    blind: bool = False,
    on_progress: Any = None,
) -> Finished:
    """Run every side at once (shuffled in a blind round) and save their files."""
    order = list(range(len(sides)))
    if blind:
        random.shuffle(order)  # position must not reveal the provider
    shown = [sides[i] for i in order]
    report = on_progress or (lambda _index, _update: None)
    with owned_run("compare", request) as run:
        outcomes = await run_comparison(
            shown, params, keys=keys, cancel=run.token, progress=report, hosted_gate=run.hosted_gate
        )
        hidden = blind and all(o.ok for o in outcomes)
        saved = list(
            await asyncio.gather(*(save_run_files(run, o, f"side{k + 1}-") for k, o in enumerate(outcomes)))
        )
        images = [
            await _shown_image(run, o, paths, BLIND_NAMES[k] if hidden else None)
            for k, (o, paths) in enumerate(zip(outcomes, saved, strict=True))
        ]
        return Finished(params, shown, outcomes, images, saved, run.token.cancelled)


@dataclass
class CompareTab:
    count: gr.Slider
    blind: gr.Checkbox
    sides: list[SideControls]
    run: gr.Button
    stop: gr.Button
    input_chip: gr.Button
    summary: gr.Markdown
    results: list[SideResult]
    left: gr.Dropdown
    right: gr.Dropdown
    slider: gr.ImageSlider
    vote_row: gr.Row
    vote_buttons: dict[str, gr.Button]
    images: gr.State = field(default_factory=lambda: gr.State([]))
    blind_state: gr.State = field(default_factory=lambda: gr.State(None))

    def wire(self, form: Form, state: SessionState) -> None:
        self._form, self._state = form, state
        self.count.change(
            self.on_count,
            {self.count},
            [*(side.row for side in self.sides), *(r.column for r in self.results), self.blind],
            **PRIVATE,
        )
        result_outputs = [c for r in self.results for c in (r.title, r.image, r.status, r.sent)]
        on_run(
            self.run,
            self.stop,
            self.on_run,
            {*form.inputs(), self.blind, state.keys},
            [
                *result_outputs,
                self.summary,
                self.images,
                self.left,
                self.right,
                self.slider,
                self.blind_state,
                self.vote_row,
                state.fresh,
            ],
            api_visibility="private",
            concurrency_limit=None,
        )
        self.stop.click(stop_handler("compare"), None, self.summary, **PRIVATE)
        if form.image_inputs is not None:
            inputs = form.image_inputs
            for result in self.results:
                result.use_as_input.click(
                    self.use_as_input_handler(result),
                    {result.image},
                    [inputs.image, inputs.image_url, inputs.control_image, inputs.accordion],
                    **PRIVATE_SAYING,
                )
        for box in (self.left, self.right):
            box.change(
                self.on_slider_pick, {self.images, self.left, self.right}, [self.slider], **PRIVATE_SAYING
            )
        for verdict, button in self.vote_buttons.items():
            button.click(
                self.vote_handler(verdict),
                {self.blind_state},
                [
                    self.results[0].title,
                    self.results[1].title,
                    self.results[0].status,
                    self.results[1].status,
                    self.summary,
                    self.blind_state,
                    self.vote_row,
                    state.fresh,
                ],
                **PRIVATE_SAYING,
            )

    def on_count(self, data: Values) -> Updates:
        n = int(data[self.count])
        shown = {side.row: gr.update(visible=i < n) for i, side in enumerate(self.sides)}
        columns = {result.column: gr.update(visible=i < n) for i, result in enumerate(self.results)}
        return {**shown, **columns, self.blind: blind_allowed(n)}

    async def on_run(self, data: Values, request: gr.Request) -> AsyncIterator[Updates]:
        try:
            sides = self._form.read_sides(data)
            blind = bool(data[self.blind])
            if blind and len(sides) != 2:
                raise user_error("Blind mode compares exactly 2 sides: set Sides to 2.")
            params = (await self._form.read_for_run(data)).with_concrete_seed()
            params_for_sides(sides, params)
        except InvalidParams as exc:
            yield {self.summary: f"**Check the sides.** {exc}"}
            return
        except gr.Error as exc:
            yield {self.summary: f"**{exc.title}.** {exc.message}"}
            return
        n = len(sides)
        results = self.results[:n]
        updates: asyncio.Queue[tuple[int, Progress]] = asyncio.Queue()
        keys = KeyRing.for_visitor(data[self._state.keys])
        task = asyncio.create_task(
            compare_sides(
                sides,
                params,
                keys,
                request,
                blind=blind,
                on_progress=lambda index, update: updates.put_nowait((index, update)),
            )
        )
        # This run's titles from its start: the last run's would name sides that are not running.
        titles = {
            r.title: f"**Side {BLIND_NAMES[k]}**" if blind else f"**{side_name(k, sides[k])}**"
            for k, r in enumerate(results)
        }
        yield {
            **titles,
            **{r.status: "waiting…" for r in results},
            **{r.image: None for r in results},
            **{r.sent: None for r in results},
            self.summary: f"Running {n} sides on seed {params.seed}…",
        }
        async for index, update in follow(task, updates):
            yield {results[index].status: update.message}
        try:
            finished = task.result()
        except gr.Error as exc:  # the server is busy
            yield {self.summary: f"**{exc.title}.** {exc.message}"}
            return
        yield self._show(finished, blind, keys)

    def _show(self, done: Finished, blind: bool, keys: KeyRing) -> Updates:
        n, outcomes = len(done.sides), done.outcomes
        failed = sum(not o.ok for o in outcomes)
        hidden = blind and not failed  # a failed side ends the blind round: no vote, names shown
        updates: Updates = {}
        for k, (result, side, outcome) in enumerate(zip(self.results, done.sides, outcomes, strict=False)):
            updates |= {
                result.title: f"**Side {BLIND_NAMES[k]}**" if hidden else f"**{side_name(k, side)}**",
                result.image: done.images[k],
                result.status: _blind_status() if hidden else outcome_status(outcome),
                result.sent: None if hidden or not outcome.prepared else outcome.prepared.display(),
            }
        slowest = max(o.elapsed_s for o in outcomes)
        summary = f"Seed {done.params.seed} · {n - failed} of {n} sides done · slowest side {slowest:.2f} s"
        if done.stopped:
            summary += " · **stopped**"
        if blind and failed:
            summary += " · blind round ended without a vote: a side failed"
        fresh = Fresh()
        if not blind:  # a blind round stays out of the history: it would name the sides before the vote
            for k, (outcome, paths) in enumerate(zip(outcomes, done.saved, strict=True)):
                fresh.add(outcome, paths, keys, label=f"side {k + 1}")
        # The slider's pickers name each side as its column does (blind: A and B only).
        names = list(BLIND_NAMES) if hidden else [side_name(k, side) for k, side in enumerate(done.sides)]
        choices = [(name, str(k + 1)) for k, name in enumerate(names)]
        pair = (done.images[0], done.images[1]) if done.images[0] and done.images[1] else None
        blind_state = (
            {
                "providers": [s.provider for s in done.sides],
                "prompt": done.params.prompt,
                "seed": done.params.seed,
                "size": (done.params.width, done.params.height),
                "latencies": [round(o.elapsed_s, 3) for o in outcomes],
            }
            if hidden
            else None
        )
        return {
            **updates,
            self.summary: summary,
            self.images: done.images,
            self.left: gr.update(choices=choices, value="1", label="Left"),
            self.right: gr.update(choices=choices, value="2", label="Right"),
            self.slider: pair,
            self.blind_state: blind_state,
            self.vote_row: gr.update(visible=hidden),
            self._state.fresh: fresh.value(),
        }

    def on_slider_pick(self, data: Values) -> Updates:
        images, left, right = data[self.images], data[self.left], data[self.right]
        try:
            pair = (images[int(left) - 1], images[int(right) - 1])
        except (IndexError, ValueError, TypeError):
            gr.Info("Run a comparison first: the slider shows two of its sides.")
            return UNCHANGED
        if not all(pair):
            gr.Warning("That side has no image (it failed or was stopped): pick another.")
            return UNCHANGED
        return {self.slider: pair}

    def use_as_input_handler(self, result: SideResult) -> Any:
        def use_as_input(data: Values) -> Updates:
            path = data[result.image]
            if not path:
                gr.Info("This side has no image yet: run a comparison first.")
                return UNCHANGED
            return use_as_input_updates(self._form, str(path))

        return use_as_input

    def vote_handler(self, verdict: str) -> Any:
        def vote(data: Values, request: gr.Request) -> Updates:
            blind_state = data[self.blind_state]
            if not blind_state:
                gr.Info("Run a blind comparison of 2 sides first.")
                return UNCHANGED
            left, right = blind_state["providers"]
            width, height = blind_state["size"]
            record = VoteRecord(
                left,
                right,
                verdict,
                prompt_hash=blind_state["prompt"] and prompt_hash(blind_state["prompt"]),
                seed=blind_state["seed"],
                width=width,
                height=height,
                latency_a=blind_state["latencies"][0],
                latency_b=blind_state["latencies"][1],
                judge=voter_id(session_of(request), browser_secret()),
                drawn=False,  # the voter chose the sides: kept, not counted
            )
            store, fresh = votes_from_env(), Fresh()
            if store is not None:
                store.add([record])
            else:
                fresh.votes.append(record.as_dict())
            reveal = f"Your vote: {VERDICT_LABELS[verdict]}. Side A was **{left}**, Side B was **{right}**."
            return {
                self.results[0].title: f"**Side A: {left}**",
                self.results[1].title: f"**Side B: {right}**",
                self.results[0].status: f"Made by **{left}**.",  # "vote to see" is no longer true
                self.results[1].status: f"Made by **{right}**.",
                self.summary: reveal,
                self.blind_state: None,
                self.vote_row: gr.update(visible=False),
                self._state.fresh: fresh.value(),
            }

        vote.__name__ = f"vote_{VERDICT_IDS[verdict].replace('-', '_')}"
        return vote


def build_compare_tab(default_provider: str) -> CompareTab:
    gr.Markdown(
        "Every side runs at once on the prompt, seed and shared settings; a blank override "
        "keeps the shared value. The whole comparison takes about as long as its slowest side. "
        "Strength changes the input image's strength and LoRA scale sets every LoRA's scale (all "
        "of them), both from the Image input panel."
    )
    with gr.Row():
        count = gr.Slider(
            label="Sides", minimum=MIN_SIDES, maximum=MAX_SIDES, step=1, value=2, elem_id="sides"
        )
        blind = gr.Checkbox(
            label="Blind mode: hide providers until I vote (2 sides)",
            info="names stay hidden until you vote",
            elem_id="blind",
        )
    sides: list[SideControls] = []
    for index in range(MAX_SIDES):
        number = index + 1
        with gr.Row(visible=index < 2, equal_height=True) as row:
            provider = gr.Dropdown(
                label=f"Side {number} provider",
                choices=provider_choices(KeyRing.for_visitor()),
                value=default_provider,
                scale=3,
                elem_id=f"side-{number}-provider",
            )
            steps = _override_box("Steps", f"side-{number}-steps")
            shift = _override_box("Shift", f"side-{number}-shift")
            size = _override_box("Size", f"side-{number}-size", placeholder="shared, or WxH")
            strength = _override_box("Strength", f"side-{number}-strength")
            lora_scale = _override_box("LoRA scale", f"side-{number}-lora-scale")
        sides.append(SideControls(row, provider, steps, shift, size, strength, lora_scale))
    with gr.Row(elem_classes=["run-row"]):
        run, stop, input_chip = run_buttons("Run comparison", "compare-run", "compare-stop")
    summary = gr.Markdown(elem_id="compare-summary")
    results: list[SideResult] = []
    with gr.Row():
        for index in range(MAX_SIDES):
            with gr.Column(visible=index < 2, min_width=220) as column:
                title = gr.Markdown(f"**Side {index + 1}**", elem_id=f"side-{index + 1}-title")
                image = gr.Image(
                    label=f"Side {index + 1}",
                    show_label=False,
                    type="filepath",
                    format="png",
                    interactive=False,
                    height=300,
                    elem_id=f"side-{index + 1}-image",
                )
                status = gr.Markdown(elem_id=f"side-{index + 1}-status")
                use_as_input = gr.Button("Use as input", size="sm", elem_id=f"side-{index + 1}-use-as-input")
                with gr.Accordion("What was sent", open=False):
                    sent = gr.JSON(show_label=False)
            results.append(SideResult(column, title, image, status, sent, use_as_input))
    with gr.Accordion("A/B slider", open=True):
        with gr.Row():
            left = gr.Dropdown(label="Left", choices=["1", "2"], value="1", elem_id="slider-left")
            right = gr.Dropdown(label="Right", choices=["1", "2"], value="2", elem_id="slider-right")
        slider = gr.ImageSlider(label="Drag to compare", type="filepath", format="png", elem_id="ab-slider")
    with gr.Row(visible=False) as vote_row:
        vote_buttons = {
            verdict: gr.Button(label, elem_id=f"vote-{VERDICT_IDS[verdict]}")
            for verdict, label in VERDICT_LABELS.items()
        }
    gr.Markdown(
        "A blind vote here is kept but not counted in the leaderboard: you chose the two sides. "
        "The **Arena** tab draws the pairs, and its votes make the ratings.",
        elem_id="blind-note",
    )
    return CompareTab(
        count,
        blind,
        sides,
        run,
        stop,
        input_chip,
        summary,
        results,
        left,
        right,
        slider,
        vote_row,
        vote_buttons,
    )


def side_report(side: Side, outcome: Outcome, index: int) -> dict[str, Any]:
    sent = outcome.prepared.sent if outcome.prepared else None
    return {
        "side": index + 1,
        "title": side.title(),
        "provider": outcome.provider,
        "seed": outcome.seed,
        "size": f"{sent.width}x{sent.height}" if sent else None,
        "steps": sent.steps if sent else None,
        "sent": sent.record() if sent else None,
        "ok": outcome.ok,
        "status": outcome_status(outcome),
        "notes": list(outcome.prepared.notes) if outcome.prepared else [],
    }


@settings_endpoint(
    "Compare 2 to 6 sides on one prompt and one seed, all at once: providers, or one provider "
    "at different settings. A failed side keeps its place in the report; the others still finish.",
    before=[
        ApiArg(
            "sides",
            str,
            "The sides, separated by ';', each ID or ID:steps=4,shift=2.5,size=512x512,label=X "
            "(a blank override keeps the shared setting), e.g. 'diffusers-tiny:steps=4; runpod'. "
            "strength= (the input image's strength) and lora_scale= (every LoRA's scale) need an image "
            "or LoRAs (below).",
        )
    ],
    returns="Each side's first image captioned with its title, and a report: the seed and, per "
    "side, its provider, size, steps, status and notes.",
)
async def compare(
    sides: str, request: gr.Request, **values: Any
) -> tuple[list[tuple[str, str]], dict[str, Any]]:
    params = api_params(values).with_concrete_seed()
    try:
        parsed = [Side.parse(text) for text in sides.split(";") if text.strip()]
    except InvalidParams as exc:
        raise user_error(f"Check the sides: {exc}", title="Invalid comparison") from None
    try:
        params_for_sides(parsed, params)
    except InvalidParams as exc:
        raise user_error(f"Check the sides: {exc}", title="Invalid comparison") from None
    done = await compare_sides(parsed, params, KeyRing.for_visitor(), request)
    images = [
        (str(paths[0]), side.title()) for side, paths in zip(done.sides, done.saved, strict=True) if paths
    ]
    report = {
        "seed": params.seed,
        "sides": [
            side_report(s, o, k) for k, (s, o) in enumerate(zip(done.sides, done.outcomes, strict=True))
        ],
    }
    return images, report
