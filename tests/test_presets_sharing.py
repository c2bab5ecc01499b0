import json
import os
from pathlib import Path
from urllib.parse import parse_qsl

import pytest
from hypothesis import given, settings

from tests.strategies import presets
from zimage_ui.compare import Side
from zimage_ui.params import parse_params
from zimage_ui.preset_sharing import (
    list_team_presets,
    preset_from_query,
    safe_stem,
    save_team_preset,
    share_query,
)
from zimage_ui.presets import (
    MAX_PRESET_BYTES,
    Preset,
    PresetError,
    PresetSide,
    export_preset,
    preset_from_params,
)
from zimage_ui.providers import default_provider_id

FAKE_KEY = "aiml-fake-key-abcdef0123"


pytestmark = pytest.mark.usefixtures("no_provider_keys")


def query_of(link: str) -> dict[str, str]:
    """What a web framework hands the page for `?<link>`."""
    return dict(parse_qsl(link, keep_blank_values=True, strict_parsing=True))


# -- share links -----------------------------------------------------------------------------


def test_link_holds_prompt_provider_and_only_changed_values():
    preset = preset_from_params(parse_params(prompt="a fox, at: dawn & dusk", seed=42), "runpod")
    assert share_query(preset) == "prompt=a+fox%2C+at%3A+dawn+%26+dusk&provider=runpod&seed=42"
    changed = preset_from_params(
        parse_params(
            prompt="fox",
            num_inference_steps=4,
            width=512,
            height=768,
            shift=2.5,
            guidance_scale=1.5,
            negative_prompt="blur",
            num_images=2,
        ),
        "diffusers",
    )
    assert share_query(changed) == (
        "prompt=fox&provider=diffusers&steps=4&width=512&height=768&shift=2.5&guidance=1.5"
        "&negative_prompt=blur&num_images=2"
    )


@settings(max_examples=60, deadline=None, database=None)
@given(presets(named=False))
def test_share_link_round_trip(preset: Preset):
    read = preset_from_query(query_of(share_query(preset)))
    assert read.preset == preset
    assert read.ignored == []


def test_comparison_sides_travel_in_the_link():
    sides = [Side(provider="diffusers-tiny", num_inference_steps=4, shift=2.5), Side(provider="runpod")]
    preset = preset_from_params(parse_params(prompt="fox", seed=1), "diffusers-tiny", sides=sides)
    link = share_query(preset)
    assert "sides=diffusers-tiny%3Asteps%3D4%2Cshift%3D2.5%3Brunpod" in link
    assert preset_from_query(query_of(link)).preset == preset


def test_link_sides_are_read_by_side_parse():
    read = preset_from_query({"prompt": "fox", "sides": "runpod:size=512X768,steps=4;;runpod:label=two"})
    assert read.preset.sides == [
        PresetSide(provider="runpod", width=512, height=768, num_inference_steps=4),
        PresetSide(provider="runpod", label="two"),
    ]
    assert "sides=runpod%3Asteps%3D4%2Cwidth%3D512%2Cheight%3D768%3Brunpod" in share_query(read.preset)


def test_missing_values_take_defaults_and_unknown_ones_are_listed():
    read = preset_from_query({"prompt": "fox", "__theme": "dark", "utm_source": "chat", "seed": ""})
    assert read.ignored == ["__theme", "utm_source"]
    assert read.preset == Preset(prompt="fox", provider=default_provider_id())


def test_text_values_keep_their_spaces():
    preset = Preset(prompt=" fox ", negative_prompt=" ", provider="runpod")
    assert preset_from_query(query_of(share_query(preset))).preset == preset


def test_values_may_come_as_lists_as_from_parse_qs():
    assert preset_from_query({"prompt": ["fox"], "seed": ["1", "7"]}).preset.seed == 7


@pytest.mark.parametrize(
    ("query", "field", "words"),
    [
        ({"steps": "eight"}, "steps", "'eight' is not a whole number"),
        ({"seed": "1.5"}, "seed", "not a whole number"),
        ({"seed": "99999999999"}, "seed", "outside 0..4294967295"),
        ({"width": "1000"}, "width", "multiple of 16; use 992 or 1008"),
        ({"height": "4096"}, "height", "outside 256..2048"),
        ({"guidance": "lots"}, "guidance", "not a number"),
        ({"guidance": "30"}, "guidance", "0..20"),
        ({"shift": "nan"}, "shift", "1..10"),
        ({"num_images": "9"}, "num_images", "1..4"),
        ({"format": "gif"}, "format", "'png', 'jpeg' or 'webp'"),
        ({"prompt_expansion": "maybe"}, "prompt_expansion", "not 1 or 0"),
        ({"provider": "nope"}, "provider", "unknown provider 'nope'"),
        ({"sides": "runpod"}, "sides", "2 to 6"),
        ({"sides": "runpod:steps=4;nope"}, "sides", "unknown provider 'nope'"),
        ({"sides": "runpod:turbo=1;runpod"}, "sides", "side 1 turbo: unknown override; use steps, shift"),
        ({"sides": "runpod;runpod:steps=x"}, "sides", "side 2 steps: 'x' is not a whole number"),
        ({"sides": "runpod:size=big;runpod"}, "sides", "side 1 size: 'big' is not WxH"),
        ({"sides": "runpod:steps=99;nope"}, "sides", "outside 1..50 (Turbo needs 8); unknown provider"),
        ({"prompt": ""}, "prompt", "empty"),
        ({"prompt": "https://evil.example"}, "prompt", "can't carry keys"),
    ],
)
def test_bad_link_values_are_refused_naming_the_link_field(query: dict, field: str, words: str):
    with pytest.raises(PresetError) as caught:
        preset_from_query({"prompt": "fox", **query})
    assert field in caught.value.fields, caught.value.fields
    assert words in caught.value.fields[field]


