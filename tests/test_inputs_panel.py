"""The Image input panel's handlers: uploads and https URLs only, a painted mask, provider greying."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gradio as gr
import numpy as np
import pytest
from PIL import Image

from zimage_ui.errors import InvalidParams
from zimage_ui.params import GenerationParams, ImageInputs, parse_params
from zimage_ui.providers import PROVIDERS, get_provider
from zimage_ui.providers.base import refuse_inputs
from zimage_ui.ui.common import SessionState, shareable_params
from zimage_ui.ui.compare_tab import build_compare_tab
from zimage_ui.ui.form import Form
from zimage_ui.ui.generate_tab import GenerateTab, build_generate_tab
from zimage_ui.ui.inputs_panel import (
    InputsPanel,
    build_inputs_panel,
    input_reasons,
    mask_from_editor,
    typed_ref_problem,
    upload_folder,
    upload_problem,
)
from zimage_ui.ui.settings_panel import build_settings_panel


@pytest.fixture
def page() -> Iterator[tuple[Form, InputsPanel, GenerateTab]]:
    with gr.Blocks() as demo:
        panel = build_settings_panel()
        inputs = build_inputs_panel()
        with gr.Tabs() as tabs:
            with gr.Tab("Generate", id="generate"):
                generate = build_generate_tab("diffusers-tiny")
            with gr.Tab("Compare", id="compare"):
                compare = build_compare_tab("diffusers-tiny")
        form = Form(panel.settings, generate.provider, compare.count, compare.sides, tabs, inputs)
        generate.wire(demo, form, panel, SessionState())
        yield form, inputs, generate


@pytest.fixture
def upload() -> Iterator[Path]:
    """An image where Gradio puts uploads (its upload folder), as a real upload would be."""
    folder = upload_folder() / f"test-{uuid.uuid4().hex}"
    folder.mkdir(parents=True)
    path = folder / "in.png"
    Image.new("RGB", (320, 256), "orange").save(path)
    yield path
    for file in folder.iterdir():
        file.unlink()
    folder.rmdir()


def _data(form: Form, **inputs: Any) -> dict[Any, Any]:
    """The form's values as Gradio passes them: the defaults, with these panel values."""
    s = form.settings
    data: dict[Any, Any] = {c: c.value for c in form.inputs()}
    data |= {s.prompt: "a fox", s.width: 256, s.height: 256, s.random_seed: False, s.seed: "7"}
    assert form.image_inputs is not None
    panel = form.image_inputs
    for name, value in inputs.items():
        data[getattr(panel, name)] = value
    return data


@pytest.mark.parametrize(
    "text",
    [
        "/etc/passwd",
        "~/photo.png",
        "../secret.png",
        "photo.png",
        "C:\\x.png",
        "file:///etc/passwd",
        "http://a/x",
    ],
)
def test_typed_text_naming_a_server_file_is_refused(text: str):
    problem = typed_ref_problem(text, "image")
    assert problem and "give an https URL or upload the file" in problem
    assert typed_ref_problem(text, "LoRA", model_id=True)


@pytest.mark.parametrize("text", ["/srv/x.safetensors", "x.safetensors", "./a/b", "~/a/b", "a/../b"])
def test_a_typed_lora_path_is_refused_but_urls_and_model_ids_are_taken(text: str):
    assert typed_ref_problem(text, "LoRA", model_id=True)
    assert typed_ref_problem("https://example.test/x.safetensors", "LoRA", model_id=True) is None
    assert typed_ref_problem("owner/name", "LoRA", model_id=True) is None
    assert typed_ref_problem("owner/name/style.safetensors", "LoRA", model_id=True) is None
    assert typed_ref_problem("model_abc123", "LoRA", model_id=True) is None


def test_only_files_in_gradios_upload_folder_count_as_uploads(upload: Path, tmp_path: Path):
    assert upload_problem(str(upload), "image") is None
    outside = tmp_path / "x.png"
    assert "not an upload" in (upload_problem(str(outside), "image") or "")
    sneaky = f"{upload_folder()}/../../etc/passwd"
    assert upload_problem(sneaky, "image")


