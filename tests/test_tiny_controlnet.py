"""ControlNet on the local model: the tiny one end to end, and the real loading path on the CPU."""

from __future__ import annotations

import io
import json
import pickle
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from tests.cli_runs import CliRun, cli
from tests.conftest import ramp_rgb
from zimage_ui.errors import InvalidParams
from zimage_ui.image_inputs import fetch_remote, load_inputs
from zimage_ui.infotext import read_png_settings
from zimage_ui.metadata import PARAMETERS_KEY, ZIMAGE_KEY, png_with_chunks, read_provenance, read_text_chunks
from zimage_ui.net.http import HttpEngine
from zimage_ui.params import GenerationParams, parse_params
from zimage_ui.providers import PROVIDERS, get_provider
from zimage_ui.providers.base import KeyRing, refuse_inputs
from zimage_ui.providers.local import controlnet, diffusers_local, pipeline_variants
from zimage_ui.runner import Outcome, generate_one

TINY = "diffusers-tiny"
SIDE = 256
ROOT = Path(__file__).parent.parent


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("control")
    Image.fromarray(ramp_rgb(SIDE)).save(folder / "ramp.png")
    edges = np.zeros((SIDE, SIDE), np.uint8)
    edges[::16] = 255
    edges[:, ::16] = 255
    Image.fromarray(edges).save(folder / "grid.png")  # grey: converted to RGB when read
    Image.fromarray(edges).resize((128, 96)).save(folder / "small.png")
    (folder / "garbage.png").write_bytes(b"this is no image at all")
    Image.new("1", (4100, 4100)).save(folder / "huge.png")  # small on disk, too many pixels
    return {path.stem: path for path in folder.iterdir()}


def _params(**inputs: object) -> GenerationParams:
    extra = {"inputs": inputs} if inputs else {}
    return parse_params(prompt="a red fox", width=SIDE, height=SIDE, seed=7, **extra)


async def _run(params: GenerationParams, provider: str = TINY) -> tuple[np.ndarray, Outcome]:
    outcome = await generate_one(provider, params)
    assert outcome.ok, outcome.error
    assert outcome.result is not None
    return np.asarray(outcome.result.images[0]).astype(np.float64), outcome


async def test_a_control_image_changes_the_image_and_scale_0_is_text_to_image(files):
    base, _ = await _run(_params())
    ramp, outcome = await _run(_params(control_image=str(files["ramp"]), control_scale=1.0))
    grid, _ = await _run(_params(control_image=str(files["grid"]), control_scale=1.0))
    zero, _ = await _run(_params(control_image=str(files["ramp"]), control_scale=0.0))
    after, _ = await _run(_params())
    assert np.abs(ramp - base).mean() > 1
    assert np.abs(grid - ramp).mean() > 1  # two control images: two images
    assert np.abs(zero - ramp).mean() > 1  # scale 0 vs 1 differ...
    assert np.array_equal(zero, base)  # ...and 0 adds nothing: the text-to-image pixels
    assert np.array_equal(after, base)  # a run without one after it: text-to-image again
    assert outcome.prepared is not None
    body = outcome.prepared.body
    assert body["controlnet_conditioning_scale"] == 1.0 and body["control_kind"] == "canny"
    assert body["pipeline"].startswith("ZImageControlNetPipeline.from_pipe")
    assert outcome.result is not None and outcome.result.sent.control == ("canny", 1.0)


async def test_the_png_records_the_controlnet_and_reads_back_kind_and_scale(files):
    _, outcome = await _run(
        _params(control_image=str(files["grid"]), control_kind="depth", control_scale=0.5)
    )
    text = read_text_chunks(outcome.pngs[0])[PARAMETERS_KEY]
    unit = 'ControlNet 0: "Module: depth, Model: tiny-controlnet, Weight: 0.5, Resize Mode: Just Resize"'
    assert unit in text.splitlines()[-1]
    record = read_provenance(outcome.pngs[0])
    assert record is not None
    assert record["sent"]["control"] == {"kind": "depth", "scale": 0.5, "model": "tiny-controlnet"}
    assert record["params"]["inputs"]["control_kind"] == "depth"
    assert record["params"]["inputs"]["control_scale"] == 0.5
    # Our own image read back from its A1111 text alone (as another tool would keep it): the kind
    # and the scale come back; the control image's file is not in the text.
    only_text = png_with_chunks(Image.new("RGB", (8, 8)), {PARAMETERS_KEY: text})
    read = read_png_settings(only_text)
    assert read.params["inputs"] == {"control_kind": "depth", "control_scale": 0.5}
    assert "Give the control image again" in read.message
    assert ZIMAGE_KEY not in read_text_chunks(only_text)


