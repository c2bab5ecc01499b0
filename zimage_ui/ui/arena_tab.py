"""The Arena tab: battles the app draws, votes that count, and a leaderboard with intervals.

A battle runs two sides (`arena.draw_pair`) on the form's prompt, seed and size. Until the vote,
nothing the browser receives tells them apart: the sides are "A" and "B", the images are copies
without their metadata under random names, progress is a bare percentage, and which side is
which stays in the session's server-side state. The vote (A, B, tie, both bad) reveals the names
in place. Votes are kept in the team database on a team instance, else in the browser.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import gradio as gr

from zimage_ui import rating
from zimage_ui.arena import Contender, contenders, draw_pair
from zimage_ui.errors import InvalidParams
from zimage_ui.metadata import without_metadata
from zimage_ui.providers.base import KeyRing, Progress
from zimage_ui.runner import Outcome, generate_one
from zimage_ui.runs import scratch_folder
from zimage_ui.ui.common import (
    PRIVATE,
    PRIVATE_SAYING,
    Fresh,
    SessionState,
    browser_secret,
    on_run,
    outcome_status,
    owned_run,
    run_buttons,
    save_run_files,
    session_of,
    stop_handler,
    upload_button,
)
from zimage_ui.ui.form import UNCHANGED, Form, Updates, Values
from zimage_ui.votes import (
    VERDICT_IDS,
    VERDICT_LABELS,
    VoteRecord,
    counted,
    from_csv,
    pair_counts,
    prompt_hash,
    to_csv,
    voter_id,
    votes_from_env,
)

SIDES = ("A", "B")
VOTES_PER_WINDOW, VOTE_WINDOW_S = 30, 600  # one session's votes in any 10 minutes
MAX_IMPORT_BYTES = 10 * 2**20


@dataclass
class Battle:
    """A battle in flight or waiting for its vote: the server's secret until the vote."""

    sides: tuple[Contender, Contender]
    prompt: str
    seed: int
    size: tuple[int, int]
    outcomes: list[Outcome] = field(default_factory=list)
    paths: list[list[Path]] = field(default_factory=list)
    id: str = field(default_factory=lambda: uuid.uuid4().hex)