def test_the_form_reads_an_upload_its_strength_and_a_painted_mask(page, upload: Path):
    form, _, _ = page
    layer = np.zeros((256, 320, 4), np.uint8)
    layer[10:20, 30:60] = (255, 255, 255, 255)  # painted white
    editor = {"background": None, "layers": [Image.fromarray(layer)], "composite": None}
    params = form.read(_data(form, image=str(upload), strength=0.35, mask=editor))
    assert params.image == str(upload) and params.strength == 0.35
    assert params.mask is not None
    mask = np.asarray(Image.open(params.mask))
    assert mask.shape == (256, 320)  # the input image's size
    assert mask[15, 40] == 255 and mask[100, 100] == 0
    assert Path(params.mask).resolve().is_relative_to(upload_folder())
    assert mask_from_editor({"background": None, "layers": [Image.new("RGBA", (8, 8))]}) is None


def test_the_form_reads_urls_control_images_and_loras(page):
    form, inputs, _ = page
    row = inputs.loras[0]
    data = _data(
        form,
        control_url="https://example.test/edges.png",
        control_kind="depth",
        control_scale=1.25,
    )
    data |= {row.ref: "https://example.test/ink.safetensors", row.scale: 0.7}
    params = form.read(data)
    assert (params.control_image, params.control_kind, params.control_scale) == (
        "https://example.test/edges.png",
        "depth",
        1.25,
    )
    assert [(lora.ref, lora.scale) for lora in params.loras] == [
        ("https://example.test/ink.safetensors", 0.7)
    ]
    assert params.image is None and params.strength is None  # the strength slider alone sets nothing


@pytest.mark.parametrize(
    ("values", "words"),
    [
        ({"image_url": "/etc/passwd"}, "give an https URL or upload the file"),
        ({"image": "/etc/passwd"}, "is not an upload: give an https URL or upload the file"),
        ({"control_url": "edges.png"}, "give an https URL or upload the file"),
    ],
)
def test_the_form_refuses_a_server_path(page, values: dict[str, str], words: str):
    form, _, _ = page
    with pytest.raises(gr.Error) as caught:
        form.read(_data(form, **values))
    assert words in caught.value.message


def test_a_typed_lora_path_and_an_upload_with_a_url_are_refused(page, upload: Path):
    form, inputs, _ = page
    data = _data(form, image=str(upload), image_url="https://example.test/x.png")
    data[inputs.loras[1].ref] = "/models/loras/x.safetensors"
    with pytest.raises(gr.Error) as caught:
        form.read(data)
    assert "both an upload and a URL" in caught.value.message
    assert "LoRA 2" in caught.value.message and "give an https URL or upload the file" in caught.value.message


def _update(updates: dict[Any, Any], component: Any) -> dict[str, Any]:
    return updates[component]


@pytest.mark.parametrize("provider_id", list(PROVIDERS))
def test_each_provider_greys_out_what_it_cant_take_in_refuse_inputs_words(page, provider_id: str):
    form, inputs, generate = page
    s = form.settings
    data = {generate.provider: provider_id, s.guidance: 0.0, s.steps: 8, s.num_images: 1}
    updates = generate.on_provider({**data, generate._state.keys: {}})  # no key typed on the page
    caps = get_provider(provider_id).capabilities
    image = _update(updates, inputs.image)
    assert image["interactive"] == (caps.image_input and "file" in caps.image_sources)
    url = _update(updates, inputs.image_url)
    assert url["interactive"] == (caps.image_input and "url" in caps.image_sources)
    if not url["interactive"]:  # the reason is refuse_inputs' own
        params = GenerationParams(prompt="x", inputs=ImageInputs(image="https://example.test/x.png"))
        with pytest.raises(InvalidParams) as caught:
            refuse_inputs(params, caps, provider_id)
        assert caught.value.fields["image"] in updates[inputs.note]  # said once, in the note
        assert url["info"] == f"not on {provider_id} (see above)"
        shown = [u.get("info") or u.get("label") or "" for u in updates.values() if isinstance(u, dict)]
        assert not any(caught.value.fields["image"] in text for text in shown), shown
    takes_mask = caps.image_input and caps.mask_input
    assert _update(updates, inputs.mask_box)["visible"] == takes_mask  # an editor can't be greyed out
    assert _update(updates, inputs.mask_off)["visible"] != takes_mask
    assert inputs.mask not in updates  # updating a mounted ImageEditor breaks the whole event
    assert _update(updates, inputs.loras[0].scale)["interactive"] == caps.lora
    assert _update(updates, inputs.control_scale)["interactive"] == caps.control_input


