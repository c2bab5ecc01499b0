"""Presets and share links carry LoRAs (URLs, hub ids) with scales, strength and control settings,
images only as https URLs; a local path is left out on export and refused on import."""

from __future__ import annotations

import json
from urllib.parse import parse_qsl

import pytest

from zimage_ui.errors import PresetError
from zimage_ui.params import parse_params
from zimage_ui.preset_sharing import preset_from_query, share_query
from zimage_ui.presets import export_preset, import_preset, preset_from_params

IMAGE = "https://images.example.test/in.png"
MASK = "https://images.example.test/mask.png"
LORA_URL = "https://loras.example.test/files/style.safetensors"


def _params(**inputs: object):
    return parse_params(prompt="a red fox", seed=5, inputs=inputs)


def test_urls_ids_scales_and_strength_survive_a_file_round_trip():
    params = _params(
        image=IMAGE, mask=MASK, strength=0.35, loras=[{"ref": LORA_URL, "scale": 0.6}, {"ref": "owner/pack"}]
    )
    left_out: list[str] = []
    text = export_preset(preset_from_params(params, "diffusers-tiny", left_out=left_out))
    assert left_out == []
    document = json.loads(text)
    assert document["inputs"]["image"] == IMAGE and document["inputs"]["strength"] == 0.35
    assert document["inputs"]["loras"] == [
        {"ref": LORA_URL, "scale": 0.6},
        {"ref": "owner/pack", "scale": 1.0},
    ]
    again = import_preset(text)
    assert again.inputs == params.inputs


def test_control_kind_and_scale_round_trip():
    params = _params(control_image=IMAGE, control_kind="depth", control_scale=0.55)
    again = import_preset(export_preset(preset_from_params(params, "diffusers-tiny")))
    assert again.inputs is not None
    assert (again.inputs.control_image, again.inputs.control_kind, again.inputs.control_scale) == (
        IMAGE,
        "depth",
        0.55,
    )


def test_exporting_local_files_leaves_them_out_saying_which_and_why():
    params = _params(
        image="/tmp/gradio/abc/in.png",
        mask=MASK,
        strength=0.5,
        loras=[{"ref": "/models/mine.safetensors", "scale": 0.8}, {"ref": "owner/pack", "scale": 0.3}],
    )
    left_out: list[str] = []
    preset = preset_from_params(params, "diffusers-tiny", left_out=left_out)
    assert preset.inputs is not None
    assert (preset.inputs.image, preset.inputs.mask, preset.inputs.strength) == (None, None, 0.5)
    assert [(lora.ref, lora.scale) for lora in preset.inputs.loras] == [("owner/pack", 0.3)]
    assert left_out == [
        "input image 'in.png' left out of the preset: it is a local file; presets carry images as https URLs",
        "LoRA 'mine.safetensors' left out of the preset: it is a local file; presets carry LoRAs as "
        "https URLs or hub ids",
        "mask left out of the preset: its input image is a local file",
    ]
    assert "/models" not in export_preset(preset) and "/tmp/gradio" not in export_preset(preset)


def test_only_local_files_leave_no_inputs_at_all():
    preset = preset_from_params(_params(loras=[{"ref": "a.safetensors"}]), "diffusers-tiny", left_out=[])
    assert preset.inputs is None and "inputs" not in json.loads(export_preset(preset))


@pytest.mark.parametrize(
    ("inputs", "field", "words"),
    [
        ({"image": "/etc/passwd"}, "inputs", "input image '/etc/passwd' is a local path"),
        (
            {"loras": [{"ref": "~/x.safetensors", "scale": 1}]},
            "inputs",
            "LoRA '~/x.safetensors' is a local path",
        ),
        ({"control_image": "edges.png"}, "inputs", "control image 'edges.png' is a local path"),
    ],
)
def test_importing_a_local_path_refuses_the_preset_clearly(inputs, field, words):
    document = {"prompt": "p", "provider": "diffusers-tiny", "inputs": inputs}
    with pytest.raises(PresetError) as caught:
        import_preset(json.dumps(document))
    assert words in caught.value.fields[field]
    assert "never a file on one machine" in caught.value.fields[field]


def test_a_url_with_credentials_or_a_known_key_is_refused_and_the_key_never_shown(monkeypatch):
    key = "scn-key-0123456789"
    monkeypatch.setenv("SCENARIO_SDK_API_KEY", key)
    for url, words in {
        f"{IMAGE}?token=abcdef": "carries credentials",
        "https://user:pw@images.example.test/a.png": "carries credentials",
        f"{IMAGE}?v={key}": "holds the key set in SCENARIO_SDK_API_KEY",
    }.items():
        document = {"prompt": "p", "provider": "diffusers-tiny", "inputs": {"image": url}}
        with pytest.raises(PresetError) as caught:
            import_preset(json.dumps(document))
        assert words in caught.value.fields["inputs.image"]
        assert key not in str(caught.value)
    plain = {"prompt": "p", "provider": "diffusers-tiny", "inputs": {"image": f"{IMAGE}?download=1"}}
    assert import_preset(json.dumps(plain)).inputs is not None  # an ordinary query is fine


def test_a_link_carries_loras_strength_and_control_and_reads_back():
    params = _params(image=IMAGE, strength=0.4, loras=[{"ref": LORA_URL, "scale": 0.6}, {"ref": "o/n"}])
    query = share_query(preset_from_params(params, "diffusers-tiny"))
    pairs = dict(parse_qsl(query))
    assert pairs["image"] == IMAGE and pairs["strength"] == "0.4"
    assert pairs["loras"] == f"{LORA_URL}:0.6;o/n:1"
    assert "control_kind" not in pairs  # defaults stay out of the link
    read = preset_from_query(pairs).preset
    assert read.inputs == params.inputs
    assert preset_from_query({"prompt": "p", "loras": LORA_URL}).preset.inputs.loras[0].scale == 1.0


@pytest.mark.parametrize(
    ("query", "key", "words"),
    [
        ({"prompt": "p", "image": "/etc/passwd"}, "inputs", "input image '/etc/passwd' is a local path"),
        (
            {"prompt": "p", "loras": "/m/x.safetensors:0.5"},
            "inputs",
            "LoRA '/m/x.safetensors' is a local path",
        ),
        ({"prompt": "p", "loras": "o/n:lots"}, "loras", "not a LoRA scale"),
    ],
)
def test_a_link_naming_a_local_path_is_refused(query, key, words):
    with pytest.raises(PresetError) as caught:
        preset_from_query(query)
    assert words in caught.value.fields[key], caught.value.fields
