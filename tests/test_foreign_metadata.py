"""PNG info on other tools' own formats: Fooocus's JSON metadata and a ComfyUI graph."""

from __future__ import annotations

import io
import json

from PIL import Image

from tests.test_infotext import A1111_BASIC, png_with
from zimage_ui.infotext import read_png_settings

# Fooocus 2.5 with its default "fooocus" metadata scheme: the JSON its FooocusMetadataParser
# writes (keys sorted; the seed as text, the resolution as a Python tuple), in `parameters`,
# with `fooocus_scheme` beside it.
FOOOCUS = {
    "adm_guidance": "(1.5, 0.8, 0.3)",
    "base_model": "juggernautXL_v8Rundiffusion",
    "base_model_hash": "aeb7e9e6897a1e58b10494bd989d001e3d4bc9b634633cd7b559838f612c2867",
    "clip_skip": 2,
    "full_negative_prompt": [
        "(worst quality, low quality, normal quality, lowres, low details, oversaturated:1.4)",
        "unrealistic, saturated, high contrast, painting, drawing, sketch, cartoon, watermark",
    ],
    "full_prompt": [
        "a lighthouse on a cliff at dusk, dramatic clouds, highly detailed, cinematic",
        "cinematic still a lighthouse on a cliff at dusk . emotional, harmonious, vignette, film grain",
    ],
    "guidance_scale": 4,
    "loras": [["sd_xl_offset_example-lora_1.0", 0.1, "4852686128f953d0277d0793e2f0335352f96a91"]],
    "metadata_scheme": "fooocus",
    "negative_prompt": "people, text",
    "performance": "Speed",
    "prompt": "a lighthouse on a cliff at dusk",
    "prompt_expansion": "a lighthouse on a cliff at dusk, dramatic clouds, highly detailed, cinematic",
    "refiner_model": "None",
    "refiner_switch": 0.5,
    "resolution": "(1152, 896)",
    "sampler": "dpmpp_2m_sde_gpu",
    "scheduler": "karras",
    "seed": "1207598233",
    "sharpness": 2,
    "steps": 30,
    "styles": "['Fooocus V2', 'Fooocus Enhance', 'Fooocus Sharp']",
    "vae": "Default (model)",
    "version": "Fooocus v2.5.5",
}


def fooocus_png(record: dict, scheme: str | None = "fooocus") -> bytes:
    chunks = {"parameters": json.dumps(record)}
    if scheme:
        chunks["fooocus_scheme"] = scheme
    return png_with(chunks)


def test_fooocus_json_is_read_as_settings_not_junk_keys():
    read = read_png_settings(fooocus_png(FOOOCUS))
    assert read.source == "fooocus" and read.provider is None
    assert read.params == {
        "prompt": "a lighthouse on a cliff at dusk",
        "negative_prompt": "people, text",
        "guidance_scale": 3.0,  # Fooocus's guidance_scale is SDXL's CFG scale: 4 - 1
        "width": 1152,
        "height": 896,
        "seed": 1207598233,
        "num_inference_steps": 30,
    }
    assert read.message.startswith(
        "Loaded from the image's Fooocus metadata: prompt, negative prompt, CFG scale, size, seed, steps."
    )
    assert "Made with juggernautXL_v8Rundiffusion, not Z-Image-Turbo" in read.message
    assert "Not used here: Model, adm_guidance, base_model_hash, clip_skip," in read.message
    assert "and 10 more." in read.message  # every one is listed under Ignored
    assert read.ignored["sampler"] == "dpmpp_2m_sde_gpu" and read.ignored["Model"] == FOOOCUS["base_model"]
    assert read.ignored["full_prompt"].endswith(
        "(after Fooocus's styles and expansion: the prompt itself is loaded)"
    )
    assert not {"prompt", "negative_prompt", "steps", "seed", "resolution"} & set(read.ignored)


def test_fooocus_64_bit_seeds_are_reported_and_the_rest_loads():
    read = read_png_settings(fooocus_png({**FOOOCUS, "seed": "3912537405671839420"}, scheme=None))
    assert read.source == "fooocus"  # known by its version, without the scheme chunk
    assert "seed" not in read.params and read.params["num_inference_steps"] == 30
    assert "Not loaded: Seed 3912537405671839420" in read.message


def test_fooocus_jpeg_keeps_its_json_in_the_first_ifds_user_comment():
    exif = Image.Exif()
    exif[0x9286] = json.dumps(FOOOCUS)  # as Fooocus's get_exif writes it
    exif[0x927C] = "fooocus"
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buffer, format="JPEG", exif=exif)
    read = read_png_settings(buffer.getvalue())
    assert read.source == "fooocus" and read.params["seed"] == 1207598233


def test_fooocus_a1111_scheme_is_plain_a1111_text():
    text = A1111_BASIC + ", Performance: Speed, Version: Fooocus v2.5.5"
    read = read_png_settings(png_with({"parameters": text, "fooocus_scheme": "a1111"}))
    assert read.source == "parameters" and read.params["seed"] == 1234567890