def test_missing_prompt_is_named():
    with pytest.raises(PresetError) as caught:
        preset_from_query({"seed": "3"})
    assert "missing" in caught.value.fields["prompt"]


def test_links_never_carry_keys(monkeypatch):
    monkeypatch.setenv("AIML_API_KEY", FAKE_KEY)
    link = share_query(preset_from_params(parse_params(prompt="fox", seed=3), "aimlapi"))
    assert FAKE_KEY not in link
    with pytest.raises(PresetError) as caught:
        preset_from_query({"prompt": f"see {FAKE_KEY}"})
    assert "AIML_API_KEY" in caught.value.fields["prompt"] and FAKE_KEY not in str(caught.value)
    with pytest.raises(PresetError, match="AIML_API_KEY"):
        share_query(Preset(prompt=f"see {FAKE_KEY}", provider="aimlapi"))
    with pytest.raises(PresetError) as caught:
        preset_from_query({"prompt": "fox", "steps": FAKE_KEY})
    assert "steps" in caught.value.fields and FAKE_KEY not in str(caught.value)


# -- the team folder -------------------------------------------------------------------------


def good(name: str, **values: object) -> str:
    return export_preset(Preset(name=name, prompt="a fox", provider="runpod", **values))  # type: ignore[arg-type]


def test_team_folder_lists_good_presets_and_reports_broken_ones(tmp_path: Path):
    (tmp_path / "fox.json").write_text(good("Fox", seed=1))
    (tmp_path / "owl.yaml").write_text("name: Owl\nprompt: an owl\nprovider: diffusers-tiny\n")
    (tmp_path / "nameless.yml").write_text("prompt: a cat\nprovider: runpod\n")
    (tmp_path / "broken.json").write_text('{"prompt": "unfinished",')
    (tmp_path / "future.json").write_text(
        json.dumps({"schema_version": 9, "prompt": "x", "provider": "runpod"})
    )
    (tmp_path / "notes.txt").write_text("not a preset")
    (tmp_path / ".partial.json").write_text("{")
    presets_found, problems = list_team_presets(tmp_path)
    assert sorted(presets_found) == ["Fox", "Owl", "nameless"]
    assert presets_found["Fox"].seed == 1 and presets_found["Owl"].provider == "diffusers-tiny"
    assert [name for name, _ in problems] == ["broken.json", "future.json"]
    assert "not valid JSON" in problems[0][1]
    assert "made by a newer zimage-ui (schema 9)" in problems[1][1]


def test_team_folder_keeps_presets_that_share_a_name(tmp_path: Path):
    (tmp_path / "a.json").write_text(good("Fox", seed=1))
    (tmp_path / "b.json").write_text(good("Fox", seed=2))
    found, problems = list_team_presets(tmp_path)
    assert problems == []
    assert {title: p.seed for title, p in found.items()} == {"Fox": 1, "Fox (b.json)": 2}


def test_team_folder_skips_oversized_and_linked_files(tmp_path: Path):
    (tmp_path / "huge.json").write_text(" " * (MAX_PRESET_BYTES + 1))
    outside = tmp_path.parent / f"{tmp_path.name}-outside.json"
    outside.write_text(good("Outside"))
    os.symlink(outside, tmp_path / "link.json")
    found, problems = list_team_presets(tmp_path)
    assert found == {}
    assert dict(problems) == {
        "huge.json": "this preset can't be used: file: 64.0 KiB is over the 64 KiB limit for a preset",
        "link.json": "not a regular file: skipped",
    }


def test_missing_team_folder_is_reported_not_raised(tmp_path: Path):
    found, problems = list_team_presets(tmp_path / "absent")
    assert found == {} and "does not exist" in problems[0][1]


@pytest.mark.parametrize(
    ("name", "stem"),
    [
        ("Fox at dawn", "fox-at-dawn"),
        ("../../etc/passwd", "etc-passwd"),
        ("..\\..\\windows\\win.ini", "windows-win-ini"),
        ("/absolute/path", "absolute-path"),
        ("", "preset"),
        ("...", "preset"),
        ("Café ☕ crème", "cafe-creme"),
        ("CON", "preset-con"),
        ("x" * 200, "x" * 60),
    ],
)
def test_safe_file_names(name: str, stem: str):
    assert safe_stem(name) == stem


def test_save_team_preset_never_leaves_the_folder_or_overwrites(tmp_path: Path):
    folder = tmp_path / "team"
    preset = Preset(name="../../escape", prompt="a fox", provider="runpod", seed=5)
    first = save_team_preset(folder, preset)
    second = save_team_preset(folder, preset)
    assert (first.name, second.name) == ("escape.json", "escape-2.json")
    assert {p.parent for p in (first, second)} == {folder}
    assert sorted(p.name for p in folder.iterdir()) == ["escape-2.json", "escape.json"]  # no temp files
    assert list(tmp_path.iterdir()) == [folder]
    found, problems = list_team_presets(folder)
    assert problems == [] and found["../../escape"] == preset


def test_save_team_preset_refuses_a_key(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("EVOLINK_API_KEY", FAKE_KEY)
    with pytest.raises(PresetError, match="EVOLINK_API_KEY"):
        save_team_preset(tmp_path, Preset(prompt=f"key {FAKE_KEY}", provider="evolink"))
    assert list(tmp_path.iterdir()) == []
