"""Image-to-image, inpainting and LoRAs on the tiny model: the real diffusers pipelines, end to end."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.cli_runs import cli
from zimage_ui.metadata import read_provenance, read_text_chunks
from zimage_ui.params import GenerationParams, parse_params
from zimage_ui.providers import get_provider
from zimage_ui.providers.base import Progress
from zimage_ui.providers.local.pipeline_variants import MASK_BLUR_PX
from zimage_ui.runner import Outcome, generate_one

TINY = "diffusers-tiny"
SIDE = 256
INNER = slice(64, 192)  # the inpainting mask's white square


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("inputs")
    ramp = (np.indices((SIDE, SIDE)).sum(0) % 256).astype(np.uint8)
    Image.fromarray(np.stack([ramp, ramp[::-1], 255 - ramp], -1)).save(folder / "in.png")
    mask = np.zeros((SIDE, SIDE), np.uint8)
    mask[INNER, INNER] = 255
    Image.fromarray(mask).save(folder / "mask.png")
    Image.fromarray(np.zeros((SIDE, SIDE), np.uint8)).save(folder / "keep-all.png")
    _tiny_lora(folder / "tiny.safetensors")
    return {path.stem: path for path in folder.iterdir()}


def _tiny_lora(path: Path) -> None:
    """A LoRA for the tiny transformer: peft adapters on its attention projections, random
    non-zero A and B (peft starts B at zero: no effect), saved as diffusers' `save_lora_weights`
    writes it (`transformer.<module>.lora_A.weight`), the format `load_lora_weights` reads."""
    import torch
    from diffusers import ZImagePipeline
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    from zimage_ui.providers.local.tiny_model import build_tiny_pipeline

    transformer = build_tiny_pipeline().transformer
    config = LoraConfig(r=4, lora_alpha=4, target_modules=["to_q", "to_k", "to_v", "to_out.0"])
    transformer.add_adapter(config)
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, weight in transformer.named_parameters():
            if "lora_" in name:
                weight.copy_(torch.randn(weight.shape, generator=generator) * 0.5)
    ZImagePipeline.save_lora_weights(
        path.parent, transformer_lora_layers=get_peft_model_state_dict(transformer), weight_name=path.name
    )


def _params(**inputs: object) -> GenerationParams:
    extra = {"inputs": inputs} if inputs else {}
    return parse_params(prompt="a red fox", width=SIDE, height=SIDE, seed=7, **extra)


async def _run(params: GenerationParams, updates: list[Progress] | None = None) -> tuple[np.ndarray, Outcome]:
    outcome = await generate_one(
        TINY, params, progress=(updates.append if updates is not None else lambda _: None)
    )
    assert outcome.ok, outcome.error
    assert outcome.result is not None
    return np.asarray(outcome.result.images[0]).astype(np.float64), outcome


def _parameters(outcome: Outcome) -> str:
    return read_text_chunks(outcome.pngs[0])["parameters"]


async def test_img2img_strength_changes_the_image_and_the_steps_run(files):
    base, _ = await _run(_params())
    low_updates: list[Progress] = []
    low, low_outcome = await _run(_params(image=str(files["in"]), strength=0.3), low_updates)
    high_updates: list[Progress] = []
    high, high_outcome = await _run(_params(image=str(files["in"]), strength=0.9), high_updates)
    assert np.abs(low - high).mean() > 1
    assert np.abs(low - base).mean() > 1 and np.abs(high - base).mean() > 1
    # diffusers runs steps - int(steps - steps * strength): 3 of 8 at 0.3, all 8 at 0.9
    assert [u.step for u in low_updates if u.step] == [1, 2, 3]
    assert {u.total for u in low_updates if u.total} == {3}
    assert [u.step for u in high_updates if u.step] == list(range(1, 9))
    assert any(u.preview is not None for u in low_updates)
    assert "Denoising strength: 0.3" in _parameters(low_outcome)
    assert "Denoising strength: 0.9" in _parameters(high_outcome)
    record = read_provenance(low_outcome.pngs[0])
    assert record is not None and record["sent"]["strength"] == 0.3
    assert record["params"]["inputs"]["image"] == "in.png"  # its name, never the path it came from
    assert low_outcome.result is not None and "strength 0.3: 3 of 8 steps run" in low_outcome.result.notes


async def test_img2img_shares_the_loaded_pipelines_weights(files):
    await _run(_params(image=str(files["in"])))
    from zimage_ui.providers.local import pipeline_variants

    pipeline = get_provider(TINY)._slot.get()  # type: ignore[attr-defined]
    derived = pipeline_variants._DERIVED[pipeline]["ZImageImg2ImgPipeline"]
    assert derived.transformer is pipeline.transformer and derived.vae is pipeline.vae
    assert derived.text_encoder is pipeline.text_encoder


async def test_inpainting_keeps_the_image_outside_the_mask(files, monkeypatch):
    """The inpainting pipeline blends, after every step, the input's latents back in where the mask
    is black, so the latents outside the mask reach the VAE as the input's own. The VAE's round
    trip still changes those pixels (the tiny VAE is random: it changes them completely), so the
    input's pixels are pasted back outside the mask after decoding, its edge blurred, as A1111
    does: outside the blur the input comes back exactly; inside, the image is redrawn."""
    vae = get_provider(TINY)._slot.get().vae  # type: ignore[attr-defined]
    decoded: list[np.ndarray] = []
    decode = vae.decode

    def recording(latents, *args, **kwargs):
        decoded.append(latents.detach().cpu().numpy().copy())
        return decode(latents, *args, **kwargs)

    monkeypatch.setattr(vae, "decode", recording)
    keep, _ = await _run(_params(image=str(files["in"]), mask=str(files["keep-all"]), strength=1.0))
    painted, outcome = await _run(_params(image=str(files["in"]), mask=str(files["mask"]), strength=1.0))

    inside_latent = np.zeros(decoded[0].shape[-2:], bool)
    inside_latent[8:24, 8:24] = True  # the mask at the latents' 1/8 scale
    latent_gap = np.abs(decoded[1] - decoded[0])[..., ~inside_latent]
    assert latent_gap.max() < 1e-5  # outside the mask: the input's latents, exactly
    assert np.abs(decoded[1] - decoded[0])[..., inside_latent].mean() > 0.1

    original = np.asarray(Image.open(files["in"]).convert("RGB"), dtype=np.float64)
    assert np.array_equal(keep, original)  # nothing painted white: the input itself
    margin = 3 * MASK_BLUR_PX  # past the blurred edge
    far = np.ones((SIDE, SIDE), bool)
    far[INNER.start - margin : INNER.stop + margin, INNER.start - margin : INNER.stop + margin] = False
    core = np.zeros((SIDE, SIDE), bool)
    core[INNER.start + margin : INNER.stop - margin, INNER.start + margin : INNER.stop - margin] = True
    assert np.array_equal(painted[far], original[far])  # outside the mask: the input's pixels
    assert np.abs(painted[core] - original[core]).mean() > 10  # inside: redrawn
    assert "Denoising strength: 1.0" in _parameters(outcome)


async def test_lora_scale_0_is_the_base_image_scale_1_another_and_it_never_leaks(files):
    base, _ = await _run(_params())
    off, _ = await _run(_params(loras=[{"ref": str(files["tiny"]), "scale": 0.0}]))
    on, outcome = await _run(_params(loras=[{"ref": str(files["tiny"]), "scale": 1.0}]))
    after, _ = await _run(_params())
    assert np.array_equal(off, base)
    assert np.abs(on - base).mean() > 1
    assert np.array_equal(after, base)  # the next run without it: the base image, exactly
    text = _parameters(outcome)
    assert text.startswith("a red fox <lora:tiny:1>\n")
    assert 'Lora hashes: "tiny: ' in text
    record = read_provenance(outcome.pngs[0])
    assert record is not None
    [lora] = record["sent"]["loras"]
    assert (lora["name"], lora["scale"], len(lora["hash"])) == ("tiny", 1.0, 12)


def test_cli_generate_with_an_image_and_a_lora(files, tmp_path: Path):
    out = tmp_path / "out"
    command = ["generate", "--provider", TINY, "--prompt", "a red fox"]
    command += ["--image", str(files["in"]), "--strength", "0.6", "--lora", f"{files['tiny']}:0.8"]
    command += ["--seed", "7", "--width", "256", "--height", "256", "--out", str(out), "--json", "--quiet"]
    done = cli(*command)
    assert done.returncode == 0, done.stderr
    [line] = done.stdout.splitlines()
    [path] = json.loads(line)["images"]
    data = Path(path).read_bytes()
    text = read_text_chunks(data)["parameters"]
    assert text.startswith("a red fox <lora:tiny:0.8>\n")
    assert "Denoising strength: 0.6" in text and 'Lora hashes: "tiny: ' in text
    assert Image.open(io.BytesIO(data)).size == (256, 256)


async def test_zero_gpu_worker_gets_the_decoded_inputs_as_plain_values(files):
    """On ZeroGPU the worker is given the params as a dict and the decoded inputs (pickled)."""
    import pickle

    from zimage_ui.image_inputs import load_inputs
    from zimage_ui.providers.local import diffusers_local

    params = _params(image=str(files["in"]), strength=0.5, loras=[{"ref": str(files["tiny"]), "scale": 0.5}])
    local, _ = await _run(params)
    inputs = pickle.loads(pickle.dumps(load_inputs(params)))
    events = list(diffusers_local._gpu_generation(TINY, params.model_dump(), inputs))
    kind, images = events[-1]
    assert kind == "images", images
    assert np.array_equal(np.asarray(images[0]).astype(np.float64), local)
    assert sum(1 for kind, _ in events if kind == "progress") >= 4  # 4 of 8 steps at 0.5
    after, _ = await _run(_params())
    base, _ = await _run(_params(loras=[{"ref": str(files["tiny"]), "scale": 0.0}]))
    assert np.array_equal(after, base)


@pytest.mark.parametrize(
    "inputs",
    [
        {"image": "in.png", "strength": 0.6},
        {"image": "in.png", "mask": "mask.png", "strength": 1.0},
        {"loras": [{"ref": "tiny.safetensors", "scale": 0.7}]},
        {"control_image": "in.png", "control_kind": "depth", "control_scale": 0.9},
    ],
    ids=["img2img", "inpaint", "lora", "controlnet"],
)
async def test_copied_code_makes_the_same_image(files, inputs, tmp_path, monkeypatch):
    """Copy as code for a run with image inputs, LoRAs or ControlNet, run beside copies of its
    files (it names local files by their name), makes exactly the image the app made."""
    from zimage_ui.codegen import copy_as_code

    def full(ref: str) -> str:
        return str(files[Path(ref).stem])

    given = {
        **inputs,
        **{key: full(value) for key, value in inputs.items() if key in {"image", "mask", "control_image"}},
    }
    if "loras" in inputs:
        given["loras"] = [{**lora, "ref": full(lora["ref"])} for lora in inputs["loras"]]
    params = _params(**given)
    app, _ = await _run(params)
    _, code = copy_as_code(get_provider(TINY).prepare(params))
    assert str(files["in"].parent) not in code  # file names only: never the server's folders
    for path in files.values():
        (tmp_path / path.name).write_bytes(path.read_bytes())
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "<copied>", "exec"), {})
    copied = np.asarray(Image.open(tmp_path / "zimage-7.png").convert("RGB"), dtype=np.float64)
    assert np.array_equal(copied, app)


async def test_a_damaged_lora_file_is_said_to_be_unreadable_without_its_server_path(tmp_path: Path):
    upload = tmp_path / "gradio" / "0123abcd" / "ink.safetensors"
    upload.parent.mkdir(parents=True)
    upload.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00" + b"not a tensor header")
    outcome = await generate_one(TINY, _params(loras=[{"ref": str(upload), "scale": 1.0}]))
    assert not outcome.ok
    assert "the LoRA 'ink' can't be read" in outcome.error and "choose another file" in outcome.error
    assert str(tmp_path) not in outcome.error and "OSError" not in outcome.error
