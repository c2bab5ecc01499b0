"""`python -m zimage_ui` as scripts use it: exit codes, JSON lines, PNG provenance."""

import json
import shlex
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.cli_runs import CliRun, cli, cli_process
from zimage_ui.metadata import read_provenance, read_text_chunks

FOX = [
    "--provider",
    "diffusers-tiny",
    "--prompt",
    "a red fox",
    "--seed",
    "7",
    "--width",
    "256",
    "--height",
    "256",
]


def test_generate_writes_png_with_provenance_and_json_line(tmp_path: Path):
    run = cli("generate", *FOX, "--out", str(tmp_path), "--json")
    assert run.returncode == 0, run.stderr
    records = [json.loads(line) for line in run.stdout.splitlines()]
    assert len(records) == 1
    record = records[0]
    assert record["provider"] == "diffusers-tiny"
    assert record["seed"] == 7
    assert record["error"] is None
    assert record["elapsed_s"] > 0
    image_path = Path(record["images"][0])
    data = image_path.read_bytes()
    parameters = read_text_chunks(data)["parameters"]
    assert parameters.splitlines()[0] == "a red fox"
    assert "Seed: 7" in parameters and "Size: 256x256" in parameters
    assert read_provenance(data)["params"]["seed"] == 7


def test_same_command_twice_gives_identical_pixels(tmp_path: Path):
    """Once in a fresh process and once in this one: the seed alone fixes the pixels."""
    paths = []
    for name, run_command in (("one", cli_process), ("two", cli)):
        run = run_command("generate", *FOX, "--out", str(tmp_path / name), "--json")
        assert run.returncode == 0, run.stderr
        paths.append(json.loads(run.stdout)["images"][0])
    first, second = (np.asarray(Image.open(p)) for p in paths)
    assert first.shape == (256, 256, 3)
    assert np.array_equal(first, second)


def test_invalid_width_exits_2_naming_the_field(tmp_path: Path):
    run = cli(
        "generate",
        "--provider",
        "diffusers-tiny",
        "--prompt",
        "fox",
        "--width",
        "1000",
        "--out",
        str(tmp_path),
    )
    assert run.returncode == 2
    assert "width" in run.stderr and "multiple of 16" in run.stderr
    assert not list(tmp_path.iterdir())


def test_empty_prompt_exits_2_naming_the_field(tmp_path: Path):
    run = cli("generate", "--provider", "diffusers-tiny", "--prompt", " ", "--out", str(tmp_path))
    assert run.returncode == 2
    assert "prompt" in run.stderr and "empty" in run.stderr


def test_unknown_provider_exits_2(tmp_path: Path):
    run = cli("generate", "--provider", "dall-e", "--prompt", "fox", "--out", str(tmp_path))
    assert run.returncode == 2
    assert "unknown provider" in run.stderr


def test_one_failing_provider_exits_1_and_the_other_still_writes(tmp_path: Path):
    # `diffusers` can't run on this CPU-only, small-memory test machine: it fails cleanly.
    run = cli(
        "generate",
        *FOX,
        "--provider",
        "diffusers",
        "--out",
        str(tmp_path),
        "--json",
        env={"PATH": "", "ZIMAGE_MODEL_ID": str(tmp_path / "missing-checkpoint")},
    )
    records = {r["provider"]: r for r in map(json.loads, run.stdout.splitlines())}
    assert run.returncode == 1
    assert records["diffusers-tiny"]["error"] is None
    assert Path(records["diffusers-tiny"]["images"][0]).exists()
    assert records["diffusers"]["images"] == []
    assert records["diffusers"]["error"].startswith("diffusers:")
    assert "Traceback" not in run.stderr


def test_providers_lists_every_id_with_usability():
    run = cli("providers", "--json")
    assert run.returncode == 0
    rows = {r["provider"]: r for r in map(json.loads, run.stdout.splitlines())}
    assert {"diffusers", "diffusers-tiny"} <= set(rows)
    assert rows["diffusers-tiny"]["usable"] is True
    for row in rows.values():
        assert row["usable"] or row["reason"]


