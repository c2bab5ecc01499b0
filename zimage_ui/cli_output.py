"""What the CLI prints: progress bars on stderr, result lines and JSON records, image reports.

Progress never reaches stdout, so `--json` output stays parseable while a run shows how far
it is. No terminal library: a `\\r` line on a terminal, plain lines anywhere else.
"""

from __future__ import annotations

import shlex
import shutil
import sys
import threading
from pathlib import Path
from typing import Any, TextIO

from zimage_ui.infotext import ReadBack
from zimage_ui.params import TURBO_STEPS
from zimage_ui.providers.base import Progress
from zimage_ui.runner import Outcome
from zimage_ui.settings import TABLE
from zimage_ui.sweep import AXIS_LABELS, SweepSpec

PROG = "python -m zimage_ui"
BAR_WIDTH = 20

# CLI flag -> canonical parameter name (flags read them; `again_command` writes them back)
PARAM_FLAGS = TABLE.short_to_name()  # flag (argparse dest) -> canonical name
TURBO_TUNED = TABLE.turbo_tuned()  # another model's values for these don't suit Turbo


# -- progress --------------------------------------------------------------------------------


def progress_text(label: str, update: Progress) -> str:
    """`label: [#####---------------]  25% step 2/8`; the bar only where the fraction is known."""
    parts = [f"{label}:"]
    if update.fraction is not None:
        fraction = min(max(update.fraction, 0.0), 1.0)
        filled = round(BAR_WIDTH * fraction)
        parts.append(f"[{'#' * filled}{'-' * (BAR_WIDTH - filled)}] {fraction:4.0%}")
    parts.append(update.message)
    if update.step is not None and update.total and f"{update.step}/{update.total}" not in update.message:
        parts.append(f"(step {update.step}/{update.total})")
    return " ".join(parts)


class ProgressLines:
    """Progress on stderr: on a terminal one line redrawn in place with `\\r`; elsewhere (logs,
    pipes, tests) a plain line each time a side's text changes (a hosted poll that says the same
    again prints nothing). Previews are not shown. Thread-safe: local models report from their
    worker thread."""

    def __init__(self, stream: TextIO | None = None, *, quiet: bool = False) -> None:
        self.stream = stream or sys.stderr
        self.quiet = quiet
        self.tty = self.stream.isatty()
        self._last: dict[str, str] = {}
        self._drawn = False  # a `\r` line is on screen, waiting to be cleared
        self._lock = threading.Lock()

    def update(self, label: str, update: Progress) -> None:
        if self.quiet:
            return
        text = progress_text(label, update)
        with self._lock:
            if self._last.get(label) == text:
                return
            self._last[label] = text
            if self.tty:  # cut to the terminal's width: a wrapped line can't be redrawn with `\r`
                width = shutil.get_terminal_size().columns - 1
                text = text[: max(width, 20)]
            self.stream.write(f"\r\x1b[K{text}" if self.tty else f"{text}\n")
            self._drawn = self.tty
            self.stream.flush()

    def clear(self) -> None:
        """Take the `\\r` line off the screen, so what follows starts on a clean line."""
        with self._lock:
            if self._drawn:
                self.stream.write("\r\x1b[K")
                self.stream.flush()
                self._drawn = False


# -- results ---------------------------------------------------------------------------------


def outcome_record(outcome: Outcome, paths: list[Path]) -> dict[str, Any]:
    """One provider's (side's, cell's) result as JSON: what was sent, its files, notes, error."""
    result = outcome.result
    sent = outcome.prepared.sent if outcome.prepared else None
    return {
        "provider": outcome.provider,
        "images": [str(path) for path in paths],
        "seed": outcome.seed,
        "size": f"{sent.width}x{sent.height}" if sent else None,
        "steps": sent.steps if sent else None,  # null: the provider picked its own
        "sent": sent.record() if sent else None,
        "elapsed_s": round(outcome.elapsed_s, 3),
        "queue_s": result.queue_s if result else None,
        "run_s": result.run_s if result else None,
        "cost": str(result.cost) if result and result.cost else None,
        "notes": list(outcome.prepared.notes) if outcome.prepared else [],
        "error": outcome.error,
    }