async def test_the_controlnet_pipeline_shares_the_loaded_weights(files):
    await _run(_params(control_image=str(files["ramp"])))
    pipeline = get_provider(TINY)._slot.get()  # type: ignore[attr-defined]
    derived = pipeline_variants._DERIVED[pipeline]["ZImageControlNetPipeline"]
    assert derived.transformer is pipeline.transformer and derived.vae is pipeline.vae
    assert derived.text_encoder is pipeline.text_encoder
    model = derived.controlnet
    assert model.t_embedder is pipeline.transformer.t_embedder  # the embedders are the transformer's
    assert model.noise_refiner is pipeline.transformer.noise_refiner
    shared = {id(p) for p in pipeline.transformer.parameters()}
    own = [p for p in model.parameters() if id(p) not in shared]
    assert 0 < sum(p.numel() for p in own) < sum(p.numel() for p in pipeline.transformer.parameters())
    await _run(_params(control_image=str(files["grid"])))
    assert pipeline_variants._DERIVED[pipeline]["ZImageControlNetPipeline"].controlnet is model  # once


async def test_the_tiny_controlnet_is_built_deterministically():
    from zimage_ui.providers.local.tiny_model import build_tiny_controlnet, build_tiny_pipeline

    transformer = build_tiny_pipeline().transformer
    one, two = build_tiny_controlnet(transformer), build_tiny_controlnet(transformer)
    for (name, a), (_, b) in zip(one.state_dict().items(), two.state_dict().items(), strict=True):
        assert a.equal(b), name
    assert one.control_layers[0].after_proj.weight.abs().sum() > 0  # diffusers starts it at zero


async def test_hosted_providers_without_controlnet_refuse_a_control_image(files):
    params = _params(control_image="https://images.example/edges.png")
    refusing = [p for p in PROVIDERS.values() if not p.capabilities.control_input]
    assert len([p for p in refusing if not p.capabilities.local_gpu]) >= 3
    for provider in refusing:
        if provider.capabilities.local_gpu:
            continue
        with pytest.raises(InvalidParams) as caught:
            provider.prepare(params)
        assert "control_image" in caught.value.fields, provider.id


async def test_a_garbage_or_oversized_control_image_is_a_clear_invalid_params(files):
    with pytest.raises(InvalidParams) as garbage:
        load_inputs(_params(control_image=str(files["garbage"])))
    assert "not a readable image" in garbage.value.fields["control_image"]
    with pytest.raises(InvalidParams) as huge:
        load_inputs(_params(control_image=str(files["huge"])))
    assert "pixels: refused" in huge.value.fields["control_image"]
    outcome = await generate_one(TINY, _params(control_image=str(files["garbage"])))
    assert not outcome.ok and outcome.error is not None and "control_image" in outcome.error


def test_a_control_image_is_read_as_rgb_at_the_size_asked_with_a_note(files):
    loaded = load_inputs(_params(control_image=str(files["small"])))
    assert loaded.control is not None and loaded.control.mode == "RGB"
    assert loaded.control.size == (SIDE, SIDE) and loaded.image is None
    assert loaded.notes == ("control image 128x96 resized to 256x256",)
    same = load_inputs(_params(control_image=str(files["grid"])))
    assert same.control is not None and same.notes == ()


async def test_an_https_control_image_is_downloaded_through_the_http_engine():
    buffer = io.BytesIO()
    Image.new("RGB", (SIDE, SIDE), (9, 8, 7)).save(buffer, format="PNG")
    seen: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        return httpx.Response(200, content=buffer.getvalue(), headers={"content-type": "image/png"})

    params = _params(control_image="https://images.example/edges.png", control_kind="pose")
    fetched = await fetch_remote(params.inputs, HttpEngine(transport=httpx.MockTransport(answer)))
    loaded = load_inputs(params, fetched)
    assert seen == ["https://images.example/edges.png"]
    assert loaded.control is not None and loaded.control.getpixel((0, 0)) == (9, 8, 7)


async def test_zero_gpu_worker_gets_the_control_image_as_a_plain_value(files):
    params = _params(control_image=str(files["ramp"]), control_scale=0.9)
    local, _ = await _run(params)
    inputs = pickle.loads(pickle.dumps(load_inputs(params)))
    events = list(diffusers_local._gpu_generation(TINY, params.model_dump(), inputs))
    kind, images = events[-1]
    assert kind == "images", images
    assert np.array_equal(np.asarray(images[0]).astype(np.float64), local)