def test_compare_writes_each_side_a_sheet_and_a_report(tmp_path: Path):
    run = cli(
        "compare",
        "--provider",
        "diffusers-tiny:steps=2",
        "--provider",
        "diffusers-tiny:steps=4,label=four",
        "--prompt",
        "a red fox",
        "--seed",
        "3",
        "--width",
        "256",
        "--height",
        "256",
        "--out",
        str(tmp_path),
    )
    assert run.returncode == 0, run.stderr
    report = json.loads((tmp_path / "report.json").read_text())
    assert [side["title"] for side in report["sides"]] == ["diffusers-tiny (steps 2)", "four"]
    assert [side["steps"] for side in report["sides"]] == [2, 4]
    assert {side["seed"] for side in report["sides"]} == {3}
    for side in report["sides"]:
        assert Path(side["images"][0]).exists()
    sheet = Image.open(tmp_path / "sheet.png")
    assert sheet.width == 512 and sheet.height > 256


def test_compare_with_a_failing_side_exits_1_and_reports_it(tmp_path: Path):
    run = cli(
        "compare",
        "--provider",
        "diffusers-tiny",
        "--provider",
        "runpod",
        "--prompt",
        "fox",
        "--width",
        "256",
        "--height",
        "256",
        "--out",
        str(tmp_path),
        env={"PATH": "", "RUNPOD_API_KEY": ""},
    )
    assert run.returncode == 1
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["sides"][0]["error"] is None
    assert "RUNPOD_API_KEY" in report["sides"][1]["error"]
    assert (tmp_path / "sheet.png").exists()


def test_compare_bad_side_override_exits_2(tmp_path: Path):
    run = cli(
        "compare",
        "--provider",
        "diffusers-tiny:steps=4",
        "--provider",
        "diffusers-tiny:size=1000x256",
        "--prompt",
        "fox",
        "--out",
        str(tmp_path),
    )
    assert run.returncode == 2
    assert "width" in run.stderr and "multiple of 16" in run.stderr
    run = cli(
        "compare",
        "--provider",
        "diffusers-tiny:colour=red",
        "--provider",
        "diffusers-tiny",
        "--prompt",
        "fox",
        "--out",
        str(tmp_path),
    )
    assert run.returncode == 2 and "colour: unknown override; use steps, shift, size" in run.stderr


@pytest.mark.parametrize("provider", ["diffusers-tiny", "scenario"])
def test_compare_bad_side_text_is_one_line_naming_the_key(provider: str, tmp_path: Path):
    run = cli(
        "compare",
        "--provider",
        f"{provider}:steps=abc",
        "--provider",
        "diffusers-tiny",
        "--prompt",
        "x",
        "--out",
        str(tmp_path),
    )
    assert run.returncode == 2
    assert len(run.stderr.splitlines()) == 1, run.stderr
    assert "--provider" in run.stderr and "steps: 'abc' is not a whole number, e.g. steps=4" in run.stderr
    assert not any(words in run.stderr for words in ("validation error", "pydantic", "http"))
    assert run.stdout == "" and not any(tmp_path.iterdir())


PAIR = """\
schema_version: 1
name: fox pair
prompt: a red fox
width: 256
height: 256
seed: 3
provider: diffusers-tiny
sides:
  - provider: diffusers-tiny
    num_inference_steps: 2
  - provider: diffusers-tiny
    num_inference_steps: 4
"""


def test_generate_from_a_preset_with_flags_on_top(tmp_path: Path):
    preset = tmp_path / "pair.yaml"
    preset.write_text(PAIR)
    run = cli("generate", "--preset", str(preset), "--steps", "3", "--out", str(tmp_path / "out"), "--json")
    assert run.returncode == 0, run.stderr
    record = json.loads(run.stdout)
    assert (record["provider"], record["seed"], record["size"], record["steps"]) == (
        "diffusers-tiny",
        3,
        "256x256",
        3,
    )
    assert read_provenance(Path(record["images"][0]).read_bytes())["params"]["prompt"] == "a red fox"


