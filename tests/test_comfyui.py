"""ComfyUI: the workflow filled from params, and runs against the loopback ComfyUI emulator."""

from __future__ import annotations

import asyncio
import copy
import io
import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from tests.cli_runs import cli
from tests.emulators import Emulator
from tests.emulators.base import png_bytes
from zimage_ui.cancel import CancelToken
from zimage_ui.errors import Cancelled, ProviderError, ProviderUnavailable
from zimage_ui.metadata import read_text_chunks
from zimage_ui.net.http import HttpEngine
from zimage_ui.net.retry import RetryPolicy
from zimage_ui.params import GenerationParams
from zimage_ui.providers import PROVIDERS
from zimage_ui.providers.base import KeyRing, Progress
from zimage_ui.providers.hosted.comfyui import TEMPLATE, ComfyUIProvider, fill_workflow, read_workflow

TEMPLATE_GRAPH = json.loads(TEMPLATE.read_text())


def params(**values: object) -> GenerationParams:
    return GenerationParams(**{"prompt": "a lighthouse at dusk", "seed": 1234, **values})  # type: ignore[arg-type]


def by_class(graph: dict[str, Any], class_type: str) -> dict[str, Any]:
    [node] = [node for node in graph.values() if node["class_type"] == class_type]
    return node["inputs"]


def seed_colour(seed: int) -> tuple[int, int, int]:
    with Image.open(io.BytesIO(png_bytes(1, 1, seed))) as image:
        return image.convert("RGB").getpixel((0, 0))  # type: ignore[return-value]


def provider() -> ComfyUIProvider:
    return ComfyUIProvider(HttpEngine(retry=RetryPolicy(base_s=0.05)))


