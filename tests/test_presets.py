import json

import pytest
import yaml
from hypothesis import given, settings

from tests.strategies import generation_params, presets
from zimage_ui.compare import Side
from zimage_ui.errors import ZImageError
from zimage_ui.params import GenerationParams, parse_params
from zimage_ui.presets import (
    MAX_PRESET_BYTES,
    Preset,
    PresetError,
    export_preset,
    import_preset,
    params_from_preset,
    preset_from_params,
    read_preset_file,
    side_runs,
)

FAKE_KEY = "rp-fake-key-0123456789"


pytestmark = pytest.mark.usefixtures("no_provider_keys")


def doc(**values: object) -> str:
    return json.dumps({"prompt": "a red fox", "provider": "diffusers-tiny", **values})


def refused(data: str | bytes, **kwargs: object) -> PresetError:
    with pytest.raises(PresetError) as caught:
        import_preset(data, **kwargs)  # type: ignore[arg-type]
    return caught.value


def test_preset_has_every_parameter_with_the_same_default():
    # All but where an enhanced prompt came from: a preset is what to draw (the PNG keeps the rest).
    assert set(GenerationParams.model_fields) - set(Preset.model_fields) == {"enhanced"}
    for name, source in GenerationParams.model_fields.items():
        if name == "enhanced":
            continue
        assert name in Preset.model_fields
        if not source.is_required() and source.default_factory is None:
            assert Preset.model_fields[name].default == source.default
        assert Preset.model_fields[name].description


def test_from_params_and_back():
    params = parse_params(prompt="fox, at: dawn", seed=7, width=512, guidance_scale=2.5, output_format="webp")
    preset = preset_from_params(params, "runpod", name="Fox")
    assert (preset.name, preset.provider, preset.sides) == ("Fox", "runpod", None)
    assert params_from_preset(preset) == params


def test_sides_become_runs_with_their_overrides():
    params = parse_params(prompt="fox", seed=1)
    sides = [Side(provider="diffusers-tiny", num_inference_steps=4), Side(provider="runpod", label="RP")]
    preset = preset_from_params(params, "diffusers-tiny", sides=sides)
    runs = side_runs(preset)
    assert [(title, provider) for title, provider, _ in runs] == [
        ("diffusers-tiny (steps 4)", "diffusers-tiny"),
        ("RP", "runpod"),
    ]
    assert [p.num_inference_steps for _, _, p in runs] == [4, 8]
    assert side_runs(preset_from_params(params, "runpod"))[0][2] == params


@settings(max_examples=60, deadline=None, database=None)
@given(presets())
def test_export_then_import_gives_back_the_same_preset(preset: Preset):
    text = export_preset(preset)
    assert import_preset(text) == preset
    assert import_preset(text.encode("utf-8")) == preset
    assert import_preset(yaml.safe_dump(json.loads(text))) == preset


@settings(max_examples=40, deadline=None, database=None)
@given(generation_params())
def test_preset_keeps_every_parameter(params: GenerationParams):
    assert params_from_preset(import_preset(export_preset(preset_from_params(params, "aimlapi")))) == params


def test_yaml_preset():
    text = (
        "prompt: |\n  a fox,\n  at dawn\nprovider: runpod\nseed: 12\nsides: null\n"
        "options:\n  safety_checker: false\n"
    )
    preset = import_preset(text)
    assert (preset.prompt, preset.seed, preset.options.safety_checker) == ("a fox,\nat dawn\n", 12, False)


def test_json_with_a_byte_order_mark():
    assert import_preset(b"\xef\xbb\xbf" + doc(seed=3).encode()).seed == 3


