"""Headless use: `python -m zimage_ui generate|compare|sweep|info|preset|providers` for scripts.

    python -m zimage_ui providers
    python -m zimage_ui generate --provider diffusers-tiny --prompt "a red fox" --out outputs
    python -m zimage_ui compare --provider diffusers-tiny:steps=4 --provider aimlapi \\
        --prompt "a red fox" --out outputs/cmp
    python -m zimage_ui sweep --provider diffusers-tiny --prompt "a red fox" \\
        --x-kind steps --x-values "4, 8" --y-kind seed --y-values "1, 2" --out outputs/grid
    python -m zimage_ui info outputs/diffusers-tiny-7-0.png
    python -m zimage_ui preset show fox.yaml

Results go to stdout (`--json`: machine-readable); progress, notes on failures and errors to
stderr. Exit codes: 0 every provider (side, cell) succeeded; 1 any failed (the others still
write their images), or `info` found no settings; 2 invalid arguments or an unreadable input
file, with one line naming the field on stderr.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import logging
import re
import sys
import textwrap
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import NoReturn

from pydantic import ValidationError

from zimage_ui import rating
from zimage_ui.cli_commands import (
    COMMANDS,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    MAX_IMAGE_BYTES,
    NO_AXIS,
)
from zimage_ui.cli_output import PROG
from zimage_ui.compare import Side
from zimage_ui.errors import InvalidParams
from zimage_ui.params import (
    CONTROL_KINDS,
    DEFAULT_CONTROL_SCALE,
    DEFAULT_STRENGTH,
    MAX_CONTROL_SCALE,
    MAX_LORAS,
    LoraRef,
)
from zimage_ui.providers import PROVIDERS
from zimage_ui.settings import TABLE, Setting, Table
from zimage_ui.sweep import AXIS_LABELS, DEFAULT_MAX_CELLS

PACKAGE = "zimage-ui"  # pyproject.toml's [project] name: its version is the one --version prints


def package_version() -> str:
    """The version pyproject.toml declares: the checkout's file when run from one, else the
    installed package's metadata (the file is not installed), else "unknown"."""
    try:
        text = (Path(__file__).resolve().parent.parent / "pyproject.toml").read_text(encoding="utf-8")
    except OSError:
        text = ""
    project = re.search(r"^\[project\]\s*$(.*?)(?=^\[|\Z)", text, re.M | re.S)
    if project and re.search(rf'^name\s*=\s*"{PACKAGE}"', project.group(1), re.M):
        found = re.search(r'^version\s*=\s*"([^"]+)"', project.group(1), re.M)
        if found:
            return found.group(1)
    try:
        return importlib.metadata.version(PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


# -- the parser ------------------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    """Usage errors as one line on stderr (exit 2); `--help` still shows the whole usage."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


class _Help(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Examples kept as written; a flag's default appended unless its help already says it
    (settings whose default comes from GenerationParams or a preset say so themselves)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        help_text = action.help or ""
        if "default:" in help_text or action.default in (None, False, argparse.SUPPRESS):
            return help_text
        return super()._get_help_string(action)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=PROG, description=__doc__, formatter_class=_Help)
    parser.add_argument("--version", action="version", version=f"{PACKAGE} {package_version()}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, summary: str, example: str) -> argparse.ArgumentParser:
        description = textwrap.fill(f"{summary[0].upper()}{summary[1:]}.", 88)
        epilog = f"example:\n  {PROG} {example}"
        return commands.add_parser(
            name, help=summary, description=description, epilog=epilog, formatter_class=_Help
        )

    generate = command(
        "generate",
        "run one prompt on one or more providers at once",
        'generate --provider diffusers-tiny --prompt "a red fox" --seed 7 --out outputs --json',
    )
    generate.add_argument(
        "--provider",
        action="append",
        metavar="ID",
        help="where the image is made (see `providers`); repeat to run several at once"
        " (default: the preset's provider)",
    )
    add_param_flags(generate, "one JSON object per provider per line on stdout")
    add_input_flags(generate)
    generate.add_argument(
        "--enhance",
        action="store_true",
        help="rewrite the prompt with the prompt enhancer first (see `enhance`); the PNG keeps your own"
        " prompt too; nothing is drawn if the enhancer fails",
    )

    compare = command(
        "compare",
        "the same prompt and seed on 2-6 sides; writes each PNG, a sheet and a report",
        "compare --provider diffusers-tiny:steps=4 --provider diffusers-tiny:steps=8,label=eight"
        ' --prompt "a red fox" --out outputs/cmp',
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
    add_param_flags(compare, "the report (as in report.json) as one JSON object on stdout")
    add_input_flags(compare)

    sweep = command(
        "sweep",
        "an X/Y grid: every combination of one or two axes' values on one provider",
        'sweep --provider diffusers-tiny --prompt "a red fox" --x-kind steps --x-values "4, 8"'
        ' --y-kind seed --y-values "1, 2" --out outputs/grid',
    )
    sweep.add_argument(
        "--provider",
        metavar="ID",
        help="where every cell is made, unless an axis is provider (default: the preset's provider)",
    )
    kinds = list(AXIS_LABELS)
    values_help = (
        "a list (1, 4, 8) or a range (1-8, 1-8 (+2), 2-8 [4]); for provider, ids; for prompt_sr,"
        " the text to find in the prompt, then what replaces it in turn (CSV quoting for commas)"
    )
    axes = sweep.add_argument_group(
        "axes", f"At most {DEFAULT_MAX_CELLS} cells, or ZIMAGE_SWEEP_MAX_CELLS (the page's limit too)."
    )
    axes.add_argument("--x-kind", choices=kinds, default="steps", help="what varies across the columns")
    axes.add_argument("--x-values", required=True, metavar="VALUES", help=values_help)
    axes.add_argument(
        "--y-kind", choices=[NO_AXIS, *kinds], default=NO_AXIS, help="what varies down the rows"
    )
    axes.add_argument("--y-values", default="", metavar="VALUES", help="as --x-values (default: none)")
    add_param_flags(sweep, "a summary with every cell as one JSON object on stdout")

    info = command(
        "info",
        "the settings an image carries (made here, or by AUTOMATIC1111, Forge, Civitai) or a grid's sweep",
        "info outputs/diffusers-tiny-7-0.png --json",
    )
    info.add_argument(
        "file", type=Path, metavar="FILE", help=f"a PNG, JPEG or WebP, at most {MAX_IMAGE_BYTES // 2**20} MB"
    )
    info.add_argument("--json", action="store_true", help="what was read as one JSON object on stdout")

    preset = command("preset", "work with preset files", "preset show fox.yaml")
    preset_commands = preset.add_subparsers(dest="preset_command", required=True, metavar="ACTION")
    show = preset_commands.add_parser(
        "show",
        help="validate a preset (JSON or YAML) and print it",
        description=textwrap.fill(
            "Validate a preset (JSON or YAML) and print it as the app reads it (stdout);"
            " each run it makes is summed up on stderr.",
            88,
        ),
        formatter_class=_Help,
    )
    show.add_argument("file", type=Path, metavar="FILE", help="the preset file (.json, .yaml)")

    rewrite = command(
        "enhance",
        "rewrite a prompt the way Z-Image-Turbo likes it, with the configured prompt enhancer",
        'enhance "a cat on a windowsill" --json',
    )
    rewrite.add_argument("prompt", metavar="PROMPT", help="your prompt")
    rewrite.add_argument(
        "--json", action="store_true", help="one JSON object: the rewrite, your prompt and the model"
    )
    board = command(
        "leaderboard",
        "rate providers from exported arena votes (Bradley-Terry, 95%% bootstrap intervals)",
        "leaderboard --votes zimage-votes.csv --json",
    )
    board.add_argument(
        "--votes",
        type=Path,
        required=True,
        metavar="FILE",
        help="votes as CSV in LMArena's battle format (model_a, model_b, winner, ...): the arena's export",
    )
    board.add_argument(
        "--rounds", type=int, default=rating.BOOTSTRAP_ROUNDS, metavar="N", help="bootstrap rounds"
    )
    board.add_argument(
        "--json",
        action="store_true",
        help="one JSON object per provider per line: rating, lower, upper, votes",
    )
    providers = command("providers", "list providers and whether they are usable here", "providers --json")
    providers.add_argument("--json", action="store_true", help="one JSON object per provider per line")
    variables = command(
        "env", "list the environment variables the app reads: set or default (secrets masked)", "env --json"
    )
    variables.add_argument("--json", action="store_true", help="one JSON object per variable per line")
    return parser


def flag_help(setting: Setting) -> str:
    """A setting's CLI help, from the table: what it is, its range, its default."""
    text = setting.help[0].lower() + setting.help[1:].rstrip(".")
    if setting.ranged and setting.name != "seed" and setting.range_text() not in text:
        text += f", {setting.range_text()}"
    if setting.required:
        return f"{text} (required unless the preset has one)"
    if setting.default is None:
        return f"{text} (default: random; the seed used is printed)"
    if setting.default == "":
        return f"{text} (default: none)"
    default = f"{setting.default:g}" if isinstance(setting.default, float) else str(setting.default)
    turbo = ", Turbo's" if setting.turbo is not None else ""
    return f"{text} (default: {default}{turbo})"


def add_param_flags(parser: argparse.ArgumentParser, json_help: str, table: Table = TABLE) -> None:
    """The shared settings, one flag per row of the settings table; their defaults are the table's
    (Turbo's), a preset's over them."""
    settings = parser.add_argument_group(
        "settings", "A --preset's values replace these defaults; flags replace the preset's."
    )
    settings.add_argument("--preset", type=Path, metavar="FILE", help="start from a preset (JSON or YAML)")
    for setting in table:
        settings.add_argument(
            setting.flag,
            type=setting.kind,
            metavar=setting.metavar,
            help=flag_help(setting),
        )
    output = parser.add_argument_group("output")
    output.add_argument(
        "--out", type=Path, required=True, metavar="DIR", help="folder for the PNGs (made if missing)"
    )
    output.add_argument("--json", action="store_true", help=json_help)
    output.add_argument("--quiet", action="store_true", help="no progress on stderr (errors still are)")


def inputs_taken() -> str:
    """Who takes which image input, from the providers' capabilities (the README says the same)."""
    kinds = {
        "an input image": lambda c: c.image_input,
        "a mask": lambda c: c.mask_input,
        "a control image": lambda c: c.control_input,
        "LoRAs": lambda c: c.lora,
    }
    parts = []
    for kind, takes in kinds.items():
        ids = [pid for pid, provider in PROVIDERS.items() if takes(provider.capabilities)]
        parts.append(f"{kind}: {', '.join(ids) or 'no provider here'}")
    return "; ".join(parts) + ". A provider that can't take one refuses the run and says which."


def add_input_flags(parser: argparse.ArgumentParser) -> None:
    """Image-to-image, inpainting, ControlNet and LoRAs, where the provider takes them."""
    inputs = parser.add_argument_group("image inputs", f"Taken by {inputs_taken()}")
    inputs.add_argument(
        "--image",
        metavar="PATH_OR_URL",
        help="input image for image-to-image: a file or an https URL, resized to --width x --height"
        " (default: none, text-to-image)",
    )
    inputs.add_argument(
        "--strength",
        type=float,
        metavar="X",
        help=f"how much of --image is redrawn, 0..1; steps x strength steps run"
        f" (default: {DEFAULT_STRENGTH:g})",
    )
    inputs.add_argument(
        "--mask",
        metavar="PATH_OR_URL",
        help="inpainting mask, the input image's size: white is redrawn, black kept (default: none)",
    )
    inputs.add_argument(
        "--lora",
        action="append",
        type=parse_lora,
        metavar="REF[:SCALE]",
        help=f"a local .safetensors LoRA and its scale (default scale 1); repeat for up to {MAX_LORAS}"
        " (default: none)",
    )
    inputs.add_argument(
        "--control-image",
        type=parse_control_image,
        metavar="[KIND=]PATH_OR_URL",
        help="ControlNet control image, already made (an edge map, depth map or pose skeleton), resized"
        f" to --width x --height; KIND is what it shows: {', '.join(CONTROL_KINDS)} (default: canny);"
        " not with --image (default: none)",
    )
    inputs.add_argument(
        "--control-scale",
        type=parse_control_scale,
        metavar="X",
        help=f"how strongly --control-image steers, 0..{MAX_CONTROL_SCALE:g}"
        f" (default: {DEFAULT_CONTROL_SCALE:g})",
    )


def parse_control_image(text: str) -> tuple[str, str]:
    """`--control-image KIND=PATH` or a bare PATH (canny): (kind, path). A word before `=` that
    is no kind is refused (a path holding `=` elsewhere stays a path)."""
    kind, sep, ref = text.partition("=")
    if not sep or not kind.isalpha():
        kind, ref = "canny", text
    if kind not in CONTROL_KINDS:
        raise argparse.ArgumentTypeError(
            f"{kind[:40]!r} is no control kind: use one of {', '.join(CONTROL_KINDS)}"
        )
    if not ref.strip():
        raise argparse.ArgumentTypeError(f"{text[:80]!r}: give the control image's path or https URL")
    return kind, ref


def parse_control_scale(text: str) -> float:
    """`--control-scale X`: a number in 0..MAX_CONTROL_SCALE."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text[:40]!r} is not a number") from None
    if not 0.0 <= value <= MAX_CONTROL_SCALE:
        raise argparse.ArgumentTypeError(f"{value:g} is outside 0..{MAX_CONTROL_SCALE:g}")
    return value


def parse_lora(text: str) -> LoraRef:
    """`--lora FILE[:SCALE]`: the scale after the last colon when it is a number (paths may hold colons)."""
    ref, _, tail = text.rpartition(":")
    try:
        values = {"ref": ref, "scale": float(tail)} if ref else {"ref": text}
    except ValueError:
        values = {"ref": text}
    try:
        return LoraRef.model_validate(values)
    except ValidationError as exc:
        problem = InvalidParams.from_validation(exc)
        raise argparse.ArgumentTypeError(f"{text[:80]!r}: {'; '.join(problem.fields.values())}") from None


def parse_side(text: str) -> Side:
    """`--provider` for compare: `Side.parse`, its problems as one argparse error line."""
    try:
        return Side.parse(text)
    except InvalidParams as exc:
        raise argparse.ArgumentTypeError(f"{text[:80]!r}: {exc}") from None


@contextmanager
def _one_line_failures() -> Iterator[None]:
    """The runner logs each expected failure for server logs; here it is printed once, by us."""
    runner_log = logging.getLogger("zimage_ui.runner")
    level = runner_log.level
    runner_log.setLevel(logging.ERROR)  # a real bug (ERROR, with a scrubbed traceback) still shows
    try:
        yield
    finally:
        runner_log.setLevel(level)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        with _one_line_failures():
            return COMMANDS[args.command](args)
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except OSError as exc:  # writing the results: disk full, a folder removed mid-run
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
