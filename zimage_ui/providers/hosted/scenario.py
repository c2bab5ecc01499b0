"""Scenario: submit a custom-model job, poll `/jobs/{id}`, look up each asset, download its URL."""

from __future__ import annotations

import base64
import io
import math
from typing import Any

from PIL import Image

from zimage_ui.errors import InvalidParams, JobFailed
from zimage_ui.image_inputs import MAX_INPUT_BYTES, decode_input, fetch_remote, read_input_file
from zimage_ui.net.answers import Unexpected, dig, dig_text
from zimage_ui.net.session import HttpSession
from zimage_ui.params import CONTROL_KINDS, GenerationParams, ImageInputs
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
from zimage_ui.providers.hosted.base import (
    HostedProvider,
    JobDone,
    JobState,
    gather_all,
    images_sent,
    named_step,
    seed_at_least_one,
    steps_sent,
    unsupported_notes,
)

LABEL = "Scenario"
CAPABILITIES = Capabilities(
    size_rule="width and height as given",
    steps_range=(1, 50),
    negative_prompt=True,
    max_images=4,
    cost_reporting=True,
    # seed 000: `image` (assetId) "Source image for img2img transformation" + `strength` (0.75).
    # The image is uploaded as an asset first (`POST /v1/assets`, PROVIDERS.md), at run time.
    # No mask field.
    image_input=True,
    # seed 000: `loras` "List of one or more LoRA model IDs" (model[]) + `lorasScale` "Scales for
    # the LoRA weights" (number[]): Scenario's own model ids only, one scale each, in order.
    lora=True,
    lora_sources=("id",),
    # seed 000: `controlImage` (assetId[]) "Control images to use as input (edge, depth, or pose)"
    # + `controlnetConditioningScale` (number, 0.7). There is no kind field: the image is sent as
    # given, so every kind goes (canny, hed and mlsd maps are all edge images).
    control_input=True,
    control_kinds=CONTROL_KINDS,
)
SCENARIO_DEFAULT_STRENGTH = 0.75  # seed 000's default, used only when no strength is sent
SCENARIO_DEFAULT_CONTROL_SCALE = 0.7  # seed 000's default, used only when no scale is sent
MAX_CONTROL_SCALE = 1.0  # PROVIDERS.md: controlnetConditioningScale 0..1
LORA_SCALES = (0.0, 2.0)  # PROVIDERS.md: lorasScale 0..2
EDGE_KINDS = ("canny", "hed", "mlsd")
MAX_ASSET_BYTES = 6 * 2**20  # PROVIDERS.md: `/v1/assets` takes images under 6 MB (larger: multipart)
# `/v1/uploads` parts: the SDK leaves the part size to the client; 5 MB is S3's smallest part but
# the last, so a 50 MB image goes in at most 10 parts.
UPLOAD_PART_BYTES = 5 * 2**20
UPLOAD_DONE = ("imported", "complete")  # the SDK's upload statuses that come with the asset's id
IMAGE_PENDING = "(the asset id of the input image, uploaded when the run starts)"
CONTROL_PENDING = "(the asset id of the control image, uploaded when the run starts)"

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
    control = control_fields(params, notes)
    body |= control
    loras = lora_fields(params, notes)
    body |= loras
    sent = SentValues(
        params.width,
        params.height,
        steps,
        seed,
        negative_sent=negative,
        strength=strength,
        loras=tuple((lora.ref, lora.scale, "") for lora in params.loras),
        control=(params.control_kind or "", control["controlnetConditioningScale"]) if control else None,
    )
    return body, sent, notes


def control_fields(params: GenerationParams, notes: list[str]) -> dict[str, Any]:
    """`controlImage` (a list of asset ids: one, uploaded at run time) + the scale, 0..1 (refused
    above: a different scale makes a different image, so it is never clamped)."""
    scale, kind = params.control_scale, params.control_kind
    if params.control_image is None or scale is None or kind is None:
        return {}
    if scale > MAX_CONTROL_SCALE:
        raise InvalidParams(
            {
                "control_scale": f"{scale:g} is above {MAX_CONTROL_SCALE:g}: {LABEL}'s "
                f"controlnetConditioningScale takes 0..{MAX_CONTROL_SCALE:g}; give a scale in that "
                "range, or use the local model for scales up to 2"
            }
        )
    notes.append(
        f"control image uploaded to {LABEL} as an asset first, its asset id sent as controlImage (a "
        f"list of one); scale {scale:g} sent as controlnetConditioningScale (explicitly: {LABEL}'s own "
        f"default is {SCENARIO_DEFAULT_CONTROL_SCALE:g})"
    )
    edge = f" (a {kind} map is an edge image)" if kind in EDGE_KINDS else ""
    notes.append(
        f"control kind {kind} not sent: {LABEL} has no kind field, it takes edge, depth or pose "
        f"images as given{edge}"
    )
    return {"controlImage": [CONTROL_PENDING], "controlnetConditioningScale": scale}