def print_outcome(title: str, outcome: Outcome, paths: list[Path]) -> None:
    """A result line with what was really sent, then one `note:` line per adjustment the
    provider needed (a size snapped, steps clamped); stdout on success, stderr on failure."""
    sent = outcome.prepared.sent if outcome.prepared else None
    if outcome.ok:
        what = f"seed {outcome.seed}, {sent.width}x{sent.height}, {sent.steps_label} steps, " if sent else ""
        cost = f", {outcome.result.cost}" if outcome.result and outcome.result.cost else ""
        line = f"{title}: {what}{outcome.elapsed_s:.1f} s{cost} -> " + ", ".join(map(str, paths))
    else:
        line = f"{title}: {'stopped' if outcome.stopped else 'failed'}: {outcome.error}"
    stream = sys.stdout if outcome.ok else sys.stderr
    print(line, file=stream)
    for note in outcome.prepared.notes if outcome.prepared else ():
        print(f"  note: {note}", file=stream)
    stream.flush()


def cell_caption(spec: SweepSpec, x: int, y: int) -> str:
    """The cell's place on the axes, e.g. "Steps: 4, Seed: 7" (ASCII, for any terminal)."""
    caption = spec.x.label(spec.x.values[x])
    return f"{caption}, {spec.y.label(spec.y.values[y])}" if spec.y else caption


# -- info: what an image says about how it was made ------------------------------------------


def _setting_flags(values: dict[str, Any]) -> list[str]:
    words: list[str] = []
    for flag, name in PARAM_FLAGS.items():
        value = values.get(name)
        if value is None or value == "" or (name == "num_images" and value == 1):
            continue
        words += [f"--{flag.replace('_', '-')}", f"{value:g}" if isinstance(value, float) else str(value)]
    inputs = values.get("inputs") or {}
    for flag in ("image", "strength", "mask"):
        if inputs.get(flag) is not None:
            words += [f"--{flag}", f"{inputs[flag]:g}" if flag == "strength" else str(inputs[flag])]
    for lora in inputs.get("loras") or []:
        words += ["--lora", f"{lora['ref']}:{lora['scale']:g}"]
    return words


def again_command(params: dict[str, Any], provider: str | None, spec: SweepSpec | None = None) -> str:
    """The CLI command that makes it again (one line, shell-quoted); ID where no provider is known."""
    if spec is not None:
        words = [*PROG.split(), "sweep", "--provider", spec.provider]
        words += ["--x-kind", spec.x.kind, "--x-values", spec.x.text()]
        if spec.y:
            words += ["--y-kind", spec.y.kind, "--y-values", spec.y.text()]
        words += _setting_flags(spec.params.model_dump())
    else:
        words = [*PROG.split(), "generate", "--provider", provider or "ID", *_setting_flags(params)]
    return shlex.join([*words, "--out", "outputs"])


def grid_report(spec: SweepSpec) -> tuple[dict[str, Any], list[str]]:
    """A sweep grid's record (`kind` "grid") and the lines that show it."""
    axes = " by ".join(AXIS_LABELS[axis.kind] for axis in (spec.x, spec.y) if axis)
    record = {
        "kind": "grid",
        "message": f"A sweep grid: {spec.cell_count} cells of {spec.provider}, {axes}.",
        "sweep": spec.model_dump(mode="json"),
        "command": again_command({}, None, spec),
    }
    lines = [f"x axis: {AXIS_LABELS[spec.x.kind]} {spec.x.text()}"]
    if spec.y:
        lines.append(f"y axis: {AXIS_LABELS[spec.y.kind]} {spec.y.text()}")
    lines += _value_lines(spec.params.model_dump(mode="json"))
    return record, lines


def settings_report(read: ReadBack) -> tuple[dict[str, Any], list[str]]:
    """An image's settings as the PNG info tab reads them (`kind` "settings", or "none").

    An image made by another model (not ours, no provider of ours) keeps Turbo's steps and
    guidance in the command: its own suit that model, not Turbo.
    """
    turbo = read.turbo
    again = {k: v for k, v in read.params.items() if turbo or k not in TURBO_TUNED}
    record = {
        "kind": "settings" if read.source else "none",
        "message": read.message,
        "source": read.source,
        "params": read.params,
        "provider": read.provider,
        "ignored": read.ignored,
        "command": again_command(again, read.provider) if "prompt" in read.params else None,
    }
    lines = _value_lines(read.params)
    if read.provider:
        lines.append(f"provider: {read.provider}")
    lines += [f"not used: {key}: {value}" for key, value in read.ignored.items()]
    if record["command"] and not turbo and any(k in read.params for k in TURBO_TUNED):
        lines.append(f"the command keeps Turbo's {TURBO_STEPS} steps and guidance 0: its own suit its model")
    return record, lines


def _value_lines(params: dict[str, Any]) -> list[str]:
    return [f"{name}: {value}" for name, value in params.items() if name != "options" and value != ""]
