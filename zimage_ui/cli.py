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

from zimage_ui.errors import InvalidParams
from zimage_ui.params import GenerationParams, parse_params
from zimage_ui.providers import PROVIDERS, availability, get_provider
from zimage_ui.providers.base import KeyRing, Progress
from zimage_ui.runner import Outcome, generate_many, save_outcome

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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m zimage_ui", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    generate = commands.add_parser("generate", help="run one prompt on one or more providers")
    generate.add_argument(
        "--provider", action="append", required=True, metavar="ID", help="repeat to run several at once"
    )
    generate.add_argument("--prompt", required=True)
    generate.add_argument("--negative-prompt")
    generate.add_argument("--width", type=int)
    generate.add_argument("--height", type=int)
    generate.add_argument("--steps", type=int)
    generate.add_argument("--seed", type=int, help="omit for a random seed (the one used is printed)")
    generate.add_argument("--shift", type=float)
    generate.add_argument("--guidance", type=float)
    generate.add_argument("--num-images", type=int)
    generate.add_argument("--out", type=Path, required=True, metavar="DIR")
    generate.add_argument("--json", action="store_true", help="one JSON object per provider per line")

    providers = commands.add_parser("providers", help="list providers and whether they are usable here")
    providers.add_argument("--json", action="store_true")
    return parser


def params_from_args(args: argparse.Namespace) -> GenerationParams:
    values = {name: getattr(args, flag) for flag, name in PARAM_FLAGS.items()}
    return parse_params(**{name: value for name, value in values.items() if value is not None})


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
        params = params_from_args(args)
        for provider_id in args.provider:
            get_provider(provider_id)
    except InvalidParams as exc:
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
                + ", ".join(record["images"])
            )  # type: ignore[arg-type]
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


COMMANDS = {"generate": run_generate, "providers": run_providers}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return COMMANDS[args.command](args)