@pytest.mark.parametrize(
    ("data", "field", "words"),
    [
        ("prompt = 'toml, not json'", "file", "holds a str"),
        ("prompt: [unclosed", "file", "not valid YAML (expected ',' or ']'"),
        ('{"prompt": "x",', "file", "not valid JSON"),
        ("", "file", "empty"),
        (b"\xff\xfe\x00bad", "file", "not UTF-8"),
        ("[1, 2]", "file", "holds a list"),
        ('"just text"', "file", "holds a str"),
        ("a: &x [1]\nb: *x", "file", "anchors and aliases"),
        ("[" * 5000 + "]" * 5000, "file", "nested too deep"),
        ("a:\n" + "".join(" " * i + f"b{i}:\n" for i in range(1, 40)), "file", "nested too deep"),
        (doc(prompt=42), "prompt", "wrong type: expected text, got a whole number"),
        (doc(width="512"), "width", "wrong type: expected a whole number, got text"),
        (doc(seed=True), "seed", "expected a whole number, got true/false"),
        (doc(shift="3"), "shift", "expected a number"),
        (doc(options={"safety_checker": "no"}), "options.safety_checker", "expected true or false"),
        (doc(options=[]), "options", "wrong type"),
        (doc(sides="runpod"), "sides", "wrong type"),
        (doc(promt="typo"), "promt", "unknown field"),
        (doc(options={"nsfw": True}), "options.nsfw", "unknown field"),
        (doc(sides=[{"provider": "runpod", "steps": 4}, {"provider": "runpod"}]), "sides.0.steps", "unknown"),
        (json.dumps({"provider": "runpod"}), "prompt", "missing"),
        (json.dumps({"prompt": "fox"}), "provider", "missing"),
        (doc(prompt="   "), "prompt", "empty"),
        (doc(width=1000), "width", "multiple of 16; use 992 or 1008"),
        (doc(num_inference_steps=0), "num_inference_steps", "1..50"),
        (doc(guidance_scale=25.0), "guidance_scale", "0..20"),
        (doc(seed=-1), "seed", "outside"),
        (doc(output_format="gif"), "output_format", "'png', 'jpeg' or 'webp'"),
        (doc(name="n" * 101), "name", "100 or fewer"),
        (doc(schema_version=0), "schema_version", "use 1..1"),
        (doc(provider="midjourney"), "provider", "unknown provider 'midjourney'; use one of"),
        (doc(sides=[{"provider": "nope"}, {"provider": "runpod"}]), "sides.0.provider", "unknown provider"),
        (doc(sides=[{"provider": "runpod", "width": 1000}, {"provider": "runpod"}]), "sides.0.width", "992"),
        (doc(sides=[{"provider": "runpod"}]), "sides", "1 sides; a comparison has 2 to 6"),
        (doc(sides=[{"provider": "runpod"}] * 7), "sides", "2 to 6"),
    ],
    ids=lambda value: repr(value)[:40],
)
def test_malformed_presets_are_refused_naming_the_field(data: str | bytes, field: str, words: str):
    error = refused(data)
    assert isinstance(error, ZImageError)
    assert field in error.fields, error.fields
    assert words in error.fields[field]
    assert f"{field}: " in str(error)


def test_every_problem_is_reported_at_once():
    error = refused(doc(width=1000, seed="x", extra=1, provider="nope"))
    assert set(error.fields) == {"width", "seed", "extra", "provider"}


def test_huge_file_refused_before_parsing():
    text = doc(prompt="x" * MAX_PRESET_BYTES)
    assert "64 KiB limit" in refused(text).fields["file"]
    assert "64 KiB limit" in refused("{" * (MAX_PRESET_BYTES + 1)).fields["file"]  # never parsed


def test_huge_file_on_disk_refused_before_reading(tmp_path):
    path = tmp_path / "big.json"
    path.write_text(doc(prompt="x" * MAX_PRESET_BYTES))
    with pytest.raises(PresetError, match="64 KiB limit"):
        read_preset_file(path)
    path.write_text(doc(seed=5))
    assert read_preset_file(path).seed == 5