def _cli(*flags: str, out: Path) -> CliRun:
    command = ["generate", "--provider", TINY, "--prompt", "a red fox"]
    command += [*flags, "--seed", "7", "--width", "256", "--height", "256", "--out", str(out), "--quiet"]
    return cli(*command)


def test_cli_control_image_and_scale(files, tmp_path: Path):
    done = _cli("--control-image", f"pose={files['ramp']}", "--control-scale", "1.5", "--json", out=tmp_path)
    assert done.returncode == 0, done.stderr
    [path] = json.loads(done.stdout.splitlines()[0])["images"]
    text = read_text_chunks(Path(path).read_bytes())[PARAMETERS_KEY]
    assert 'ControlNet 0: "Module: pose, Model: tiny-controlnet, Weight: 1.5' in text
    bare = _cli("--control-image", str(files["ramp"]), "--json", out=tmp_path / "bare")
    assert bare.returncode == 0, bare.stderr
    [path] = json.loads(bare.stdout.splitlines()[0])["images"]
    assert (
        "Module: canny, Model: tiny-controlnet, Weight: 0.75"
        in read_text_chunks(Path(path).read_bytes())[PARAMETERS_KEY]
    )


@pytest.mark.parametrize(
    ("flags", "said"),
    [
        (("--control-image", "edges=x.png"), "'edges' is no control kind"),
        (("--control-image", "depth="), "give the control image's path"),
        (("--control-image", "x.png", "--control-scale", "2.5"), "2.5 is outside 0..2"),
        (("--control-image", "x.png", "--control-scale", "lots"), "'lots' is not a number"),
        (("--control-image", "GARBAGE"), "not a readable image"),
        (("--control-image", "x.png", "--image", "x.png"), "can't be used together"),
    ],
)
def test_cli_bad_control_flags_exit_2_with_one_line(files, tmp_path: Path, flags: tuple[str, ...], said: str):
    flags = tuple(str(files["garbage"]) if flag == "GARBAGE" else flag for flag in flags)
    done = _cli(*flags, out=tmp_path)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and said in lines[0], done.stderr
    assert not list(tmp_path.glob("*.png"))


# ---- the real loading path (`diffusers` provider), on the CPU with the tiny model saved --------


