"""Headless use: `python -m zimage_ui generate|providers` for scripts and team batch runs.

Exit codes: 0 every provider succeeded; 1 any failed (the others still write their
images); 2 invalid arguments, with the validation message on stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from zimage_ui.compare import Side, params_for_sides, run_comparison
from zimage_ui.errors import InvalidParams
from zimage_ui.params import GenerationParams, parse_params
from zimage_ui.presets import (
    Preset,
    PresetError,
    export_preset,
    params_from_preset,
    read_preset_file,
    side_runs,
)
from zimage_ui.providers import PROVIDERS, availability, get_provider
from zimage_ui.providers.base import KeyRing, Progress
from zimage_ui.runner import Outcome, generate_many, save_outcome
from zimage_ui.sheets import render_grid

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2

# CLI flag -> canonical parameter name
PARAM_FLAGS = {
    "prompt": "prompt",
    "negative_prompt": "negative_prompt",
    "width": "width",
    "height": "height",
    "steps": "num_inference_steps",
    "seed": "seed",
    "shift": "shift",
    "guidance": "guidance_scale",
    "num_images": "num_images",
}


class _Parser(argparse.ArgumentParser):
    """Usage errors as one line on stderr (exit 2); `--help` still shows the whole usage."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m zimage_ui", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    generate = commands.add_parser("generate", help="run one prompt on one or more providers")
    generate.add_argument(
        "--provider",
        action="append",
        metavar="ID",
        help="repeat to run several at once (default: the preset's)",
    )
    add_param_flags(generate)
    generate.add_argument("--json", action="store_true", help="one JSON object per provider per line")

    compare = commands.add_parser(
        "compare", help="the same prompt and seed on 2-6 sides; writes each PNG, a sheet and a report"
    )
    compare.add_argument(
        "--provider",
        action="append",
        metavar="ID[:OVERRIDES]",
        type=parse_side,
        help="a side: a provider id, optionally with overrides steps, shift, size (WxH), width, height,"
        " label, e.g. diffusers-tiny:steps=4,shift=2.5,size=512x512 (repeat for 2-6 sides;"
        " default: the preset's sides)",
    )
    add_param_flags(compare)

    preset = commands.add_parser("preset", help="work with preset files")
    preset_commands = preset.add_subparsers(dest="preset_command", required=True)
    show = preset_commands.add_parser("show", help="validate a preset (JSON or YAML) and print it")
    show.add_argument("file", type=Path)

    providers = commands.add_parser("providers", help="list providers and whether they are usable here")
    providers.add_argument("--json", action="store_true")
    return parser


def add_param_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preset", type=Path, metavar="FILE", help="start from a preset (flags override it)")
    parser.add_argument("--prompt")
    parser.add_argument("--negative-prompt")
    parser.add_argument("--width", type=int)
    parser.add_argument("--height", type=int)
    parser.add_argument("--steps", type=int)
    parser.add_argument("--seed", type=int, help="omit for a random seed (the one used is printed)")
    parser.add_argument("--shift", type=float)
    parser.add_argument("--guidance", type=float)
    parser.add_argument("--num-images", type=int)
    parser.add_argument("--out", type=Path, required=True, metavar="DIR")


def parse_side(text: str) -> Side:
    """`--provider` for compare: `Side.parse`, its problems as one argparse error line."""
    try:
        return Side.parse(text)
    except InvalidParams as exc:
        raise argparse.ArgumentTypeError(f"{text[:80]!r}: {exc}") from None


def load_preset(args: argparse.Namespace) -> Preset | None:
    """The --preset file, validated whole (raises PresetError naming each wrong field)."""
    return read_preset_file(args.preset) if args.preset else None


def params_from_args(args: argparse.Namespace, preset: Preset | None = None) -> GenerationParams:
    """The preset's settings (if any) with every flag given on top; raises InvalidParams."""
    base = params_from_preset(preset).model_dump() if preset else {}
    values = {name: getattr(args, flag) for flag, name in PARAM_FLAGS.items()}
    merged = {**base, **{name: value for name, value in values.items() if value is not None}}
    if "prompt" not in merged:
        raise InvalidParams({"prompt": "required: give --prompt, or a --preset that has one"})
    return parse_params(**merged)


def outcome_record(outcome: Outcome, paths: list[Path]) -> dict[str, object]:
    result = outcome.result
    sent = outcome.prepared.sent if outcome.prepared else None
    return {
        "provider": outcome.provider,
        "images": [str(path) for path in paths],
        "seed": outcome.seed,
        "size": f"{sent.width}x{sent.height}" if sent else None,
        "steps": sent.steps_label if sent else None,
        "elapsed_s": round(outcome.elapsed_s, 3),
        "queue_s": result.queue_s if result else None,
        "run_s": result.run_s if result else None,
        "cost": str(result.cost) if result and result.cost else None,
        "notes": list(outcome.prepared.notes) if outcome.prepared else [],
        "error": outcome.error,
    }