def test_json_this_app_does_not_know_is_refused_plainly():
    swarm = {"sui_image_params": {"prompt": "a cat", "seed": 5, "steps": 20}}
    read = read_png_settings(png_with({"parameters": json.dumps(swarm)}))
    assert (read.source, read.params) == (None, {})
    assert read.message == (
        "Not read: its parameters text is JSON, but not in a format this app knows (A1111 text or Fooocus)."
    )


def comfy_graph(seed: int = 857219683044377, **sampler: object) -> dict:
    """ComfyUI's official Z-Image-Turbo template, as its `prompt` chunk holds it (API format)."""
    inputs = {
        "seed": seed,
        "steps": 8,
        "cfg": 1,
        "sampler_name": "res_multistep",
        "scheduler": "simple",
        "denoise": 1,
        "model": ["11", 0],
        "positive": ["6", 0],
        "negative": ["7", 0],
        "latent_image": ["13", 0],
        **sampler,
    }
    return {
        "3": {"class_type": "KSampler", "inputs": inputs},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a red fox in the snow", "clip": ["18", 0]}},
        "7": {"class_type": "ConditioningZeroOut", "inputs": {"conditioning": ["6", 0]}},
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["17", 0]}},
        "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": "z-image", "images": ["8", 0]}},
        "11": {"class_type": "ModelSamplingAuraFlow", "inputs": {"shift": 3, "model": ["16", 0]}},
        "13": {
            "class_type": "EmptySD3LatentImage",
            "inputs": {"width": 1024, "height": 768, "batch_size": 1},
        },
        "16": {"class_type": "UNETLoader", "inputs": {"unet_name": "z_image_turbo_bf16.safetensors"}},
        "17": {"class_type": "VAELoader", "inputs": {"vae_name": "ae.safetensors"}},
        "18": {
            "class_type": "CLIPLoader",
            "inputs": {"clip_name": "qwen_3_4b.safetensors", "type": "lumina2"},
        },
    }


def comfy_png(graph: dict) -> bytes:
    return png_with({"prompt": json.dumps(graph), "workflow": json.dumps({"nodes": [], "links": []})})


def test_a_comfyui_graph_says_it_cant_be_run_and_what_was_read_from_its_sampler():
    read = read_png_settings(comfy_png(comfy_graph(seed=123456)))
    assert read.source == "comfyui" and read.provider is None
    assert read.params == {
        "prompt": "a red fox in the snow",
        "negative_prompt": "",
        "seed": 123456,
        "num_inference_steps": 8,
        "width": 1024,
        "height": 768,
        "shift": 3.0,
        "guidance_scale": 0.0,  # cfg 1: no guidance, Turbo's 0
    }
    assert read.message.startswith(
        "This image carries a ComfyUI graph, which can't be run here. "
        "Read from its sampler node: prompt, seed, steps, size, shift, CFG scale."
    )
    assert "cfg" not in read.ignored
    assert read.ignored["prompt"] == read.ignored["workflow"] == "(ComfyUI graph: can't be run here)"


def test_comfyui_seeds_past_32_bits_and_wired_values_are_not_loaded():
    read = read_png_settings(comfy_png(comfy_graph(steps=["40", 0])))  # steps from another node
    assert "seed" not in read.params and "num_inference_steps" not in read.params
    assert "Not loaded: Seed 857219683044377" in read.message


def test_a_comfyui_graph_with_two_samplers_is_not_guessed_at():
    graph = comfy_graph()
    graph["30"] = {"class_type": "KSampler", "inputs": {**graph["3"]["inputs"], "denoise": 0.4}}
    read = read_png_settings(comfy_png(graph))
    assert read.source is None and read.params == {}
    assert read.message == (
        "This image carries a ComfyUI graph, which can't be run here; nothing was read from it: "
        "it has 2 sampler nodes."
    )


def test_a_comfyui_image_with_a1111_text_reads_the_text():
    chunks = {"parameters": A1111_BASIC, "prompt": json.dumps(comfy_graph()), "workflow": "{}"}
    read = read_png_settings(png_with(chunks))
    assert read.source == "parameters" and read.params["seed"] == 1234567890
    assert read.message.endswith("Its ComfyUI graph can't be run here: the settings come from its text.")
    assert read.ignored["workflow"] == "(ComfyUI graph: can't be run here)"


def test_a_comfyui_graph_loading_z_image_keeps_its_steps_in_the_command():
    """Its loader loads z_image_turbo_bf16.safetensors: its steps and guidance suit Turbo, so `info`
    prints them in the command instead of swapping in Turbo's; another model's graph does not."""
    from zimage_ui.cli_output import settings_report

    read = read_png_settings(comfy_png(comfy_graph(seed=5)))
    assert read.turbo and read.params["num_inference_steps"] == 8
    record, _lines = settings_report(read)
    assert "--steps 8" in record["command"] and "--seed 5" in record["command"]
    other = comfy_graph(seed=5)
    for node in other.values():
        if "unet_name" in node["inputs"]:
            node["inputs"]["unet_name"] = "flux1-dev.safetensors"
    read = read_png_settings(comfy_png(other))
    assert not read.turbo
    assert "--steps" not in (settings_report(read)[0]["command"] or "")