@pytest.fixture(scope="module")
def saved_controlnet(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The tiny ControlNet as a diffusers folder and as one .safetensors file (as alibaba-pai ships
    the real one), with a config folder for the file (its geometry is no published Union's)."""
    from safetensors.torch import save_file

    from zimage_ui.providers.local.tiny_model import build_tiny_controlnet, build_tiny_pipeline

    folder = tmp_path_factory.mktemp("controlnet")
    model = build_tiny_controlnet(build_tiny_pipeline().transformer)
    model.save_pretrained(folder / "tiny-union")
    save_file(
        {k: v.contiguous() for k, v in model.state_dict().items()}, folder / "tiny-union-file.safetensors"
    )
    return {"folder": folder / "tiny-union", "file": folder / "tiny-union-file.safetensors"}


@pytest.fixture
def cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ZIMAGE_DEVICE", "cpu")
    monkeypatch.setattr(diffusers_local, "_total_ram_gib", lambda: 512.0)


async def test_the_diffusers_provider_without_a_controlnet_says_to_set_one(
    tiny_checkpoint, cpu, files, monkeypatch
):
    monkeypatch.delenv(controlnet.CONTROLNET_ENV, raising=False)
    provider = get_provider("diffusers")
    assert not provider.capabilities.control_input
    assert controlnet.CONTROLNET_ENV in provider.details()
    outcome = await generate_one("diffusers", _params(control_image=str(files["ramp"])))
    assert not outcome.ok and outcome.error is not None
    assert "no ControlNet is set up" in outcome.error and "set ZIMAGE_CONTROLNET" in outcome.error
    assert not provider._slot.loaded  # type: ignore[attr-defined]  # refused before loading the model
    with pytest.raises(InvalidParams, match="set ZIMAGE_CONTROLNET"):  # the CLI's check, before any work
        refuse_inputs(_params(control_image=str(files["ramp"])), provider.capabilities, "diffusers")


@pytest.mark.parametrize("form", ["folder", "file"])
async def test_the_diffusers_provider_runs_a_configured_controlnet(
    tiny_checkpoint, cpu, saved_controlnet, files, monkeypatch, form: str
):
    monkeypatch.setenv(controlnet.CONTROLNET_ENV, str(saved_controlnet[form]))
    if form == "file":
        monkeypatch.setenv(controlnet.CONTROLNET_CONFIG_ENV, str(saved_controlnet["folder"]))
    provider = get_provider("diffusers")
    assert provider.capabilities.control_input and "canny" in provider.capabilities.control_kinds
    assert provider.availability(KeyRing()).usable
    base, _ = await _run(_params(), "diffusers")
    tiny_control, _ = await _run(_params(control_image=str(files["ramp"])))
    control, outcome = await _run(_params(control_image=str(files["ramp"])), "diffusers")
    assert np.abs(control - base).mean() > 1
    assert np.array_equal(control, tiny_control)  # the same weights, loaded through the real path
    name = saved_controlnet[form].stem
    assert f"Model: {name}, Weight: 0.75" in read_text_chunks(outcome.pngs[0])[PARAMETERS_KEY]
    after, _ = await _run(_params(), "diffusers")
    assert np.array_equal(after, base)


async def test_a_controlnet_that_does_not_fit_is_a_clear_failure(
    tiny_checkpoint, cpu, saved_controlnet, files, monkeypatch
):
    """The tiny file without a config override: taken for the published Union 1.0 (its tensor
    names), whose shipped 3840-wide config it does not fit. A clear error, never a hub fetch."""
    monkeypatch.setenv(controlnet.CONTROLNET_ENV, str(saved_controlnet["file"]))
    monkeypatch.delenv(controlnet.CONTROLNET_CONFIG_ENV, raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    outcome = await generate_one("diffusers", _params(control_image=str(files["ramp"])))
    assert not outcome.ok and outcome.error is not None
    assert "could not load the ControlNet" in outcome.error and controlnet.CONTROLNET_ENV in outcome.error


def _header_only(path: Path, tensors: dict[str, float]) -> Path:
    import torch
    from safetensors.torch import save_file

    save_file({key: torch.full((2, 2), value) for key, value in tensors.items()}, path)
    return path


def test_the_union_version_is_told_from_the_file_header(tmp_path: Path):
    v1, v2, v21 = controlnet._V1_KEY, controlnet._V2_KEY, controlnet._V21_KEY
    assert controlnet.union_version(_header_only(tmp_path / "a.safetensors", {v1: 1})) == controlnet.UNION
    assert controlnet.union_version(_header_only(tmp_path / "b.safetensors", {v1: 1, v2: 1})).endswith("-2.0")
    zero = _header_only(tmp_path / "c.safetensors", {v1: 1, v2: 1, v21: 0})
    assert controlnet.union_version(zero).endswith("-2.0")
    assert controlnet.union_version(
        _header_only(tmp_path / "d.safetensors", {v1: 1, v2: 1, v21: 0.5})
    ).endswith("-2.1")
    with pytest.raises(ValueError, match="not a Z-Image ControlNet"):
        controlnet.union_version(_header_only(tmp_path / "e.safetensors", {"other.weight": 1}))


@pytest.mark.parametrize("name", sorted(controlnet.UNION_CONFIGS))
def test_the_shipped_union_configs_build_the_layers_their_version_has(name: str):
    """Each shipped config builds (on the meta device: no memory) a model whose tensor names are
    the ones `union_version` tells that version by."""
    from accelerate import init_empty_weights
    from diffusers import ZImageControlNetModel

    with init_empty_weights():
        model = ZImageControlNetModel.from_config(controlnet.UNION_CONFIGS[name])
    keys = set(model.state_dict())
    assert controlnet._V1_KEY in keys
    assert (controlnet._V2_KEY in keys) == ("-2." in name)
    assert (controlnet._V21_KEY in keys) == name.endswith("-2.1")


async def test_on_zero_gpu_the_controlnet_is_loaded_with_the_model(
    tiny_checkpoint, cpu, saved_controlnet, files, monkeypatch
):
    """ZeroGPU forks its worker from the app process: the ControlNet is loaded there at warm-up,
    once, and the control runs use that one."""
    monkeypatch.setenv(controlnet.CONTROLNET_ENV, str(saved_controlnet["folder"]))
    provider = get_provider("diffusers")
    provider.preload_controlnet()  # type: ignore[attr-defined]
    pipeline = provider._slot.get()  # type: ignore[attr-defined]
    model = pipeline_variants._DERIVED[pipeline]["ZImageControlNetPipeline"].controlnet
    assert model.control_layers[0].after_proj.weight.abs().sum() > 0
    await _run(_params(control_image=str(files["ramp"])), "diffusers")
    assert pipeline_variants._DERIVED[pipeline]["ZImageControlNetPipeline"].controlnet is model
