"""What the CLI prints, in-process: progress bars on a terminal and in logs, and `info` commands."""

from __future__ import annotations

import io
import shlex

import pytest
from PIL import Image, PngImagePlugin

from zimage_ui.cli import build_parser
from zimage_ui.cli_output import ProgressLines, again_command, progress_text, settings_report
from zimage_ui.infotext import read_png_settings
from zimage_ui.params import parse_params
from zimage_ui.providers.base import Progress
from zimage_ui.sweep import SweepSpec, parse_axis


class Stream(io.StringIO):
    def __init__(self, tty: bool) -> None:
        super().__init__()
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


def test_progress_text_shows_a_bar_and_the_steps():
    assert (
        progress_text("tiny", Progress(0.25, "step 2/8", 2, 8))
        == "tiny: [#####---------------]  25% step 2/8"
    )
    assert progress_text("pod", Progress(None, "queued")) == "pod: queued"
    assert progress_text("x", Progress(1.5, "working", 3, 4)).endswith("] 100% working (step 3/4)")


def test_on_a_terminal_one_line_is_redrawn_in_place(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("COLUMNS", "43")  # 42 characters fit
    stream = Stream(tty=True)
    lines = ProgressLines(stream)
    lines.update("tiny", Progress(0.5, "step 1/2", 1, 2))
    lines.update("tiny", Progress(0.5, "step 1/2", 1, 2))  # the same again: nothing
    lines.update("a-provider-with-a-long-name", Progress(None, "waiting for a free worker in the queue"))
    lines.clear()
    written = stream.getvalue()
    assert "\n" not in written
    assert written.split("\r\x1b[K") == [
        "",
        "tiny: [##########----------]  50% step 1/2",
        "a-provider-with-a-long-name: waiting for a",  # cut to the width: a wrapped line can't be redrawn
        "",
    ]


def test_in_a_log_each_change_is_one_plain_line():
    stream = Stream(tty=False)
    lines = ProgressLines(stream)
    for message in ("queued", "queued", "running", "running"):  # a hosted job, polled
        lines.update("pod", Progress(None, message))
    lines.clear()
    assert stream.getvalue() == "pod: queued\npod: running\n"
    quiet = Stream(tty=True)
    ProgressLines(quiet, quiet=True).update("pod", Progress(0.1, "running"))
    assert quiet.getvalue() == ""


def test_an_image_from_another_model_keeps_turbo_steps_in_the_command(tmp_path):
    info = PngImagePlugin.PngInfo()
    info.add_text(
        "parameters", "a cat\nSteps: 28, Sampler: Euler, CFG scale: 7, Seed: 5, Size: 512x512, Model: sdxl"
    )
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buffer, format="PNG", pnginfo=info)
    record, lines = settings_report(read_png_settings(buffer.getvalue()))
    assert record["kind"] == "settings" and record["params"]["num_inference_steps"] == 28
    args = build_parser().parse_args(shlex.split(record["command"])[3:])
    assert (args.prompt, args.seed, args.width, args.steps, args.guidance) == ("a cat", 5, 512, None, None)
    assert args.provider == ["ID"]  # no provider of ours made it: the command says to pick one
    assert any("keeps Turbo's 8 steps" in line for line in lines)


def test_a_grid_command_gives_back_the_same_axes():
    prompt = "a red fox"
    x = parse_axis("prompt_sr", 'red, "deep, dark blue", "say ""hi"""', prompt)
    y = parse_axis("shift", "1-3 (+0.5)", prompt)
    spec = SweepSpec(params=parse_params(prompt=prompt, seed=4), provider="diffusers-tiny", x=x, y=y)
    args = build_parser().parse_args(shlex.split(again_command({}, None, spec))[3:])
    assert parse_axis(args.x_kind, args.x_values, args.prompt) == x
    assert parse_axis(args.y_kind, args.y_values, args.prompt) == y
    assert y.text() == "1.0, 1.5, 2.0, 2.5, 3.0"
    assert (args.provider, args.seed, args.out.name) == ("diffusers-tiny", 4, "outputs")