def lora_fields(params: GenerationParams, notes: list[str]) -> dict[str, Any]:
    """`loras` (Scenario LoRA model ids) + `lorasScale` (one scale per id, same order, 0..2)."""
    if not params.loras:
        return {}
    low, high = LORA_SCALES
    for lora in params.loras:
        if not lora.ref.startswith("model_") or "/" in lora.ref:
            raise InvalidParams(
                {
                    "loras": f"{lora.ref[:80]!r} is not a {LABEL} model id: {LABEL} takes its own LoRA "
                    "model ids (model_...), not a Hugging Face repo; use the local model for hub LoRAs"
                }
            )
        if not low <= lora.scale <= high:
            raise InvalidParams(
                {
                    "loras": f"LoRA scale {lora.scale:g} for {lora.ref[:80]} is outside {low:g}..{high:g}, "
                    f"the range of {LABEL}'s lorasScale: give a scale in that range"
                }
            )
    ids = [lora.ref for lora in params.loras]
    scales = [lora.scale for lora in params.loras]
    notes.append(
        f"LoRAs sent as {LABEL} model ids in loras, their scales in the same order in lorasScale: "
        + ", ".join(f"{ref} {scale:g}" for ref, scale in zip(ids, scales, strict=True))
    )
    return {"loras": ids, "lorasScale": scales}


async def input_image_bytes(ref: str, field: str = "image") -> bytes:
    """An input or control image's bytes, read size-capped as the local runs read them
    (InvalidParams naming `field`). Any size up to the input cap: 6 MB and more go multipart."""
    try:
        if is_url(ref):
            data = (await fetch_remote(ImageInputs(image=ref)))[ref]
        else:
            data = read_input_file(field, ref, MAX_INPUT_BYTES)
        decode_input(field, data)  # a readable image of a sane size, checked before any upload
    except InvalidParams as exc:
        raise InvalidParams({field: next(iter(exc.fields.values()), str(exc))}) from None
    return data


def image_mime(data: bytes) -> str:
    with Image.open(io.BytesIO(data)) as probe:
        return Image.MIME.get(probe.format or "", "image/png")


def file_name(ref: str) -> str:
    return (ref.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1] or "input")[:100]


def asset_upload_body(data: bytes, ref: str) -> dict[str, Any]:
    """`POST /v1/assets`: `{"name", "image": "data:<mime>;base64,..."}` (PROVIDERS.md)."""
    encoded = base64.b64encode(data).decode()
    return {"name": file_name(ref), "image": f"data:{image_mime(data)};base64,{encoded}"}


def multipart_upload_body(name: str, mime: str, size: int) -> dict[str, Any]:
    """`POST /v1/uploads` for a multipart upload: the SDK's `uploads.create` says fileName,
    contentType, fileSize, kind and parts are "Required for multipart upload"."""
    parts = max(1, math.ceil(size / UPLOAD_PART_BYTES))
    return {"fileName": name, "contentType": mime, "fileSize": size, "kind": "image", "parts": parts}


def upload_parts(created: Any, count: int) -> tuple[str, list[str]]:
    """The upload's id and its part URLs in part order (`upload.parts[{number, url, expires}]`)."""
    upload_id = dig_text(created, "upload", "id")
    parts = dig(created, "upload", "parts")
    if not isinstance(parts, list):
        raise Unexpected("upload.parts is not a list")
    by_number = {dig(part, "number"): dig_text(part, "url") for part in parts}
    if sorted(by_number) != list(range(1, count + 1)):
        raise Unexpected(f"upload.parts has parts {sorted(by_number)} for {count} parts")
    return upload_id, [by_number[number] for number in range(1, count + 1)]