def test_newer_schema_is_the_message_shown_even_with_other_problems():
    error = refused(doc(schema_version=2, width="wide", api_key="sk-123", future_field=1))
    assert error.fields == {
        "schema_version": "made by a newer zimage-ui (schema 2); this version reads up to 1: update the app"
    }


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"api_key": "sk-abcdef123456"}, "api_key"),
        ({"apiKey": "x"}, "apiKey"),
        ({"secret": "x"}, "secret"),
        ({"token": "x"}, "token"),
        ({"Authorization": "Bearer abc"}, "Authorization"),
        ({"base_url": "http://evil.example"}, "base_url"),
        ({"url": "x"}, "url"),
        ({"endpoint": "x"}, "endpoint"),
        ({"host": "evil.example"}, "host"),
        ({"options": {"proxy_url": "x"}}, "options.proxy_url"),
        ({"sides": [{"provider": "runpod", "base_url": "x"}, {"provider": "runpod"}]}, "sides.0.base_url"),
        ({"name": "http://evil.example/steal"}, "name"),
        ({"prompt": "https://evil.example"}, "prompt"),
        ({"sides": [{"provider": "runpod", "label": "ftp://x"}, {"provider": "runpod"}]}, "sides.0.label"),
    ],
)
def test_keys_and_destinations_are_refused(extra: dict, field: str):
    error = refused(doc(**extra))
    assert "a preset can't carry keys or change where requests go" in error.fields[field]


def test_a_value_equal_to_a_set_key_is_refused_without_repeating_it(monkeypatch):
    monkeypatch.setenv("RUNPOD_API_KEY", FAKE_KEY)
    for text in (doc(prompt=FAKE_KEY), doc(negative_prompt=f"x {FAKE_KEY} y"), doc(**{FAKE_KEY: 1})):
        error = refused(text)
        assert FAKE_KEY not in str(error) and FAKE_KEY not in json.dumps(error.fields)
        assert "RUNPOD_API_KEY" in str(error)
        assert "can't carry keys" in str(error)


def test_a_key_entered_on_the_page_is_refused_too():
    error = refused(doc(prompt="my key is page-session-key-42"), secrets=["page-session-key-42"])
    assert "a key entered on the page" in error.fields["prompt"]
    assert "page-session-key-42" not in str(error)


def test_short_env_values_do_not_make_every_preset_fail(monkeypatch):
    monkeypatch.setenv("RUNPOD_API_KEY", "a")
    assert import_preset(doc()).prompt == "a red fox"


def test_export_never_holds_a_key(monkeypatch):
    monkeypatch.setenv("RUNPOD_API_KEY", FAKE_KEY)
    monkeypatch.setenv("SCENARIO_SDK_API_SECRET", "scenario-secret-value-9")
    params = parse_params(prompt="a fox", seed=3)
    sides = [Side(provider="runpod"), Side(provider="scenario")]
    text = export_preset(preset_from_params(params, "runpod", sides=sides, name="team fox"))
    assert FAKE_KEY not in text and "scenario-secret-value-9" not in text
    assert not {"api_key", "base_url", "headers", "Authorization"} & set(json.loads(text))
    with pytest.raises(PresetError, match="RUNPOD_API_KEY"):
        preset_from_params(parse_params(prompt=f"oops {FAKE_KEY}"), "runpod")
    with pytest.raises(PresetError, match="can't carry keys"):
        export_preset(Preset(prompt=f"oops {FAKE_KEY}", provider="runpod"))


def test_preset_from_params_refuses_unknown_provider_naming_it():
    with pytest.raises(PresetError) as caught:
        preset_from_params(parse_params(prompt="x"), "nope")
    assert "unknown provider 'nope'" in caught.value.fields["provider"]


def test_export_is_pretty_json_without_unused_side_fields():
    params = parse_params(prompt="ünï", seed=1)
    text = export_preset(preset_from_params(params, "runpod", sides=[Side(provider="runpod")] * 2))
    document = json.loads(text)
    assert text.startswith('{\n  "schema_version": 1,') and "ünï" in text
    assert document["sides"] == [{"provider": "runpod"}, {"provider": "runpod"}]
    assert "sides" not in json.loads(export_preset(preset_from_params(params, "runpod")))