def test_compare_takes_its_sides_from_a_preset(tmp_path: Path):
    preset = tmp_path / "pair.yaml"
    preset.write_text(PAIR)
    run = cli("compare", "--preset", str(preset), "--out", str(tmp_path / "out"))
    assert run.returncode == 0, run.stderr
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert [side["steps"] for side in report["sides"]] == [2, 4]


def test_preset_show_prints_it_and_refuses_bad_ones(tmp_path: Path):
    good = tmp_path / "pair.yaml"
    good.write_text(PAIR)
    run = cli("preset", "show", str(good))
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["sides"][1]["num_inference_steps"] == 4
    assert "256x256, 4 steps, seed 3" in run.stderr
    bad = tmp_path / "bad.json"
    bad.write_text(
        '{"prompt": "x", "provider": "runpod", "base_url": "http://example.invalid", "width": 1000}'
    )
    run = cli("preset", "show", str(bad))
    assert run.returncode == 2
    assert "base_url" in run.stderr and "width" in run.stderr
    newer = tmp_path / "newer.json"
    newer.write_text('{"schema_version": 9, "prompt": "x", "provider": "runpod"}')
    run = cli("generate", "--preset", str(newer), "--out", str(tmp_path / "o"))
    assert run.returncode == 2 and "newer" in run.stderr


def test_generate_without_a_prompt_or_preset_exits_2(tmp_path: Path):
    run = cli("generate", "--provider", "diffusers-tiny", "--out", str(tmp_path))
    assert run.returncode == 2 and "prompt" in run.stderr


# -- the finished CLI: version, help, progress, notes, compare --json, sweep, info -----------

PYDANTIC_TEXT = ("validation error", "errors.pydantic.dev", "pydantic", "Traceback", "https://")


def one_clear_line(run: CliRun | subprocess.CompletedProcess[str], *words: str) -> None:
    """Exit 2 with one line on stderr that says `words`, nothing on stdout, no library text."""
    assert run.returncode == 2, run.stderr
    assert len(run.stderr.splitlines()) == 1, run.stderr
    assert all(word in run.stderr for word in words), run.stderr
    assert not any(text in run.stderr for text in PYDANTIC_TEXT), run.stderr
    assert run.stdout == ""


def test_version_is_the_one_pyproject_declares():
    import tomllib

    declared = tomllib.loads(Path("pyproject.toml").read_text())["project"]["version"]
    run = cli_process("--version")  # the entry point itself
    assert run.returncode == 0, run.stderr
    assert run.stdout == f"zimage-ui {declared}\n"


def test_help_shows_every_setting_with_its_real_default():
    from zimage_ui.params import GenerationParams

    fields = GenerationParams.model_fields
    for command in ("generate", "compare", "sweep"):
        run = cli(command, "--help")
        assert run.returncode == 0, run.stderr
        text = " ".join(run.stdout.split())  # argparse wraps lines
        for flag, name in [("--steps", "num_inference_steps"), ("--width", "width"), ("--height", "height")]:
            assert f"{flag} " in text and f"(default: {fields[name].default}" in text, (command, flag)
        assert f"(default: {fields['shift'].default:g})" in text
        assert f"(default: {fields['guidance_scale'].default:g}, Turbo's)" in text
        assert "(default: random" in text
        assert "(default: None)" not in text
    sweep = " ".join(cli("sweep", "--help").stdout.split())
    assert (
        "--x-kind {seed,steps,shift,variety,strength,lora_scale,provider,prompt_sr} "
        "what varies across the columns (default: steps)" in (sweep)
    )


def test_every_flag_of_every_command_has_help():
    import argparse

    from zimage_ui.cli import build_parser

    def parsers(parser: argparse.ArgumentParser):
        yield parser
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for child in action.choices.values():
                    yield from parsers(child)

    seen = set()
    for parser in parsers(build_parser()):
        seen.add(parser.prog.removeprefix("python -m zimage_ui").strip())
        for action in parser._actions:
            if not isinstance(action, argparse._SubParsersAction):
                assert action.help, f"{parser.prog} {action.option_strings or action.dest} has no help"
    commands = {
        "generate",
        "compare",
        "sweep",
        "info",
        "preset",
        "preset show",
        "providers",
        "env",
        "leaderboard",
        "enhance",
    }
    assert seen == {"", *commands}


