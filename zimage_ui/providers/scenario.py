"""Scenario: submit a custom-model job, poll `/jobs/{id}`, look up each asset, download its URL."""

from __future__ import annotations

import base64
from typing import Any

from PIL import Image

from zimage_ui.params import GenerationParams
from zimage_ui.providers.base import Capabilities, Cost, PreparedRequest, ProgressFn, SentValues
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
)

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
    sent = SentValues(params.width, params.height, steps, seed, negative_sent=negative)
    return body, sent, [*notes, *step_notes, *unsupported_notes(params, CAPABILITIES, LABEL)]


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
        job_id = job_id_of(await session.submit(prepared.url, prepared.body))
        session.job_started()
        job = await self.poll_job(session, f"{base}/jobs/{job_id}", job_state, progress)

        async def fetch(asset_id: str) -> Image.Image:
            asset = await session.get_json(f"{base}/assets/{asset_id}")
            return await session.download_image(asset_url(asset))

        images = await gather_all(fetch(asset) for asset in asset_ids(job))
        return JobDone(images=images, job_id=job_id, cost=job_cost(job))