def imported_asset(answer: Any) -> str | None:
    """The asset id once the upload is imported (`upload.entityId`); None while it is validated."""
    upload = dig(answer, "upload")
    status = dig_text(upload, "status")
    if status == "failed":
        reason = upload.get("errorMessage")
        said = f" ({reason})" if isinstance(reason, str) and reason else ""
        raise JobFailed("scenario", f"{LABEL} could not import the image{said}: try another image")
    entity = upload.get("entityId")
    if status in UPLOAD_DONE:
        if not isinstance(entity, str) or not entity:
            raise Unexpected(f"no upload.entityId in the {status} upload")
        return entity
    return None


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
    """The job's cost in compute units where reported; any other shape: none (cost is optional)."""
    job = data.get("job") if isinstance(data, dict) else None
    billing = job.get("billing") if isinstance(job, dict) else None
    value = billing.get("cuCost") if isinstance(billing, dict) else None
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
        body = dict(prepared.body)
        params = prepared.params
        notes: list[str] = []
        if body.get("image") == IMAGE_PENDING and params.image is not None:
            asset_id = await self.upload_image(session, base, params.image, "input image", "image", progress)
            body["image"] = asset_id
            notes.append(f"input image uploaded as {LABEL} asset {asset_id}, sent as image")
        if body.get("controlImage") == [CONTROL_PENDING] and params.control_image is not None:
            asset_id = await self.upload_image(
                session, base, params.control_image, "control image", "control_image", progress
            )
            body["controlImage"] = [asset_id]
            notes.append(f"control image uploaded as {LABEL} asset {asset_id}, sent as controlImage")
        job_id = job_id_of(await session.submit(prepared.url, body))
        session.job_started()
        job = await self.poll_job(session, f"{base}/jobs/{job_id}", job_state, progress)

        async def fetch(asset_id: str) -> Image.Image:
            asset = await session.get_json(f"{base}/assets/{asset_id}")
            return await session.download_image(asset_url(asset))

        images = await gather_all(fetch(asset) for asset in asset_ids(job))
        return JobDone(images=images, job_id=job_id, cost=job_cost(job), notes=notes)

    async def upload_image(
        self, session: HttpSession, base: str, ref: str, what: str, field: str, progress: ProgressFn
    ) -> str:
        """Upload an image as a Scenario asset; its id. Under 6 MB as one JSON data URL
        (`POST /v1/assets`), larger through `/v1/uploads` in parts. Errors name the step."""
        data = await input_image_bytes(ref, field)
        progress(Progress(0.0, f"uploading the {what}"))
        step = f"uploading the {what} to {LABEL}"
        if len(data) < MAX_ASSET_BYTES:
            return await named_step(self.id, step, self._asset(session, base, data, ref))
        return await named_step(self.id, step, self._multipart(session, base, data, ref))

    async def _asset(self, session: HttpSession, base: str, data: bytes, ref: str) -> str:
        uploaded = await session.submit(f"{base}/assets", asset_upload_body(data, ref))
        asset_id = dig(uploaded, "asset", "id")
        if not isinstance(asset_id, str) or not asset_id:
            raise Unexpected("no asset.id in the upload's answer")
        return asset_id

    async def _multipart(self, session: HttpSession, base: str, data: bytes, ref: str) -> str:
        """The SDK's `uploads` resource: `create` (POST /uploads: part URLs), a PUT of each part to
        its URL (no key: the URL is signed), `trigger_action` (POST /uploads/{id}/action
        {"action": "complete"}), then `retrieve` (GET /uploads/{id}) until the asset is imported."""
        request = multipart_upload_body(file_name(ref), image_mime(data), len(data))
        upload_id, urls = upload_parts(await session.submit(f"{base}/uploads", request), request["parts"])
        for index, url in enumerate(urls):
            chunk = data[index * UPLOAD_PART_BYTES : (index + 1) * UPLOAD_PART_BYTES]
            await session.put_upload(url, chunk, size=len(chunk), what=f"image part {index + 1}")
        done = await session.submit(f"{base}/uploads/{upload_id}/action", {"action": "complete"})

        async def check() -> str | None:
            return imported_asset(await session.get_json(f"{base}/uploads/{upload_id}"))

        asset_id = imported_asset(done)
        if asset_id is None:
            asset_id = await session.poll(check)
        return str(asset_id)