def test_preset_show_of_a_missing_file_exits_2_with_one_line(tmp_path: Path):
    one_clear_line(
        # a fresh process: nothing else (a warning, a log line) reaches stderr either
        cli_process("preset", "show", str(tmp_path / "missing.json")),
        "file",
        "missing.json",
        "no such file",
    )
    one_clear_line(
        cli("generate", "--preset", str(tmp_path / "gone.yaml"), "--out", str(tmp_path / "o")),
        "--preset",
        "gone.yaml",
    )
    assert not (tmp_path / "o").exists()


def test_generate_json_keeps_progress_on_stderr_and_only_json_on_stdout(tmp_path: Path):
    run = cli("generate", *FOX, "--steps", "2", "--out", str(tmp_path), "--json")
    assert run.returncode == 0, run.stderr
    [record] = [json.loads(line) for line in run.stdout.splitlines()]  # every stdout line is JSON
    assert record["steps"] == 2 and record["sent"]["steps"] == 2
    progress = run.stderr.splitlines()
    assert "diffusers-tiny: [##########----------]  50% step 1/2" in progress
    assert "diffusers-tiny: [####################] 100% step 2/2" in progress
    assert any("decoding" in line for line in progress)
    assert "\r" not in run.stderr  # not a terminal: plain lines, no bar redrawn in place
    quiet = cli("generate", *FOX, "--steps", "1", "--out", str(tmp_path), "--json", "--quiet")
    assert quiet.returncode == 0 and quiet.stderr == "" and json.loads(quiet.stdout)["steps"] == 1


def test_human_output_shows_what_the_provider_adjusted(emulators, tmp_path: Path):
    run = cli(
        "generate",
        "--provider",
        "aimlapi",
        "--prompt",
        "a red fox",
        "--steps",
        "20",
        "--width",
        "256",
        "--height",
        "256",
        "--seed",
        "5",
        "--out",
        str(tmp_path),
    )
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert lines[0].startswith("aimlapi: seed 5, 512x512, 8 steps, ")
    assert "  note: sent 8 steps instead of 20: AIML API accepts 1..8" in lines
    assert any(line.startswith("  note: sent 512x512 instead of 256x256") for line in lines)


def test_compare_json_is_the_report_and_human_output_has_the_notes(emulators, tmp_path: Path):
    sides = ["--provider", "aimlapi:steps=20", "--provider", "runpod:label=pod"]
    shared = ["--prompt", "a red fox", "--seed", "9", "--width", "512", "--height", "512"]
    run = cli("compare", *sides, *shared, "--out", str(tmp_path / "json"), "--json")
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout)
    assert report == json.loads((tmp_path / "json" / "report.json").read_text())
    assert report["seed"] == 9 and report["sheet"] == str(tmp_path / "json" / "sheet.png")
    assert [side["title"] for side in report["sides"]] == ["aimlapi (steps 20)", "pod"]
    assert report["sides"][0]["steps"] == 8
    assert report["sides"][1]["steps"] is None  # RunPod picks its own steps
    assert report["sides"][1]["sent"]["steps_default"] == 8
    assert "sent 8 steps instead of 20: AIML API accepts 1..8" in report["sides"][0]["notes"]
    assert "side 1 aimlapi (steps 20):" in run.stderr  # progress, on stderr
    human = cli("compare", *sides, *shared, "--out", str(tmp_path / "text"))
    assert human.returncode == 0, human.stderr
    lines = human.stdout.splitlines()
    assert lines[0].startswith("side 1 aimlapi (steps 20): seed 9, 512x512, 8 steps, ")
    assert "  note: sent 8 steps instead of 20: AIML API accepts 1..8" in lines
    assert any(line.startswith("side 2 pod: seed 9, 512x512, provider default steps, ") for line in lines)
    assert lines[-2:] == [
        f"sheet: {tmp_path / 'text' / 'sheet.png'}",
        f"report: {tmp_path / 'text' / 'report.json'}",
    ]


