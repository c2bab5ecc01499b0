"""Our PNGs through readers nobody here wrote: sd-parsers and SD Prompt Reader (both from PyPI).

Every provider's PNG (the local tiny pipeline, and each hosted API through its emulator) must
give back the prompt, the negative prompt where one was really used, the seed, the steps and
the size; every one has a numeric `Steps` (Civitai drops an image's metadata otherwise) and a
`Sampler` (sd-parsers' A1111 parser needs one), and Latin-1 text sits in tEXt (exifr reads
nothing else).
"""

from __future__ import annotations

import io
import struct
from pathlib import Path

import pytest
from sd_parsers import ParserManager
from sd_parsers.data import Generators
from sd_prompt_reader.format import BaseFormat
from sd_prompt_reader.image_data_reader import ImageDataReader

from tests.emulators import Emulator
from zimage_ui.infotext import parse_infotext
from zimage_ui.metadata import A1111_SAMPLERS, A1111_SCHEDULES, PNG_SIGNATURE, read_text_chunks
from zimage_ui.params import GenerationParams
from zimage_ui.providers.base import Provider
from zimage_ui.runner import Outcome, generate_one

LATIN_1 = "a lighthouse at dusk, café crème sky: dramatic"
NOT_LATIN_1 = "一座灯塔, dusk — dramatic"
NEGATIVE = "blurry, low contrast"


def chunk_kinds(png: bytes) -> dict[str, str]:
    kinds, position = {}, len(PNG_SIGNATURE)
    while position + 8 <= len(png):
        length, kind = struct.unpack(">I4s", png[position : position + 8])
        if kind in (b"tEXt", b"zTXt", b"iTXt"):
            kinds[png[position + 8 : position + 8 + length].partition(b"\0")[0].decode()] = kind.decode()
        position += 12 + length
    return kinds


def expected(outcome: Outcome) -> dict[str, object]:
    """What every reader must recover: the values the provider really got."""
    assert outcome.ok and outcome.prepared, outcome.error
    params, sent = outcome.prepared.params, outcome.prepared.sent
    return {
        "prompt": params.prompt,
        "negative": params.negative_prompt if sent.negative_sent else "",
        "seed": sent.seed,
        "steps": sent.steps_written,
        "size": (sent.width, sent.height),
        # what the engine ran: Z-Image's Euler on even steps, or a ComfyUI graph's own, in A1111's words
        "sampler": A1111_SAMPLERS.get(sent.sampler, sent.sampler) or "Euler",
        "schedule": A1111_SCHEDULES.get(sent.schedule, sent.schedule) or "Simple",
    }


def check_readers(png: bytes, want: dict[str, object]) -> None:
    text = read_text_chunks(png)["parameters"]
    _, _, values = parse_infotext(text)
    assert values["Steps"].isdigit() and values["Sampler"] == want["sampler"]
    assert chunk_kinds(png)["parameters"] == ("tEXt" if _latin_1(text) else "iTXt")
    width, height = want["size"]  # type: ignore[misc]

    info = ParserManager().parse(io.BytesIO(png))
    assert info is not None and info.generator is Generators.AUTOMATIC1111
    [sampler] = info.samplers
    assert sampler.name == want["sampler"] and sampler.parameters["scheduler"] == want["schedule"]
    assert [p.value for p in info.prompts] == [want["prompt"]]
    assert [p.value for p in info.negative_prompts] == ([want["negative"]] if want["negative"] else [])
    assert (sampler.parameters["seed"], sampler.parameters["steps"]) == (
        str(want["seed"]),
        str(want["steps"]),
    )
    assert info.metadata["Size"] == f"{width}x{height}"
    assert sampler.model is not None and sampler.model.name == "Z-Image-Turbo"

    reader = ImageDataReader(io.BytesIO(png))
    assert reader.status is BaseFormat.Status.READ_SUCCESS and reader.tool == "A1111 webUI"
    assert (reader.positive, reader.negative) == (want["prompt"], want["negative"])
    assert reader.parameter["seed"] == str(want["seed"]) and reader.parameter["steps"] == str(want["steps"])
    assert reader.parameter["sampler"] == want["sampler"] and reader.parameter["model"] == "Z-Image-Turbo"
    assert (reader.width, reader.height) == (str(width), str(height))


def _latin_1(text: str) -> bool:
    try:
        text.encode("latin-1")
    except UnicodeEncodeError:
        return False
    return True


NEGATIVE_NEEDS_GUIDANCE = {"comfyui", "openai-compatible"}


