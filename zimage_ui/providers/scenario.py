"""Scenario: submit a custom-model job, poll `/jobs/{id}`, look up each asset, download its URL."""

from __future__ import annotations

import base64
import io
from typing import Any

from PIL import Image

from zimage_ui.errors import InvalidParams
from zimage_ui.image_inputs import MAX_INPUT_BYTES, decode_input, fetch_remote, read_input_file
from zimage_ui.params import GenerationParams, ImageInputs
from zimage_ui.providers.base import (
    Capabilities,
    Cost,
    PreparedRequest,
    Progress,
    ProgressFn,
    SentValues,
    is_url,
    refuse_inputs,
)
from zimage_ui.providers.hosted_base import (
    HostedProvider,
    JobDone,
    JobState,
    gather_all,
    images_sent,
    seed_at_least_one,
    steps_sent,
    unsupported_notes,
)
from zimage_ui.providers.http import HttpSession, Unexpected, dig, dig_text

LABEL = "Scenario"
CAPABILITIES = Capabilities(
    size_rule="width and height as given",
    steps_range=(1, 50),
    negative_prompt=True,
    max_images=4,
    cost_reporting=True,
    # seed 000: `image` (assetId) "Source image for img2img transformation" + `strength` (0.75).
    # The image is uploaded as an asset first (`POST /v1/assets`, PROVIDERS.md), at run time.
    # No mask field; its `loras` are Scenario model ids, not files or URLs: refused.
    image_input=True,
)
SCENARIO_DEFAULT_STRENGTH = 0.75  # seed 000's default, used only when no strength is sent
MAX_ASSET_BYTES = 6 * 2**20  # PROVIDERS.md: `/v1/assets` takes images under 6 MB (larger: multipart)
IMAGE_PENDING = "(the asset id of the input image, uploaded when the run starts)"

# The SDK's job status enum; some clients check "failed", so both failure spellings are accepted.
PHASES = {
    "pending": "running",
    "warming-up": "running",
    "queued": "running",
    "in-progress": "running",
    "finalizing": "running",
    "success": "done",
    "failure": "failed",
    "failed": "failed",
    "canceled": "cancelled",
    "cancelled": "cancelled",
}


def scenario_body(params: GenerationParams) -> tuple[dict[str, Any], SentValues, list[str]]:
    """Params (seed concrete) -> body. `numOutputs` is always sent: the API's default is 4."""
    assert params.seed is not None
    seed, notes = seed_at_least_one(params.seed, LABEL)
    steps, step_notes = steps_sent(params, CAPABILITIES, LABEL)
    body: dict[str, Any] = {
        "prompt": params.prompt,
        "numOutputs": images_sent(params, CAPABILITIES),
        "numInferenceSteps": steps,
        "width": params.width,
        "height": params.height,
        "seed": seed,
    }
    negative = bool(params.negative_prompt.strip())
    if negative:
        body["negativePrompt"] = params.negative_prompt
    refuse_inputs(params, CAPABILITIES, "scenario")  # a mask or a LoRA: never dropped
    notes = [*notes, *step_notes, *unsupported_notes(params, CAPABILITIES, LABEL)]
    strength = params.strength
    if params.image is not None and strength is not None:
        body |= {"image": IMAGE_PENDING, "strength": strength}
        notes.append(
            f"input image uploaded to {LABEL} as an asset first (POST /v1/assets), its asset id sent "
            f"as image; strength {strength:g} (sent explicitly: {LABEL}'s own default is "
            f"{SCENARIO_DEFAULT_STRENGTH:g})"
        )
    sent = SentValues(params.width, params.height, steps, seed, negative_sent=negative, strength=strength)
    return body, sent, notes