@pytest.fixture(scope="module")
def swept(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, CliRun]:
    """One 2x2 sweep on the tiny model (steps 1, 2 by seed 1, 2), shared by the tests that read it."""
    out = tmp_path_factory.mktemp("sweep")
    run = cli(
        "sweep",
        "--provider",
        "diffusers-tiny",
        "--prompt",
        "a red fox",
        "--width",
        "256",
        "--height",
        "256",
        "--x-kind",
        "steps",
        "--x-values",
        "1, 2",
        "--y-kind",
        "seed",
        "--y-values",
        "1-2",
        "--out",
        str(out),
        "--json",
    )
    return out, run


def test_sweep_writes_a_grid_and_each_cell(swept):
    out, run = swept
    assert run.returncode == 0, run.stderr
    summary = json.loads(run.stdout)
    assert summary["cell_count"] == 4 and summary["failed"] == 0
    assert summary["grid"] == str(out / "grid.png")
    cells = {(cell["row"], cell["col"]): cell for cell in summary["cells"]}
    assert sorted(cells) == [(1, 1), (1, 2), (2, 1), (2, 2)]
    for (row, col), cell in cells.items():
        assert (cell["x"], cell["y"]) == ([1, 2][col - 1], [1, 2][row - 1])
        assert (cell["steps"], cell["seed"]) == (cell["x"], cell["y"])
        [image] = cell["images"]
        assert Path(image).name == f"row{row}-col{col}-diffusers-tiny-{cell['y']}-0.png"
        assert read_provenance(Path(image).read_bytes())["params"]["num_inference_steps"] == cell["x"]
    assert sorted(path.name for path in out.iterdir()) == sorted(
        ["grid.png", *(Path(cell["images"][0]).name for cell in cells.values())]
    )
    grid = Image.open(out / "grid.png")
    assert grid.width > 2 * 256 and grid.height > 2 * 256  # two columns, two rows, labels
    assert "sweep: [####################] 100% 4/4 cells" in run.stderr.splitlines()


def test_sweep_checks_its_axes_before_any_work(tmp_path: Path):
    base = ["sweep", "--provider", "diffusers-tiny", "--prompt", "fox", "--out", str(tmp_path / "o")]
    one_clear_line(cli(*base, "--x-values", "4, abc"), "--x-values", "'abc' is not a number")
    one_clear_line(cli(*base, "--x-values", "1-8", "--y-kind", "seed", "--y-values", "1-8"), "64 cells")
    one_clear_line(cli(*base, "--x-values", "4, 60"), "Steps: 60", "1..50")
    assert not (tmp_path / "o").exists()


def test_info_prints_the_settings_of_a_png_the_cli_made(swept):
    from zimage_ui.cli import build_parser

    out, _ = swept
    cell = out / "row2-col1-diffusers-tiny-2-0.png"
    run = cli("info", str(cell))
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert lines[0].startswith("Loaded from the image's zimage-ui record: seed 2, 256x256, 1 steps")
    assert {
        "  prompt: a red fox",
        "  seed: 2",
        "  num_inference_steps: 1",
        "  provider: diffusers-tiny",
    } <= set(lines)
    as_json = cli("info", str(cell), "--json")
    assert as_json.returncode == 0, as_json.stderr
    record = json.loads(as_json.stdout)
    assert (record["kind"], record["source"], record["provider"]) == ("settings", "zimage", "diffusers-tiny")
    assert record["params"]["seed"] == 2 and record["params"]["width"] == 256
    # The command it prints makes the same image again: the same settings, read by the parser.
    assert lines[-1] == f"make it again: {record['command']}"
    words = shlex.split(record["command"])
    assert words[:3] == ["python", "-m", "zimage_ui"]
    again = build_parser().parse_args(words[3:])
    assert (again.provider, again.prompt, again.seed, again.steps, again.width) == (
        ["diffusers-tiny"],
        "a red fox",
        2,
        1,
        256,
    )


