"""The CLI's commands: each checks all of its input before any work, then runs and reports.

Every bad input (a flag, a preset, a missing or unreadable file) is one `error: field: problem`
line on stderr and exit 2; a failed provider, side or cell is exit 1 (the others still write).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import io
import json
import sys
from pathlib import Path
from typing import Any

from PIL import Image

from zimage_ui import env, rating
from zimage_ui.cli_output import (
    PARAM_FLAGS,
    ProgressLines,
    cell_caption,
    grid_report,
    outcome_record,
    print_outcome,
    settings_report,
)
from zimage_ui.compare import Side, params_for_sides, run_comparison
from zimage_ui.enhancer import EnhancerFailed, enhance, enhanced_params
from zimage_ui.errors import InvalidParams, PresetError
from zimage_ui.image_inputs import load_inputs
from zimage_ui.infotext import read_png_settings
from zimage_ui.params import GenerationParams, parse_params
from zimage_ui.presets import Preset, export_preset, params_from_preset, read_preset_file, side_runs
from zimage_ui.providers import PROVIDERS, availability, get_provider
from zimage_ui.providers.base import KeyRing, Progress, refuse_inputs
from zimage_ui.runner import generate_many, save_outcome
from zimage_ui.sheets import render_grid
from zimage_ui.sweep import (
    AXIS_LABELS,
    Axis,
    SweepSpec,
    check_size,
    max_cells,
    parse_axis,
    plan,
    read_grid_spec,
    run_sweep,
)
from zimage_ui.votes import counted, from_csv

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
MAX_IMAGE_BYTES = 50 * 2**20  # `info` reads no image over this (the PNG info tab's cap)
NO_AXIS = "none"


# -- reading inputs --------------------------------------------------------------------------


def _shown(path: Path) -> str:
    return repr(str(path)[:200])


def cant_read(field: str, path: Path, exc: OSError) -> InvalidParams:
    reason = "a folder, not a file" if isinstance(exc, IsADirectoryError) else exc.strerror or str(exc)
    return InvalidParams({field: f"can't read {_shown(path)}: {reason.lower()}"})


def read_preset(path: Path, field: str) -> Preset:
    """A preset file, validated whole (PresetError); a missing or unreadable one is InvalidParams."""
    try:
        return read_preset_file(path)
    except OSError as exc:
        raise cant_read(field, path, exc) from None


def load_preset(args: argparse.Namespace) -> Preset | None:
    return read_preset(args.preset, "--preset") if args.preset else None


def params_from_args(args: argparse.Namespace, preset: Preset | None = None) -> GenerationParams:
    """The preset's settings (if any) with every flag given on top; raises InvalidParams."""
    base = params_from_preset(preset).model_dump() if preset else {}
    values = {name: getattr(args, flag) for flag, name in PARAM_FLAGS.items()}
    merged = {**base, **{name: value for name, value in values.items() if value is not None}}
    if "prompt" not in merged:
        raise InvalidParams({"prompt": "required: give --prompt, or a --preset that has one"})
    inputs = {
        "image": getattr(args, "image", None),
        "strength": getattr(args, "strength", None),
        "mask": getattr(args, "mask", None),
        "loras": [lora.model_dump() for lora in getattr(args, "lora", None) or []],
    }
    if control := getattr(args, "control_image", None):
        inputs["control_kind"], inputs["control_image"] = control
    if (scale := getattr(args, "control_scale", None)) is not None:
        inputs["control_scale"] = scale
    if any(inputs.values()) or inputs["strength"] is not None:
        merged["inputs"] = inputs
    return parse_params(**merged)


def check_inputs(params: GenerationParams, provider_ids: list[str]) -> None:
    """Before any work: every provider takes the image inputs, and the local files are readable
    images (the mask the image's size) and LoRAs; URLs are fetched when the run starts."""
    if params.inputs is None:
        return
    for provider_id in provider_ids:
        provider = get_provider(provider_id)
        refuse_inputs(params, provider.capabilities, provider_id)
    load_inputs(params, skip_urls=True)


def prepare_out(path: Path) -> None:
    """Make the --out folder before any work, so a bad one costs nothing (raises InvalidParams)."""
    if path.exists() and not path.is_dir():
        raise InvalidParams({"--out": f"{_shown(path)} is a file: give a folder"})
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InvalidParams({"--out": f"can't make {_shown(path)}: {exc.strerror or exc}"}) from None


