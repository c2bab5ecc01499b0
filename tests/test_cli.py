"""`python -m zimage_ui` as scripts use it: exit codes, JSON lines, PNG provenance."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

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


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "zimage_ui", *args], capture_output=True, text=True, timeout=300, env=env
    )


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
    paths = []
    for name in ("one", "two"):
        run = cli("generate", *FOX, "--out", str(tmp_path / name), "--json")
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
    assert [side["steps"] for side in report["sides"]] == ["2", "4"]
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


def test_compare_bad_side_text_is_one_line_naming_the_key(tmp_path: Path):
    run = cli(
        "compare",
        "--provider",
        "diffusers-tiny:steps=abc",
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
        "3",
    )
    assert read_provenance(Path(record["images"][0]).read_bytes())["params"]["prompt"] == "a red fox"


def test_compare_takes_its_sides_from_a_preset(tmp_path: Path):
    preset = tmp_path / "pair.yaml"
    preset.write_text(PAIR)
    run = cli("compare", "--preset", str(preset), "--out", str(tmp_path / "out"))
    assert run.returncode == 0, run.stderr
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert [side["steps"] for side in report["sides"]] == ["2", "4"]


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