@pytest.mark.parametrize("prompt", [LATIN_1, NOT_LATIN_1], ids=["latin-1", "unicode"])
async def test_every_hosted_providers_png_reads_in_sd_parsers_and_sd_prompt_reader(
    hosted: tuple[Provider, Emulator], prompt: str
) -> None:
    provider, _ = hosted
    params = GenerationParams(prompt=prompt, negative_prompt=NEGATIVE, seed=1234, width=1024, height=768)
    outcome = await generate_one(provider.id, params)
    want = expected(outcome)
    # ComfyUI (cfg 1) and the OpenAI-style engines skip the negative at guidance 0, as the local
    # pipeline does: it is not written
    used = provider.capabilities.negative_prompt and provider.id not in NEGATIVE_NEEDS_GUIDANCE
    assert want["negative"] == (NEGATIVE if used else "")
    assert want["steps"] == 8  # sent as asked, or the provider's own (EvoLink, RunPod): Turbo's 8
    # the shipped ComfyUI template runs res_multistep (A1111 has no such sampler) on "simple"
    assert (want["sampler"], want["schedule"]) == (
        ("res_multistep", "Simple") if provider.id == "comfyui" else ("Euler", "Simple")
    )
    check_readers(outcome.pngs[0], want)
    assert chunk_kinds(outcome.pngs[0])["parameters"] == ("tEXt" if prompt == LATIN_1 else "iTXt")


@pytest.mark.parametrize(
    ("guidance", "seed", "negative_used"),
    [(0.0, 3_000_000_000, False), (1.5, 7, True)],
    ids=["turbo-guidance-0-seed-above-31-bits", "guidance-1.5"],
)
async def test_the_local_pipelines_png_reads_in_both(guidance: float, seed: int, negative_used: bool) -> None:
    params = GenerationParams(
        prompt=LATIN_1,
        negative_prompt=NEGATIVE,
        guidance_scale=guidance,
        seed=seed,
        width=256,
        height=320,
        num_inference_steps=3,
    )
    outcome = await generate_one("diffusers-tiny", params)
    want = expected(outcome)
    assert want["negative"] == (NEGATIVE if negative_used else "")  # guidance 0: the pipeline ignores it
    assert (want["seed"], want["steps"], want["size"]) == (seed, 3, (256, 320))
    check_readers(outcome.pngs[0], want)


async def test_the_diffusers_providers_png_reads_in_both(tiny_checkpoint: Path) -> None:
    """The seventh provider: `diffusers`, loading a checkpoint folder (the tiny model saved)."""
    params = GenerationParams(prompt=LATIN_1, seed=11, width=256, height=256, num_inference_steps=2)
    outcome = await generate_one("diffusers", params)
    assert outcome.ok, outcome.error
    want = expected(outcome)
    assert (want["seed"], want["steps"], want["size"], want["negative"]) == (11, 2, (256, 256), "")
    check_readers(outcome.pngs[0], want)


def _cfg_read(png: bytes) -> tuple[str | None, str | None, str | None]:
    """The CFG scale as our parser, sd-parsers and SD Prompt Reader each read it (None: none)."""
    _, _, values = parse_infotext(read_text_chunks(png)["parameters"])
    info = ParserManager().parse(io.BytesIO(png))
    assert info is not None
    [sampler] = info.samplers
    reader = ImageDataReader(io.BytesIO(png))
    return values.get("CFG scale"), sampler.parameters.get("cfg_scale"), reader.parameter.get("cfg")


async def test_cfg_scale_is_written_only_where_guidance_reached_the_model(hosted: tuple[Provider, Emulator]):
    """Guidance 2.5 asked everywhere: a provider with no guidance field (Scenario, AIML API, ...)
    got none, so its PNG states none; one that sent it states A1111's CFG scale, 2.5 + 1."""
    provider, _ = hosted
    params = GenerationParams(prompt="a fox", guidance_scale=2.5, seed=5, width=1024, height=1024)
    outcome = await generate_one(provider.id, params)
    assert outcome.ok and outcome.prepared, outcome.error
    sent = outcome.prepared.sent
    if provider.capabilities.guidance:
        assert sent.guidance == 2.5
        assert _cfg_read(outcome.pngs[0]) == ("3.5", "3.5", "3.5")
    else:
        assert sent.guidance is None
        assert _cfg_read(outcome.pngs[0]) == (None, None, None)
        assert any("guidance 2.5 not sent" in note for note in outcome.prepared.notes)


async def test_the_local_pipelines_cfg_scale_round_trips_in_a1111s_convention() -> None:
    """Written as guidance + 1 (A1111 and ComfyUI: cfg 1 is no guidance), read back as guidance."""
    from tests.test_infotext import png_with
    from zimage_ui.infotext import read_png_settings

    params = GenerationParams(
        prompt="a fox", guidance_scale=4.0, seed=3, width=256, height=256, num_inference_steps=2
    )
    outcome = await generate_one("diffusers-tiny", params)
    assert outcome.ok, outcome.error
    assert _cfg_read(outcome.pngs[0]) == ("5.0", "5.0", "5.0")
    text = read_text_chunks(outcome.pngs[0])["parameters"]  # the A1111 text alone, no zimage record
    assert read_png_settings(png_with({"parameters": text})).params["guidance_scale"] == 4.0