def read_image_file(path: Path) -> bytes:
    """An image's bytes, its size checked before reading; raises InvalidParams naming `file`."""
    try:
        size = path.stat().st_size
        if size > MAX_IMAGE_BYTES:
            limit = MAX_IMAGE_BYTES // 2**20
            raise InvalidParams({"file": f"{size / 2**20:.1f} MB is over the {limit} MB limit: not read"})
        data = path.read_bytes()
    except OSError as exc:
        raise cant_read("file", path, exc) from None
    try:
        with Image.open(io.BytesIO(data)):
            pass
    except Exception:  # PIL raises many types for what it can't identify
        raise InvalidParams({"file": f"{_shown(path)} is not an image (PNG, JPEG or WebP)"}) from None
    return data


def usage_error(exc: Exception) -> int:
    print(f"error: {exc}", file=sys.stderr)
    return EXIT_USAGE


# -- generate, compare, sweep ----------------------------------------------------------------


def run_generate(args: argparse.Namespace) -> int:
    try:
        preset = load_preset(args)
        params = params_from_args(args, preset)
        args.provider = args.provider or ([preset.provider] if preset else [])
        if not args.provider:
            raise InvalidParams({"provider": "required: give --provider ID, or a --preset"})
        for provider_id in args.provider:
            get_provider(provider_id)
        check_inputs(params, args.provider)
        prepare_out(args.out)
    except (InvalidParams, PresetError) as exc:
        return usage_error(exc)
    if args.enhance:
        try:
            params = enhanced_params(params, asyncio.run(enhance(params.prompt)))
        except (EnhancerFailed, InvalidParams) as exc:
            print(
                f"error: {exc}; nothing was drawn (leave out --enhance to draw your own prompt)",
                file=sys.stderr,
            )
            return EXIT_FAILED
    lines = ProgressLines(quiet=args.quiet)
    outcomes = asyncio.run(generate_many(args.provider, params, keys=KeyRing(), progress=lines.update))
    lines.clear()
    for outcome in outcomes:
        paths = save_outcome(outcome, args.out)
        if args.json:
            print(json.dumps(outcome_record(outcome, paths)), flush=True)
            if not outcome.ok:
                print(outcome.error, file=sys.stderr)
        else:
            print_outcome(outcome.provider, outcome, paths)
    return EXIT_OK if all(outcome.ok for outcome in outcomes) else EXIT_FAILED


def run_compare(args: argparse.Namespace) -> int:
    try:
        preset = load_preset(args)
        params = params_from_args(args, preset)
        sides: list[Side] = args.provider or (list(preset.sides or []) if preset else [])
        for side in sides:
            get_provider(side.provider)
        check_inputs(params, [side.provider for side in sides])
        check = params.with_concrete_seed()
        params_for_sides(sides, check)  # 2..6 sides, every override valid, before any work
        prepare_out(args.out)
    except (InvalidParams, PresetError) as exc:
        return usage_error(exc)
    titles = [f"side {index + 1} {side.title()}" for index, side in enumerate(sides)]
    lines = ProgressLines(quiet=args.quiet)
    outcomes = asyncio.run(
        run_comparison(sides, check, keys=KeyRing(), progress=lambda i, u: lines.update(titles[i], u))
    )
    lines.clear()
    report_sides = []
    for index, (side, outcome) in enumerate(zip(sides, outcomes, strict=True)):
        paths = save_outcome(outcome, args.out / f"side-{index + 1}")
        report_sides.append({"side": index + 1, "title": side.title(), **outcome_record(outcome, paths)})
        if not args.json:
            print_outcome(titles[index], outcome, paths)
        elif not outcome.ok:
            print(f"{titles[index]}: {outcome.error}", file=sys.stderr)
    sheet = render_grid(
        [[o.result.images[0] if o.ok and o.result else None for o in outcomes]],
        [side.title() for side in sides],
        errors=[[o.error for o in outcomes]],
    )
    sheet_path, report_path = args.out / "sheet.png", args.out / "report.json"
    sheet.save(sheet_path)
    report = {"prompt": check.prompt, "seed": check.seed, "sides": report_sides, "sheet": str(sheet_path)}
    text = json.dumps(report, indent=2)
    report_path.write_text(text + "\n")
    print(text if args.json else f"sheet: {sheet_path}\nreport: {report_path}")
    return EXIT_OK if all(outcome.ok for outcome in outcomes) else EXIT_FAILED