def test_info_reads_a_sweep_grid(swept):
    out, sweep = swept
    run = cli("info", str(out / "grid.png"), "--json")
    assert run.returncode == 0, run.stderr
    record = json.loads(run.stdout)
    assert record["kind"] == "grid"
    assert record["sweep"]["x"] == {"kind": "steps", "values": [1, 2]}
    assert record["sweep"]["y"] == {"kind": "seed", "values": [1, 2]}
    assert record["sweep"]["params"]["seed"] == json.loads(sweep.stdout)["seed"]
    assert "--x-kind steps --x-values '1, 2' --y-kind seed --y-values '1, 2'" in record["command"]
    human = cli("info", str(out / "grid.png"))
    assert human.stdout.startswith("A sweep grid: 4 cells of diffusers-tiny, Steps by Seed.\n")


def test_a_sweep_grid_reads_in_other_tools_as_its_first_cell(swept):
    """Like AUTOMATIC1111's grids: the first cell's `parameters` beside `zimage-grid`, so
    sd-parsers and SD Prompt Reader (Civitai's A1111 parsing too) find a prompt and a seed."""
    import io

    from sd_parsers import ParserManager
    from sd_prompt_reader.image_data_reader import ImageDataReader

    out, _sweep = swept
    grid = (out / "grid.png").read_bytes()
    first = (out / "row1-col1-diffusers-tiny-1-0.png").read_bytes()
    assert read_text_chunks(grid)["parameters"] == read_text_chunks(first)["parameters"]
    assert "zimage-grid" in read_text_chunks(grid)
    info = ParserManager().parse(io.BytesIO(grid))
    assert info is not None and [p.value for p in info.prompts] == ["a red fox"]
    assert info.samplers[0].parameters["seed"] == "1" and info.samplers[0].parameters["steps"] == "1"
    reader = ImageDataReader(io.BytesIO(grid))
    assert reader.positive == "a red fox" and reader.parameter["seed"] == "1"


def test_info_refuses_missing_unreadable_and_oversized_files(tmp_path: Path):
    one_clear_line(cli("info", str(tmp_path / "missing.png")), "file", "missing.png", "no such file")
    one_clear_line(cli("info", str(tmp_path)), "file", "a folder")
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    one_clear_line(cli("info", str(text), "--json"), "file", "notes.png", "not an image")
    huge = tmp_path / "huge.png"
    with huge.open("wb") as file:
        file.truncate(50 * 2**20 + 1)  # sparse: nothing is written, and the CLI must not read it
    one_clear_line(cli("info", str(huge)), "file", "over the 50 MB limit")


def test_info_on_an_image_without_settings_exits_1(tmp_path: Path):
    plain = tmp_path / "plain.png"
    Image.new("RGB", (8, 8)).save(plain)
    run = cli("info", str(plain), "--json")
    assert run.returncode == 1, run.stderr
    record = json.loads(run.stdout)
    assert record["kind"] == "none" and record["command"] is None and record["params"] == {}


def test_help_and_readme_agree_on_who_takes_image_inputs():
    """The help lists, per input kind, exactly the providers whose capabilities take it; the
    README's sentence names the same hosted providers."""
    import re

    from zimage_ui.providers import PROVIDERS

    text = " ".join(cli("generate", "--help").stdout.split())
    readme = " ".join(Path("README.md").read_text().split())
    kinds = {
        "an input image": "image_input",
        "a mask": "mask_input",
        "a control image": "control_input",
        "LoRAs": "lora",
    }
    for kind, flag in kinds.items():
        listed = re.search(rf"{kind}: (.+?)(?:;|\. )", text)
        assert listed, kind
        takers = [pid for pid, p in PROVIDERS.items() if getattr(p.capabilities, flag)]
        assert listed[1].split(", ") == takers, kind
        said = re.search(rf"{kind}: (.+?)(?:;|\. )", readme)
        assert said, kind
        hosted = {pid for pid in takers if not pid.startswith("diffusers")}
        named = {pid for pid in PROVIDERS if PROVIDERS[pid].label.split(" ")[0] in said[1]}
        assert hosted <= named, (kind, said[1])