async def input_image_bytes(ref: str) -> bytes:
    """The input image's bytes, read size-capped as the local runs read them (InvalidParams)."""
    if is_url(ref):
        data = (await fetch_remote(ImageInputs(image=ref)))[ref]
    else:
        data = read_input_file("image", ref, MAX_INPUT_BYTES)
    decode_input("image", data)  # a readable image of a sane size, checked before any upload
    if len(data) > MAX_ASSET_BYTES:
        raise InvalidParams(
            {
                "image": f"{len(data) / 2**20:.1f} MB is over the {MAX_ASSET_BYTES // 2**20} MB {LABEL} "
                "takes in one upload: send a smaller or more compressed image"
            }
        )
    return data


def asset_upload_body(data: bytes, ref: str) -> dict[str, Any]:
    """`POST /v1/assets`: `{"name", "image": "data:<mime>;base64,..."}` (PROVIDERS.md)."""
    with Image.open(io.BytesIO(data)) as probe:
        mime = Image.MIME.get(probe.format or "", "image/png")
    name = ref.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1] or "input"
    return {"name": name[:100], "image": f"data:{mime};base64,{base64.b64encode(data).decode()}"}


def job_id_of(created: Any) -> str:
    return str(dig(created, "job", "jobId"))


def job_state(data: Any) -> JobState:
    job = dig(data, "job")
    status = dig_text(job, "status")
    progress = job.get("progress")
    fraction = float(progress) if isinstance(progress, (int, float)) else None
    metadata = job.get("metadata") or {}
    reason = " ".join(str(metadata[k]) for k in ("error", "hint") if metadata.get(k))
    return JobState(PHASES.get(status, "running"), status, fraction, reason)


def asset_ids(data: Any) -> list[str]:
    ids = dig(data, "job", "metadata", "assetIds")
    if not isinstance(ids, list) or not ids:
        raise Unexpected("no job.metadata.assetIds in the finished job")
    return [str(asset) for asset in ids]


def job_cost(data: Any) -> Cost | None:
    billing = (data.get("job") or {}).get("billing") or {}
    value = billing.get("cuCost")
    return Cost(float(value), "compute units") if isinstance(value, (int, float)) else None


def asset_url(data: Any) -> str:
    return str(dig(data, "asset", "url"))


class ScenarioProvider(HostedProvider):
    id = "scenario"
    label = "Scenario (Z-Image-Turbo custom model)"
    capabilities = CAPABILITIES
    key_names = ("SCENARIO_SDK_API_KEY", "SCENARIO_SDK_API_SECRET")
    default_base_url = "https://api.cloud.scenario.com/v1"
    submit_path = "/generate/custom/model_z-image-turbo"
    error_paths = ("message", "error.message", "error", "detail")
    auth_scheme = "Basic"

    def auth_headers(self, values: list[str]) -> dict[str, str]:
        token = base64.b64encode(f"{values[0]}:{values[1]}".encode()).decode()
        return {"Authorization": f"Basic {token}"}

    map_params = staticmethod(scenario_body)

    async def execute(self, session: HttpSession, prepared: PreparedRequest, progress: ProgressFn) -> JobDone:
        base = self.base_of(prepared)
        body = prepared.body
        notes: list[str] = []
        if body.get("image") == IMAGE_PENDING and prepared.params.image is not None:
            data = await input_image_bytes(prepared.params.image)
            progress(Progress(0.0, "uploading the input image"))
            uploaded = await session.submit(f"{base}/assets", asset_upload_body(data, prepared.params.image))
            asset_id = dig(uploaded, "asset", "id")
            if not isinstance(asset_id, str) or not asset_id:
                raise Unexpected("no asset.id in the upload's answer")
            body = {**body, "image": asset_id}
            notes.append(f"input image uploaded as {LABEL} asset {asset_id}, sent as image")
        job_id = job_id_of(await session.submit(prepared.url, body))
        session.job_started()
        job = await self.poll_job(session, f"{base}/jobs/{job_id}", job_state, progress)

        async def fetch(asset_id: str) -> Image.Image:
            asset = await session.get_json(f"{base}/assets/{asset_id}")
            return await session.download_image(asset_url(asset))

        images = await gather_all(fetch(asset) for asset in asset_ids(job))
        return JobDone(images=images, job_id=job_id, cost=job_cost(job), notes=notes)