def _axis(flag: str, kind: str, text: str, prompt: str, limit: int) -> Axis:
    try:
        return parse_axis(kind, text, prompt, limit)  # type: ignore[arg-type]  # argparse checked the choice
    except InvalidParams as exc:
        raise InvalidParams({f"{flag} ({name})": problem for name, problem in exc.fields.items()}) from None


def sweep_spec(args: argparse.Namespace, preset: Preset | None) -> SweepSpec:
    """The sweep checked whole (provider, axes, cell count, every cell's params) before any work."""
    try:
        limit = max_cells()
    except ValueError:
        raise InvalidParams({"ZIMAGE_SWEEP_MAX_CELLS": "not a whole number: unset it or give one"}) from None
    params = params_from_args(args, preset)
    provider = args.provider or (preset.provider if preset else None)
    if not provider:
        raise InvalidParams({"provider": "required: give --provider ID, or a --preset that has one"})
    get_provider(provider)
    x = _axis("--x-values", args.x_kind, args.x_values, params.prompt, limit)
    if args.y_kind == NO_AXIS and args.y_values.strip():
        raise InvalidParams({"--y-values": f"given without --y-kind; add --y-kind {', '.join(AXIS_LABELS)}"})
    y = (
        _axis("--y-values", args.y_kind, args.y_values, params.prompt, limit)
        if args.y_kind != NO_AXIS
        else None
    )
    spec = SweepSpec(params=params, provider=provider, x=x, y=y)
    check_size(spec, limit)
    plan(spec)  # names the cell whose values can't be sent
    return spec


def run_sweep_command(args: argparse.Namespace) -> int:
    try:
        spec = sweep_spec(args, load_preset(args))
        prepare_out(args.out)
    except (InvalidParams, PresetError) as exc:
        return usage_error(exc)
    lines = ProgressLines(quiet=args.quiet)

    def cells_done(done: int, total: int) -> None:
        lines.update("sweep", Progress(done / total, f"{done}/{total} cells"))

    cells_done(0, spec.cell_count)
    result = asyncio.run(run_sweep(spec, keys=KeyRing(), progress=cells_done))
    lines.clear()
    ran = result.spec  # with the concrete seed every cell used
    cells: list[dict[str, Any]] = []
    for y, row in enumerate(result.outcomes):
        for x, outcome in enumerate(row):
            paths = save_outcome(outcome, args.out, prefix=f"row{y + 1}-col{x + 1}-")
            caption = cell_caption(ran, x, y)
            where = {
                "row": y + 1,
                "col": x + 1,
                "x": ran.x.values[x],
                "y": ran.y.values[y] if ran.y else None,
            }
            cells.append({**where, "caption": caption, **outcome_record(outcome, paths)})
            title = f"row {y + 1} col {x + 1} ({caption})"
            if not args.json:
                print_outcome(title, outcome, paths)
            elif not outcome.ok:
                print(f"{title}: {outcome.error}", file=sys.stderr)
    grid_path = args.out / "grid.png"
    grid_path.write_bytes(result.grid_png())
    failed = sum(1 for cell in cells if cell["error"])
    if args.json:
        summary = {
            "provider": ran.provider,
            "prompt": ran.params.prompt,
            "seed": ran.params.seed,
            "x": ran.x.model_dump(),
            "y": ran.y.model_dump() if ran.y else None,
            "cell_count": ran.cell_count,
            "failed": failed,
            "grid": str(grid_path),
            "cells": cells,
        }
        print(json.dumps(summary))
    else:
        seeded = "seed" in {ran.x.kind, ran.y.kind if ran.y else None}
        seed = "" if seeded else f", seed {ran.params.seed}"
        print(f"sweep: {ran.cell_count - failed} of {ran.cell_count} cells on {ran.provider}{seed}")
        print(f"grid: {grid_path}")
    return EXIT_FAILED if failed else EXIT_OK


# -- info, preset, providers -----------------------------------------------------------------


def run_info(args: argparse.Namespace) -> int:
    try:
        data = read_image_file(args.file)
    except InvalidParams as exc:
        return usage_error(exc)
    spec = read_grid_spec(data)
    record, lines = grid_report(spec) if spec is not None else settings_report(read_png_settings(data))
    if args.json:
        print(json.dumps({"file": str(args.file), **record}))
    else:
        print(record["message"])
        for line in lines:
            print(f"  {line}")
        if record["command"]:
            print(f"make it again: {record['command']}")
    return EXIT_FAILED if record["kind"] == "none" else EXIT_OK