@dataclass
class ArenaTab:
    run: gr.Button
    stop: gr.Button
    input_chip: gr.Button
    status: gr.Markdown
    titles: list[gr.Markdown]
    images: list[gr.Image]
    notes: list[gr.Markdown]
    vote_row: gr.Row
    vote_buttons: dict[str, gr.Button]
    board_note: gr.Markdown
    board: gr.Dataframe
    chart: gr.HTML
    export: gr.Button
    csv: gr.File
    upload: gr.UploadButton
    battle: gr.State = field(default_factory=lambda: gr.State(None))
    # This session's view of the votes (browser mode): what the leaderboard and the draw count.
    seen: gr.State = field(default_factory=lambda: gr.State([]))
    recent: gr.State = field(default_factory=lambda: gr.State([]))  # this session's vote times

    def wire(self, tab: gr.Tab, form: Form, state: SessionState) -> None:
        self._form, self._state = form, state
        board = [self.board, self.board_note, self.chart, self.seen]
        tab.select(self.on_show, {state.votes}, board, **PRIVATE)
        shown = [self.status, *self.titles, *self.images, *self.notes, self.vote_row, self.battle]
        on_run(
            self.run,
            self.stop,
            self.on_battle,
            {*form.read_inputs(), state.keys, self.seen, self.battle},
            [*shown, state.fresh],
            api_visibility="private",
            concurrency_limit=None,
        )
        self.stop.click(stop_handler("arena"), None, self.status, **PRIVATE)
        for verdict, button in self.vote_buttons.items():
            button.click(
                self.vote_handler(verdict),
                {self.battle, self.seen, self.recent, state.keys},
                [*shown, *board, self.recent, state.fresh],
                **PRIVATE_SAYING,
            )
        self.export.click(self.on_export, {self.seen}, [self.csv], **PRIVATE_SAYING)
        self.upload.upload(self.on_import, {self.upload, self.seen}, [*board, state.fresh], **PRIVATE_SAYING)

    # -- the leaderboard ----------------------------------------------------------------------------

    def _votes(self, data: Values, key: Any) -> list[VoteRecord]:
        """The votes the leaderboard counts from: the team's, or this browser's."""
        store = votes_from_env()
        if store is not None:
            return store.all()
        kept = data[key] if isinstance(data[key], list) else []
        return [vote for item in kept[:20_000] if (vote := VoteRecord.from_dict(item))]

    def on_show(self, data: Values) -> Updates:
        return self._board(self._votes(data, self._state.votes))

    def _board(self, votes: list[VoteRecord]) -> Updates:
        store = votes_from_env() is not None
        battles = counted(votes)
        board = rating.leaderboard(battles)
        whose = "the team's votes" if store else "this browser's votes"
        if not battles:
            note = f"No counted votes yet ({whose}). Run a battle and vote."
        else:
            note = (
                f"{board.battles} vote{'s' if board.battles != 1 else ''} counted ({whose}; "
                "ties count half a win each way). "
                f"Ratings on the Elo scale, centred at 1000, with 95% bootstrap intervals; "
                f"fewer than {rating.PRELIMINARY_VOTES} votes: preliminary."
            )
            if board.left_win_rate is not None:
                note += (
                    f" The left side won {board.left_win_rate:.0%} of decided votes (50%: no position bias)."
                )
            if board.left_out:
                past = f"past the {rating.MAX_RATED} most voted"
                note += f" {board.left_out} votes of sides {past} are not rated."
            chosen = len(votes) - len(battles)
            if chosen:
                note += f" {chosen} blind-comparison votes are kept but not counted: their pairs were chosen."
        rows = rating.table_rows(board) or [["", "no votes yet", "", "", "", ""]]
        return {
            self.board: {"headers": rating.LEADERBOARD_COLUMNS, "data": rows},
            self.board_note: note,
            self.chart: rating.chart_svg(board),
            self.seen: [vote.as_dict() for vote in votes] if not store else [],
        }

    # -- a battle -----------------------------------------------------------------------------------

    async def on_battle(self, data: Values, request: gr.Request) -> AsyncIterator[Updates]:
        keys = KeyRing.for_visitor(data[self._state.keys])
        try:
            params = (await self._form.read_for_run(data)).with_concrete_seed()
            sides = contenders(keys)
            votes = self._votes(data, self.seen)
            left, right = draw_pair(sides, pair_counts(votes))
        except gr.Error as exc:
            yield {self.status: f"**{exc.title}.** {exc.message}"}
            return
        except InvalidParams as exc:
            yield {self.status: f"**No battle.** {exc}"}
            return
        assert params.seed is not None
        battle = Battle((left, right), params.prompt, params.seed, (params.width, params.height))
        yield {
            self.status: f"Drawing A and B on seed {params.seed}…",
            **{title: f"**{name}**" for title, name in zip(self.titles, SIDES, strict=True)},
            **{image: None for image in self.images},
            **{note: "" for note in self.notes},
            self.vote_row: gr.update(visible=False),
            self.battle: None,
        }
        progress: list[float] = [0.0, 0.0]

        def reporter(k: int) -> Any:
            def report(update: Progress) -> None:
                if update.fraction is not None:
                    progress[k] = max(progress[k], update.fraction)

            return report

        with owned_run("arena", request) as run:
            task = asyncio.gather(
                *(
                    generate_one(
                        side.provider,
                        side.params(params),
                        keys=keys,
                        progress=reporter(k),
                        cancel=run.token,
                        hosted_gate=run.hosted_gate,
                    )
                    for k, side in enumerate(battle.sides)
                )
            )
            while not task.done():
                await asyncio.sleep(0.5)
                shown = " · ".join(f"{name}: {p:.0%}" for name, p in zip(SIDES, progress, strict=True))
                yield {self.status: f"Drawing on seed {params.seed}… {shown}"}
            outcomes = list(task.result())
            battle.paths = [
                await save_run_files(run, outcome, f"arena-{name.lower()}-")
                for name, outcome in zip(SIDES, outcomes, strict=True)
            ]
            shown_images = [await self._neutral(outcome) for outcome in outcomes]
        battle.outcomes = [replace(outcome, pngs=[]) for outcome in outcomes]  # the files hold them
        if not all(outcome.ok for outcome in outcomes):  # no vote: say what happened, names and all
            fresh = Fresh()
            for k, (outcome, paths) in enumerate(zip(battle.outcomes, battle.paths, strict=True)):
                fresh.add(outcome, paths, keys, label=f"arena {SIDES[k]}")
            yield {
                self.status: "**No vote this time:** a side failed, so the battle is void. Try another.",
                **self._reveal(battle),
                **{image: shown for image, shown in zip(self.images, shown_images, strict=True)},
                self._state.fresh: fresh.value(),
            }
            return
        yield {
            self.status: f"Both done on seed {params.seed}, {params.size}. Which is better?",
            **{image: shown for image, shown in zip(self.images, shown_images, strict=True)},
            **{note: "Made by a hidden side." for note in self.notes},
            self.vote_row: gr.update(visible=True),
            self.battle: battle,
        }

    async def _neutral(self, outcome: Outcome) -> str | None:
        """The image as the browser gets it before the vote: pixels only, under a random name."""
        if not outcome.pngs:
            return None
        folder = scratch_folder("arena")
        path = folder / f"{uuid.uuid4().hex}.png"
        data = await asyncio.to_thread(without_metadata, outcome.pngs[0])
        await asyncio.to_thread(path.write_bytes, data)
        return str(path)

    def _reveal(self, battle: Battle) -> Updates:
        updates: Updates = {}
        for k, (side, outcome) in enumerate(zip(battle.sides, battle.outcomes, strict=True)):
            updates[self.titles[k]] = f"**{SIDES[k]}: {side.name}**"
            updates[self.notes[k]] = outcome_status(outcome)
        return {**updates, self.vote_row: gr.update(visible=False), self.battle: None}

    # -- the vote -----------------------------------------------------------------------------------

    def vote_handler(self, verdict: str) -> Any:
        def vote(data: Values, request: gr.Request) -> Updates:
            battle: Battle | None = data[self.battle]
            if battle is None:
                gr.Info("Run a battle first: the vote is for the two images it draws.")
                return UNCHANGED
            now = time.monotonic()
            recent = [t for t in data[self.recent] or [] if now - t < VOTE_WINDOW_S]
            if len(recent) >= VOTES_PER_WINDOW:
                gr.Warning(f"That is {VOTES_PER_WINDOW} votes in 10 minutes: wait a little, then vote.")
                return UNCHANGED
            a, b = battle.outcomes
            record = VoteRecord(
                battle.sides[0].name,
                battle.sides[1].name,
                verdict,
                prompt_hash=prompt_hash(battle.prompt),
                seed=battle.seed,
                width=battle.size[0],
                height=battle.size[1],
                latency_a=round(a.elapsed_s, 3),
                latency_b=round(b.elapsed_s, 3),
                judge=voter_id(session_of(request), browser_secret()),
            )
            keys, fresh = KeyRing.for_visitor(data[self._state.keys]), Fresh()
            for k, (outcome, paths) in enumerate(zip(battle.outcomes, battle.paths, strict=True)):
                fresh.add(outcome, paths, keys, label=f"arena {SIDES[k]}")  # named now: voted
            store = votes_from_env()
            votes = self._votes(data, self.seen)
            if store is not None:
                store.add([record])
                votes = store.all()
            else:
                fresh.votes.append(record.as_dict())
                votes.append(record)
            names = f"A was **{record.model_a}**, B was **{record.model_b}**"
            said = f"Your vote: {VERDICT_LABELS[verdict]}. {names}."
            return {
                self.status: said + " Run the next battle on this prompt, or change it first.",
                **self._reveal(battle),
                **self._board(votes),
                self.recent: [*recent, now],
                self._state.fresh: fresh.value(),
            }

        vote.__name__ = f"arena_vote_{VERDICT_IDS[verdict].replace('-', '_')}"
        return vote

    # -- export and import --------------------------------------------------------------------------

    def on_export(self, data: Values) -> Updates:
        votes = self._votes(data, self.seen)
        path = scratch_folder("votes") / "zimage-votes.csv"
        path.write_text(to_csv(votes), encoding="utf-8")
        return {self.csv: gr.update(value=str(path), visible=True)}

    def on_import(self, data: Values) -> Updates:
        upload = data[self.upload]
        try:
            if Path(upload).stat().st_size > MAX_IMPORT_BYTES:
                gr.Warning("That file is over 10 MB: not read.")
                return UNCHANGED
            text = Path(upload).read_text(encoding="utf-8-sig")
        except (OSError, TypeError, UnicodeDecodeError):
            gr.Warning(
                "That file can't be read as text: export votes from the Arena, or give an LMArena CSV."
            )
            return UNCHANGED
        votes, problems = from_csv(text)
        if not votes:
            gr.Warning(f"No votes read: {problems[0] if problems else 'the file is empty'}.")
            return UNCHANGED
        skipped = f"; {len(problems)} lines skipped, e.g. {problems[0]}" if problems else ""
        store, fresh = votes_from_env(), Fresh()
        if store is not None:
            added = store.add(votes)
            everyone = store.all()
        else:
            known = self._votes(data, self.seen)
            ids = {vote.id for vote in known}
            new = [vote for vote in votes if vote.id not in ids]
            added, everyone = len(new), [*known, *new]
            fresh.votes = [vote.as_dict() for vote in new]
        gr.Info(f"Imported {added} votes{skipped}.")
        return {**self._board(everyone), self._state.fresh: fresh.value()}