def _progress_printer(quiet: bool):
    def report(side: str, update: Progress) -> None:
        if not quiet:
            print(f"{side}: {update.message}", file=sys.stderr, flush=True)

    return report


def run_generate(args: argparse.Namespace) -> int:
    try:
        preset = load_preset(args)
        params = params_from_args(args, preset)
        args.provider = args.provider or ([preset.provider] if preset else [])
        if not args.provider:
            raise InvalidParams({"provider": "required: give --provider ID, or a --preset"})
        for provider_id in args.provider:
            get_provider(provider_id)
    except (InvalidParams, PresetError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    outcomes = asyncio.run(
        generate_many(args.provider, params, keys=KeyRing(), progress=_progress_printer(args.json))
    )
    for outcome in outcomes:
        paths = save_outcome(outcome, args.out)
        record = outcome_record(outcome, paths)
        if args.json:
            print(json.dumps(record), flush=True)
        elif outcome.ok:
            print(
                f"{outcome.provider}: seed {outcome.seed}, {outcome.elapsed_s:.1f} s -> "
                + ", ".join(map(str, paths))
            )
        else:
            print(f"{outcome.error}", file=sys.stderr)
    return EXIT_OK if all(outcome.ok for outcome in outcomes) else EXIT_FAILED


def run_providers(args: argparse.Namespace) -> int:
    statuses = availability(KeyRing())
    for provider_id, status in statuses.items():
        provider = PROVIDERS[provider_id]
        if args.json:
            print(
                json.dumps(
                    {
                        "provider": provider_id,
                        "label": provider.label,
                        "usable": status.usable,
                        "reason": status.reason,
                    }
                )
            )
        else:
            state = "ready" if status.usable else "unavailable"
            reason = f" ({status.reason})" if status.reason else ""
            print(f"{provider_id:16} {state}{reason}")
    return EXIT_OK


def run_compare(args: argparse.Namespace) -> int:
    try:
        preset = load_preset(args)
        params = params_from_args(args, preset)
        sides: list[Side] = args.provider or (list(preset.sides or []) if preset else [])
        for side in sides:
            get_provider(side.provider)
        check = _checked(sides, params)
    except (InvalidParams, PresetError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    outcomes = asyncio.run(
        run_comparison(
            sides, check, keys=KeyRing(), progress=lambda i, u: _progress_printer(False)(sides[i].title(), u)
        )
    )
    args.out.mkdir(parents=True, exist_ok=True)
    report = []
    for index, (side, outcome) in enumerate(zip(sides, outcomes, strict=True)):
        paths = save_outcome(outcome, args.out / f"side-{index + 1}")
        report.append({"side": index + 1, "title": side.title(), **outcome_record(outcome, paths)})
        status = f"{outcome.elapsed_s:.1f} s" if outcome.ok else outcome.error
        print(f"side {index + 1} {side.title()}: {status}", file=sys.stderr)
    sheet = render_grid(
        [[o.result.images[0] if o.ok and o.result else None for o in outcomes]],
        [side.title() for side in sides],
        errors=[[o.error for o in outcomes]],
    )
    sheet.save(args.out / "sheet.png")
    (args.out / "report.json").write_text(
        json.dumps(
            {
                "prompt": check.prompt,
                "seed": check.seed,
                "sides": report,
                "sheet": str(args.out / "sheet.png"),
            },
            indent=2,
        )
    )
    print(json.dumps({"report": str(args.out / "report.json"), "sheet": str(args.out / "sheet.png")}))
    return EXIT_OK if all(outcome.ok for outcome in outcomes) else EXIT_FAILED


def _checked(sides: list[Side], params: GenerationParams) -> GenerationParams:
    """Validate every side's overrides before any work; return params with one concrete seed."""
    concrete = params.with_concrete_seed()
    params_for_sides(sides, concrete)
    return concrete


def run_preset_show(args: argparse.Namespace) -> int:
    """Validate a preset file and print it as the app reads it, or say what is wrong."""
    try:
        preset = read_preset_file(args.file)
    except PresetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    print(export_preset(preset))
    runs = side_runs(preset)
    for title, provider, params in runs:
        seed = "random" if params.seed is None else params.seed
        print(
            f"# {title}: {provider}, {params.size}, {params.num_inference_steps} steps, seed {seed}",
            file=sys.stderr,
        )
    return EXIT_OK


def run_preset(args: argparse.Namespace) -> int:
    return PRESET_COMMANDS[args.preset_command](args)


PRESET_COMMANDS = {"show": run_preset_show}
COMMANDS = {
    "generate": run_generate,
    "compare": run_compare,
    "providers": run_providers,
    "preset": run_preset,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return COMMANDS[args.command](args)