def test_text_only_aimlapi_greys_out_the_image_and_says_why(page):
    form, inputs, generate = page
    s = form.settings
    data = {generate.provider: "aimlapi", s.guidance: 0, s.steps: 8, s.num_images: 1}
    updates = generate.on_provider({**data, generate._state.keys: {}})  # no key typed on the page
    assert _update(updates, inputs.image)["interactive"] is False
    assert _update(updates, inputs.strength)["info"] == "not on aimlapi (see above)"
    assert "Input image upload, Input image URL, Mask**: aimlapi takes no input image" in updates[inputs.note]
    assert updates[inputs.note].count("aimlapi takes no input image") == 1  # each reason once
    assert input_reasons("diffusers-tiny") == {} or "image" not in input_reasons("diffusers-tiny")


def test_use_as_input_puts_the_picked_result_in_the_input_image(page):
    _, inputs, generate = page
    gallery = [("/tmp/gradio/a/one.png", "seed 7"), ("/tmp/gradio/b/two.png", "seed 8")]
    updates = generate.on_use_as_input({generate.gallery: gallery, generate.selected: 1})
    assert updates[inputs.image] == "/tmp/gradio/b/two.png"
    assert updates[inputs.image_url] == "" and updates[inputs.control_image] is None
    first = generate.on_use_as_input({generate.gallery: gallery, generate.selected: None})
    assert first[inputs.image] == "/tmp/gradio/a/one.png"


def test_fill_shows_a_presets_urls_ids_and_scales(page):
    _, inputs, _ = page
    shown = ImageInputs(
        image="https://example.test/in.png",
        strength=0.45,
        loras=({"ref": "owner/ink", "scale": 0.8},),  # type: ignore[arg-type]
    )
    updates = inputs.fill(shown)
    assert updates[inputs.image_url] == "https://example.test/in.png"
    assert updates[inputs.image] is None and updates[inputs.strength] == 0.45
    assert (updates[inputs.loras[0].ref], updates[inputs.loras[0].scale]) == ("owner/ink", 0.8)
    assert updates[inputs.loras[1].ref] == ""
    assert inputs.fill(None) == {}  # a preset without inputs leaves the panel alone


def test_presets_and_history_never_carry_an_upload(upload: Path):
    params = parse_params(
        prompt="a fox",
        inputs={
            "image": str(upload),
            "mask": str(upload),
            "loras": [
                {"ref": str(upload.with_suffix(".safetensors"))},
                {"ref": "https://example.test/a.safetensors"},
            ],
        },
    )
    shared = shareable_params(params)
    assert shared.image is None and shared.mask is None and shared.strength is None
    assert [lora.ref for lora in shared.loras] == ["https://example.test/a.safetensors"]
    url = parse_params(prompt="a fox", inputs={"image": "https://example.test/in.png", "strength": 0.3})
    assert shareable_params(url) == url


def test_an_uploaded_lora_shows_as_upload_name_and_clearing_the_box_drops_it(page, upload: Path):
    form, inputs, _ = page
    row = inputs.loras[0]
    lora = upload.with_name("ink.safetensors")
    lora.write_bytes(b"not read here")
    shown = row.on_upload({row.file: str(lora)})
    assert shown == {row.ref: "upload: ink.safetensors"}  # never the server path
    data = _data(form)
    data |= {row.file: str(lora), row.ref: "upload: ink.safetensors", row.scale: 0.6}
    assert [(x.ref, x.scale) for x in form.read(data).loras] == [(str(lora), 0.6)]
    data[row.ref] = ""
    assert form.read(data).loras == ()
    data[row.ref] = "upload: other.safetensors"
    with pytest.raises(gr.Error, match="upload the file again"):
        form.read(data)


def test_the_page_sides_read_and_fill_strength_and_lora_scale(page):
    form, _, _ = page
    data = _data(form)
    first, second = form.sides[:2]
    data |= {form.side_count: 2, first.strength: "0.3", second.lora_scale: "1.5"}
    sides = form.read_sides(data)
    assert (sides[0].strength, sides[1].lora_scale) == (0.3, 1.5)
    data[first.strength] = "2"
    with pytest.raises(gr.Error, match="side 1 strength"):
        form.read_sides(data)
    preset = form.preset({**data, first.strength: "0.3"}, include_sides=True)
    updates = form.fill(preset)
    assert (updates[first.strength], updates[second.lora_scale], updates[second.strength]) == (
        "0.3",
        "1.5",
        "",
    )