def build_arena_tab() -> ArenaTab:
    gr.Markdown(
        "The app draws two sides (providers, or settings of one) and runs both on the prompt, "
        "seed and size above. Names stay hidden until you vote; only these drawn battles count "
        "in the leaderboard."
    )
    with gr.Row(elem_classes=["run-row"]):
        run, stop, input_chip = run_buttons("New battle", "arena-run", "arena-stop")
    status = gr.Markdown("Type a prompt, then start a battle.", elem_id="arena-status")
    titles, images, notes = [], [], []
    with gr.Row():
        for name in SIDES:
            with gr.Column(min_width=160):
                titles.append(gr.Markdown(f"**{name}**", elem_id=f"arena-{name.lower()}-title"))
                images.append(
                    gr.Image(
                        label=f"Side {name}",
                        type="filepath",
                        format="png",
                        interactive=False,
                        height=360,
                        elem_id=f"arena-{name.lower()}-image",
                    )
                )
                notes.append(gr.Markdown(elem_id=f"arena-{name.lower()}-note"))
    with gr.Row(visible=False) as vote_row:
        vote_buttons = {
            verdict: gr.Button(label, elem_id=f"arena-vote-{VERDICT_IDS[verdict]}")
            for verdict, label in VERDICT_LABELS.items()
        }
    with gr.Accordion("Leaderboard", open=True):
        board_note = gr.Markdown("Open this tab to see the ratings.", elem_id="arena-board-note")
        board = gr.Dataframe(interactive=False, elem_id="arena-board")
        chart = gr.HTML(elem_id="arena-chart")
        with gr.Row():
            export = gr.Button("Export votes (CSV)", size="sm", elem_id="arena-export")
            upload = upload_button(
                "Import votes (CSV)", file_types=[".csv"], size="sm", elem_id="arena-import"
            )
        csv = gr.File(label="Votes (LMArena's battle format)", visible=False, interactive=False)
    return ArenaTab(
        run,
        stop,
        input_chip,
        status,
        titles,
        images,
        notes,
        vote_row,
        vote_buttons,
        board_note,
        board,
        chart,
        export,
        csv,
        upload,
    )