def write_workflow(tmp_path: Path, graph: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "workflow_api.json"
    path.write_text(json.dumps(graph))
    monkeypatch.setenv("ZIMAGE_COMFYUI_WORKFLOW", str(path))
    return path


# -- the graph ------------------------------------------------------------------------------


def test_the_template_is_filled_from_the_params(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("ZIMAGE_COMFYUI_URL", "http://gpu-box:8188")
    monkeypatch.delenv("ZIMAGE_COMFYUI_WORKFLOW", raising=False)
    prepared = ComfyUIProvider().prepare(params(width=1152, height=896, num_images=2, shift=4.0))
    assert prepared.url == "http://gpu-box:8188/prompt"
    assert set(prepared.body) == {"prompt", "client_id"}
    graph = prepared.body["prompt"]
    sampler = by_class(graph, "KSampler")
    assert (sampler["seed"], sampler["steps"], sampler["cfg"]) == (1234, 8, 1.0)
    assert (sampler["sampler_name"], sampler["scheduler"]) == ("res_multistep", "simple")
    assert by_class(graph, "EmptySD3LatentImage") == {"width": 1152, "height": 896, "batch_size": 2}
    assert by_class(graph, "CLIPTextEncode")["text"] == "a lighthouse at dusk"
    assert by_class(graph, "ModelSamplingAuraFlow")["shift"] == 4.0
    assert by_class(graph, "UNETLoader")["unet_name"] == "z_image_turbo_bf16.safetensors"
    assert by_class(graph, "CLIPLoader") == {
        "clip_name": "qwen_3_4b.safetensors",
        "type": "lumina2",
        "device": "default",
    }
    assert by_class(graph, "ConditioningZeroOut")  # guidance 0: the template's negative is kept
    assert json.loads(TEMPLATE.read_text()) == TEMPLATE_GRAPH  # filling never changes the template
    assert prepared.sent.steps == 8 and prepared.sent.shift == 4.0 and not prepared.sent.negative_sent
    assert "Authorization" not in prepared.headers  # no key set: none shown, none sent


def test_two_seeds_or_step_counts_give_two_graphs():
    first, _, _ = fill_workflow(TEMPLATE_GRAPH, params(seed=1))
    again, _, _ = fill_workflow(TEMPLATE_GRAPH, params(seed=1))
    other_seed, _, _ = fill_workflow(TEMPLATE_GRAPH, params(seed=2))
    other_steps, _, _ = fill_workflow(TEMPLATE_GRAPH, params(seed=1, num_inference_steps=4))
    assert first == again
    assert first != other_seed and by_class(other_seed, "KSampler")["seed"] == 2
    assert first != other_steps and by_class(other_steps, "KSampler")["steps"] == 4


def test_guidance_maps_to_cfg_plus_one_with_an_encoded_negative():
    graph, sent, notes = fill_workflow(TEMPLATE_GRAPH, params(guidance_scale=4.0, negative_prompt="blur"))
    sampler = by_class(graph, "KSampler")
    assert sampler["cfg"] == 5.0  # diffusers' pos + g(pos - neg) is classic CFG at 1 + g
    negative = graph[sampler["negative"][0]]
    assert negative["class_type"] == "CLIPTextEncode" and negative["inputs"]["text"] == "blur"
    positive = graph[sampler["positive"][0]]
    assert negative["inputs"]["clip"] == positive["inputs"]["clip"]
    assert sent.negative_sent and ("cfg", 5.0) in sent.extra_fields and not notes

    _, sent, notes = fill_workflow(TEMPLATE_GRAPH, params(negative_prompt="blur"))
    assert not sent.negative_sent
    assert any("with guidance 0 (cfg 1) ComfyUI does not use a negative" in note for note in notes)


def user_workflow() -> dict[str, Any]:
    """A workflow as a person exports it: other ids, EmptyLatentImage, its own negative encoder."""
    graph = copy.deepcopy(TEMPLATE_GRAPH)
    renamed = {old: f"n{old}" for old in graph}
    text = json.dumps(graph)
    for old, new in sorted(renamed.items(), key=lambda item: -len(item[0])):
        text = text.replace(f'"{old}"', f'"{new}"')
    graph = json.loads(text)
    graph["n13"] = {
        "class_type": "EmptyLatentImage",
        "inputs": {"width": 512, "height": 512, "batch_size": 1},
    }
    graph["n7"] = {"class_type": "CLIPTextEncode", "inputs": {"text": "old negative", "clip": ["n18", 0]}}
    graph["n3"]["inputs"]["sampler_name"] = "euler"
    return graph


def test_a_user_workflow_is_filled_by_class_type(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("ZIMAGE_COMFYUI_URL", "http://gpu-box:8188")
    write_workflow(tmp_path, user_workflow(), monkeypatch)
    prepared = ComfyUIProvider().prepare(
        params(width=768, height=512, guidance_scale=1.5, negative_prompt="fog")
    )
    graph = prepared.body["prompt"]
    assert set(graph) == {f"n{node_id}" for node_id in TEMPLATE_GRAPH}  # no node added
    assert graph["n3"]["inputs"] | {"model": None} == {
        **graph["n3"]["inputs"],
        "seed": 1234,
        "steps": 8,
        "cfg": 2.5,
        "sampler_name": "euler",  # the person's own sampler is kept
        "model": None,
    }
    assert graph["n13"]["inputs"] == {"width": 768, "height": 512, "batch_size": 1}
    assert graph["n6"]["inputs"]["text"] == "a lighthouse at dusk"
    assert graph["n7"]["inputs"]["text"] == "fog"  # its own negative CLIPTextEncode gets the negative
    assert prepared.sent.negative_sent and ("sampler_name", "euler") in prepared.sent.extra_fields


@pytest.mark.parametrize(
    ("change", "named"),
    [
        (lambda g: g.pop("n3"), "no KSampler node"),
        (lambda g: g.pop("n11"), "no ModelSamplingAuraFlow node"),
        (lambda g: g.pop("n9"), "no SaveImage node"),
        (lambda g: g.update(n30=copy.deepcopy(g["n3"])), "2 KSampler nodes (n3, n30)"),
        (lambda g: g["n3"]["inputs"].update(positive=["n17", 0]), "positive comes from node n17 (VAELoader)"),
        (
            lambda g: g["n13"].pop("class_type"),
            "node n13 of ZIMAGE_COMFYUI_WORKFLOW (workflow_api.json) has no class_type",
        ),
    ],
)
def test_a_workflow_without_a_needed_node_is_refused_clearly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, change: Any, named: str
):
    monkeypatch.setenv("ZIMAGE_COMFYUI_URL", "http://gpu-box:8188")
    graph = user_workflow()
    change(graph)
    write_workflow(tmp_path, graph, monkeypatch)
    comfy = ComfyUIProvider()
    with pytest.raises(ProviderUnavailable) as caught:
        comfy.prepare(params())
    assert named in str(caught.value) and str(caught.value).startswith("comfyui: ")
    if "class_type" in named:  # read before anything is filled: the page says it at once
        assert named in comfy.availability(KeyRing()).reason


def test_a_ui_format_workflow_and_an_unset_url_say_what_to_do(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.delenv("ZIMAGE_COMFYUI_URL", raising=False)
    status = ComfyUIProvider().availability(KeyRing())
    assert not status.usable and "set ZIMAGE_COMFYUI_URL" in status.reason
    monkeypatch.setenv("ZIMAGE_COMFYUI_URL", "http://gpu-box:8188")
    write_workflow(tmp_path, {"nodes": [], "links": [], "version": 0.4}, monkeypatch)
    status = ComfyUIProvider().availability(KeyRing())
    assert not status.usable and "Export (API)" in status.reason
    monkeypatch.setenv("ZIMAGE_COMFYUI_WORKFLOW", str(tmp_path / "gone.json"))
    assert "can't be read" in ComfyUIProvider().availability(KeyRing()).reason
    monkeypatch.delenv("ZIMAGE_COMFYUI_WORKFLOW")
    assert read_workflow("") == TEMPLATE_GRAPH
    # the workflow reads; the server is asked whether it has the model files and does not answer:
    # that is not a "no" (the run reports what it meets, with its retries)
    assert ComfyUIProvider().availability(KeyRing()).usable


# -- runs against the emulator --------------------------------------------------------------


async def run(comfy: ComfyUIProvider, p: GenerationParams | None = None, **kwargs: Any):
    return await comfy.run(comfy.prepare(p or params()), keys=KeyRing(), **kwargs)


async def test_a_run_returns_the_seeds_image_and_reports_every_step(comfyui_emulator: Emulator):
    comfyui_emulator.behaviour.job_delay_s = 0.2
    updates: list[Progress] = []
    result = await run(provider(), params(width=512, height=384, seed=77), progress=updates.append)
    [image] = result.images
    assert image.size == (512, 384)
    assert image.convert("RGB").getpixel((0, 0)) == seed_colour(77)
    steps = [(u.step, u.total) for u in updates if u.step is not None]
    assert steps == [(k, 8) for k in range(1, 9)]
    assert [u.message for u in updates if u.step is not None] == [f"step {k}/8" for k in range(1, 9)]
    assert [u.fraction for u in updates if u.step is not None] == [k / 8 for k in range(1, 9)]
    assert result.job_id in comfyui_emulator.history and result.seed == 77
    assert not any("polling" in note for note in result.notes)
    assert comfyui_emulator.calls("GET", "/ws")  # the websocket was opened ...
    paths = [r.path for r in comfyui_emulator.requests if not r.path.startswith("/object_info")]
    assert paths[0] == "/ws"  # ... before the prompt was posted (after asking for the model files)


async def test_a_batch_comes_back_whole(comfyui_emulator: Emulator):
    result = await run(provider(), params(width=256, height=256, num_images=3, seed=5))
    colours = [image.convert("RGB").getpixel((0, 0)) for image in result.images]
    assert len(set(colours)) == 3 and len(comfyui_emulator.downloads) == 3
    [submit] = comfyui_emulator.calls("POST", "/prompt")
    assert by_class(submit.body["prompt"], "EmptySD3LatentImage")["batch_size"] == 3


async def test_stop_mid_run_interrupts_the_prompt(comfyui_emulator: Emulator):
    token = CancelToken()

    def stop_at_the_first_step(update: Progress) -> None:
        if update.step == 1:
            token.cancel()

    comfyui_emulator.behaviour.job_delay_s = 4  # 0.5 s a step: Stop lands during step 2
    with pytest.raises(Cancelled) as caught:
        await run(provider(), cancel=token, progress=stop_at_the_first_step)
    message = str(caught.value)
    assert message == "comfyui: stopped; the job was cancelled at the provider"
    [prompt_id] = list(comfyui_emulator.prompts)
    [interrupt] = comfyui_emulator.calls("POST", "/interrupt")
    assert interrupt.body == {"prompt_id": prompt_id}  # only our prompt: never another user's
    assert comfyui_emulator.calls("POST", "/queue")[0].body == {"delete": [prompt_id]}
    for _ in range(100):
        if prompt_id in comfyui_emulator.history:
            break
        await asyncio.sleep(0.02)
    assert comfyui_emulator.history[prompt_id]["status"]["status_str"] == "error"
    kinds = [kind for kind, _ in comfyui_emulator.messages]
    assert "execution_interrupted" in kinds and "execution_success" not in kinds
    assert kinds.count("progress") < 8


async def test_an_interrupt_at_the_server_ends_as_cancelled(comfyui_emulator: Emulator):
    comfyui_emulator.behaviour.job_delay_s = 2

    async def interrupt_from_elsewhere() -> None:
        await asyncio.sleep(0.4)
        async with httpx.AsyncClient() as client:  # the ComfyUI page's Cancel: no prompt_id
            await client.post(
                f"{comfyui_emulator.root}/interrupt",
                headers={"Authorization": "Bearer emu-comfyui-key"},
            )

    other = asyncio.create_task(interrupt_from_elsewhere())
    with pytest.raises(Cancelled, match="interrupted at the ComfyUI server"):
        await run(provider())
    await other


async def test_node_errors_are_shown_naming_the_node(
    comfyui_emulator: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    graph = user_workflow()
    graph["n3"]["inputs"]["sampler_name"] = "euler_x"
    write_workflow(tmp_path, graph, monkeypatch)
    with pytest.raises(ProviderError) as caught:
        await run(provider())
    message = str(caught.value)
    assert "HTTP 400" in message and "Traceback" not in message
    assert "node n3 (KSampler): Value not in list: sampler_name: 'euler_x' not in" in message

    graph["n16"] = {"class_type": "UnetLoaderGGUF", "inputs": {"unet_name": "z.gguf"}}
    write_workflow(tmp_path, graph, monkeypatch)
    with pytest.raises(ProviderError, match="Cannot execute because node UnetLoaderGGUF does not exist"):
        await run(provider())


async def test_without_a_websocket_the_history_is_polled(comfyui_emulator: Emulator):
    comfyui_emulator.websocket_down = True
    comfyui_emulator.behaviour.polls_before_done = 2
    comfyui_emulator.behaviour.job_delay_s = 0.2
    result = await run(provider(), params(seed=9, width=256, height=256))
    assert result.images[0].convert("RGB").getpixel((0, 0)) == seed_colour(9)
    assert any(
        "refused the websocket (HTTP 403): followed the prompt by polling /history" in n for n in result.notes
    )
    assert len(comfyui_emulator.calls("GET", "/history/")) >= 3


async def test_a_failing_prompt_without_a_websocket_reports_its_error(comfyui_emulator: Emulator):
    comfyui_emulator.websocket_down = True
    comfyui_emulator.behaviour.fail_reason = "CUDA out of memory"
    with pytest.raises(ProviderError, match=r"failed at node 3 \(KSampler\) \(CUDA out of memory\)"):
        await run(provider())


async def test_no_key_no_authorization_header(comfyui_emulator: Emulator, monkeypatch: pytest.MonkeyPatch):
    comfyui_emulator.require_key = False  # plain ComfyUI on a LAN: no proxy, no key
    monkeypatch.delenv("ZIMAGE_COMFYUI_API_KEY")
    result = await run(provider())
    assert len(result.images) == 1
    assert comfyui_emulator.requests and all(
        "authorization" not in r.headers for r in comfyui_emulator.requests
    )


async def test_page_progress_shows_step_k_of_n(comfyui_emulator: Emulator):
    from zimage_ui.ui.common import progress_reporter

    shown: list[tuple[Any, str, str | None]] = []

    def page_progress(value: Any, desc: str = "", unit: str | None = None) -> None:
        shown.append((value, desc, unit))

    comfyui_emulator.behaviour.job_delay_s = 0.2
    await run(provider(), progress=progress_reporter(page_progress, "comfyui"))  # type: ignore[arg-type]
    steps = [(value, desc) for value, desc, unit in shown if unit == "steps"]
    assert [value for value, _ in steps] == [(k, 8) for k in range(1, 9)]
    assert all(desc.startswith(f"comfyui: step {k}/8") for k, (_, desc) in enumerate(steps, 1))


SETTINGS = ["--seed", "21", "--width", "512", "--height", "512", "--json"]


def test_the_cli_writes_a_png(comfyui_emulator: Emulator, tmp_path: Path):
    import os

    env = {**os.environ, **comfyui_emulator.env()}
    run = cli(
        "generate", "--provider", "comfyui", "--prompt", "a fox", *SETTINGS, "--out", str(tmp_path), env=env
    )
    assert run.returncode == 0, run.stderr
    record = json.loads(run.stdout)
    assert record["provider"] == "comfyui" and record["error"] is None
    data = Path(record["images"][0]).read_bytes()
    assert data.startswith(b"\x89PNG") and "Seed: 21" in read_text_chunks(data)["parameters"]
    assert "emu-comfyui-key" not in run.stdout + run.stderr
    assert comfyui_emulator.calls("POST", "/prompt") and comfyui_emulator.downloads
    assert PROVIDERS["comfyui"].label.startswith("ComfyUI")


@pytest.mark.parametrize(
    ("error", "hint"),
    [
        (
            {"type": "value_not_in_list", "details": "clip_name: 'qwen_3_4b.safetensors' not in []"},
            " (the server has no qwen_3_4b.safetensors: put it in ComfyUI's models/text_encoders/)",
        ),
        (
            {
                "type": "value_not_in_list",
                "details": "x",
                "extra_info": {"input_name": "vae_name", "received_value": "ae.safetensors"},
            },
            " (the server has no ae.safetensors: put it in ComfyUI's models/vae/)",
        ),
        ({"type": "value_not_in_list", "details": "sampler_name: 'x' not in ['euler']"}, ""),
        ({"type": "invalid_input", "details": "unet_name: 'x' not in []"}, ""),
    ],
    ids=["text-encoder-from-details", "vae-from-extra-info", "not-a-file", "another-error"],
)
def test_a_missing_model_file_names_its_folder(error: dict, hint: str):
    from zimage_ui.providers.hosted.comfyui import missing_file_hint

    assert missing_file_hint(error) == hint


async def test_a_server_without_the_model_files_is_not_usable_and_says_what_goes_where(
    emulators: dict[str, Emulator], monkeypatch: pytest.MonkeyPatch
):
    """A fresh ComfyUI (as 0.18 answers /object_info, its folders empty) is not counted usable, so
    it is never the default; each file of the workflow is named with its folder."""
    from zimage_ui.providers import default_provider_id
    from zimage_ui.providers.hosted.comfyui_files import forget_probes

    for provider_id, emulator in emulators.items():  # ComfyUI is the one engine configured
        if provider_id != "comfyui":
            for name in emulator.env():
                monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ZIMAGE_SERVER_KEYS", "all")  # the engine is shared with visitors
    comfyui = emulators["comfyui"]
    assert ComfyUIProvider().availability(KeyRing()).usable
    assert default_provider_id() == "comfyui"
    comfyui.no_model_files = True
    forget_probes()
    status = ComfyUIProvider().availability(KeyRing())
    assert not status.usable
    for file, folder in [
        ("z_image_turbo_bf16.safetensors", "models/diffusion_models/"),
        ("qwen_3_4b.safetensors", "models/text_encoders/"),
        ("ae.safetensors", "models/vae/"),
    ]:
        assert f"{file} (in {folder})" in status.reason
    assert default_provider_id() == "diffusers-tiny"
    with pytest.raises(ProviderError, match=r"qwen_3_4b.safetensors \(in models/text_encoders/\)"):
        await run(provider())
    assert not comfyui.calls("POST", "/prompt")  # refused before anything was queued


def test_a_workflow_whose_save_node_is_refused_says_why_at_once():
    """ComfyUI queues a prompt when some of its outputs validate, listing the others' errors under
    node_errors with the outputs each blocks (`dependent_outputs`): when ours is among them, the
    run says why instead of waiting for images that never come."""
    from zimage_ui.providers.hosted.comfyui import output_refused

    error = {
        "type": "value_not_in_list",
        "message": "Value not in list",
        "details": "unet_name: 'z_image_turbo_fp8.safetensors' not in []",
        "extra_info": {"input_name": "unet_name", "received_value": "z_image_turbo_fp8.safetensors"},
    }
    queued = {
        "prompt_id": "p1",
        "number": 3,
        "node_errors": {"16": {"errors": [error], "dependent_outputs": ["9"], "class_type": "UNETLoader"}},
    }
    reason = output_refused(queued, "9")
    assert reason is not None and "node 16 (UNETLoader): Value not in list" in reason
    assert "put it in ComfyUI's models/diffusion_models/" in reason
    assert output_refused(queued, "30") is None  # another output failed: ours runs
    assert output_refused({"prompt_id": "p1", "node_errors": {}}, "9") is None


@pytest.mark.parametrize("path", ["stall", "trickle", "endless", "bomb.json", "stacked.png", "echo"])
def test_a_misbehaving_server_costs_the_check_its_deadline_and_nothing_more(
    hostile_http, path: str, monkeypatch: pytest.MonkeyPatch
):
    """The model-file check runs on the event loop's caller: a server that stalls, trickles, never
    ends, bombs or refuses holds it for PROBE_TIMEOUT_S at most, keeps no more than the cap, and is
    an unknown (the run reports what it meets), never a crash."""
    import time
    import tracemalloc

    from zimage_ui.providers.hosted import comfyui_files

    monkeypatch.setattr(comfyui_files, "PROBE_TIMEOUT_S", 0.5)
    comfyui_files.forget_probes()
    tracemalloc.start()
    started = time.monotonic()
    try:
        problem = comfyui_files.serving_problem(f"{hostile_http.url}/{path}", "k-123", TEMPLATE_GRAPH)
        waited = time.monotonic() - started
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
        comfyui_files.forget_probes()
    assert problem is None
    assert waited < 0.5 + 1.0, waited  # the deadline, and a margin for a loaded machine
    assert peak < comfyui_files.MAX_OBJECT_INFO_BYTES * 3, peak