def run_preset_show(args: argparse.Namespace) -> int:
    """Validate a preset file and print it as the app reads it, or say what is wrong."""
    try:
        preset = read_preset(args.file, "file")
    except (InvalidParams, PresetError) as exc:
        return usage_error(exc)
    print(export_preset(preset))
    for title, provider, params in side_runs(preset):
        seed = "random" if params.seed is None else params.seed
        print(
            f"# {title}: {provider}, {params.size}, {params.num_inference_steps} steps, seed {seed}",
            file=sys.stderr,
        )
    return EXIT_OK


def run_providers(args: argparse.Namespace) -> int:
    for provider_id, status in availability(KeyRing()).items():
        if args.json:
            row = {"provider": provider_id, "label": PROVIDERS[provider_id].label}
            print(json.dumps({**row, "usable": status.usable, "reason": status.reason}))
        else:
            state = "ready" if status.usable else "unavailable"
            reason = f" ({status.reason})" if status.reason else ""
            print(f"{provider_id:16} {state}{reason}")
    return EXIT_OK


def run_env(args: argparse.Namespace) -> int:
    """Every environment variable the app reads: set or default, its value (secrets masked), help."""
    for row in env.rows():
        if args.json:
            print(json.dumps(dataclasses.asdict(row)))
        else:
            shown = row.value if len(row.value) <= 40 else row.value[:37] + "..."
            print(f"{row.name:30} {row.source:10} {shown or '-':42} {row.help}")
    return EXIT_OK


def run_enhance(args: argparse.Namespace) -> int:
    """The prompt as the configured enhancer rewrites it, for Z-Image-Turbo."""
    try:
        enhanced = asyncio.run(enhance(args.prompt))
    except EnhancerFailed as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    if args.json:
        print(json.dumps({"prompt": enhanced.prompt, "original": enhanced.original, "model": enhanced.model}))
    else:
        print(enhanced.prompt)
    return EXIT_OK


MAX_VOTES_BYTES = 50 * 2**20  # a CSV of 50,000 votes is a few MB


def run_leaderboard(args: argparse.Namespace) -> int:
    """Ratings from an exported votes CSV (LMArena's battle format): the page's leaderboard."""
    try:
        if args.votes.stat().st_size > MAX_VOTES_BYTES:
            return usage_error(InvalidParams({"votes": f"{_shown(args.votes)} is over 50 MB"}))
        text = args.votes.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        return usage_error(InvalidParams({"votes": f"can't read {_shown(args.votes)}: {exc}"}))
    votes, problems = from_csv(text)
    for problem in problems[:5]:
        print(f"skipped: {problem}", file=sys.stderr)
    if len(problems) > 5:
        print(f"skipped: {len(problems) - 5} more", file=sys.stderr)
    battles = counted(votes)
    if not battles:
        print("error: votes: no counted votes in the file", file=sys.stderr)
        return EXIT_FAILED
    board = rating.leaderboard(battles, rounds=args.rounds)
    if args.json:
        for row in rating.as_json(board):
            print(json.dumps(row))
        return EXIT_OK
    print(f"{'rank':>4}  {'provider':24} {'rating':>6}  {'95% interval':>13}  {'votes':>5}")
    for rank, name, score, interval, count, note in rating.table_rows(board):
        print(f"{rank:>4}  {name:24} {score:>6}  {interval:>13}  {count:>5}  {note}".rstrip())
    print(
        f"{board.battles} votes counted (ties as half a win; intervals from {args.rounds} bootstrap rounds)"
    )
    if board.left_win_rate is not None:
        print(f"the left side won {board.left_win_rate:.0%} of votes with a winner (50%: no position bias)")
    return EXIT_OK


PRESET_COMMANDS = {"show": run_preset_show}
COMMANDS = {
    "leaderboard": run_leaderboard,
    "enhance": run_enhance,
    "generate": run_generate,
    "compare": run_compare,
    "sweep": run_sweep_command,
    "info": run_info,
    "providers": run_providers,
    "env": run_env,
    "preset": lambda args: PRESET_COMMANDS[args.preset_command](args),
}
