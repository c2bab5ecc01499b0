"""RunPod public endpoint: `POST /runsync`; when it answers before the job is done, poll `/status/{id}`."""

from __future__ import annotations

from typing import Any

from zimage_ui.net.answers import Unexpected, dig, dig_text
from zimage_ui.net.session import HttpSession
from zimage_ui.params import GenerationParams
from zimage_ui.providers.base import (
    Capabilities,
    Cost,
    PreparedRequest,
    ProgressFn,
    SentValues,
    refuse_inputs,
)
from zimage_ui.providers.hosted.base import (
    HostedProvider,
    JobDone,
    JobState,
    nearest_listed,
    size_note,
    steps_sent,
    unsupported_notes,
)

LABEL = "RunPod"
SIZES = (
    (512, 512),
    (768, 768),
    (1024, 1024),
    (1280, 1280),
    (1024, 768),
    (768, 1024),
    (1280, 720),
    (720, 1280),
)
SIZE_RULE = "RunPod accepts only " + ", ".join(f"{w}*{h}" for w, h in SIZES)
RUNSYNC_READ_TIMEOUT_S = 100.0  # /runsync holds the request for up to 90 s
CAPABILITIES = Capabilities(
    size_rule="one of " + ", ".join(f"{w}x{h}" for w, h in SIZES),
    steps_range=None,
    max_images=1,
    cost_reporting=True,
    # seed 004: `input.image` "URL of an input image for image-to-image generation" and
    # `input.strength` "Range: 0.0-1.0" (default 0.8). A URL only: no base64 or data: URI is
    # documented, so a local file is refused (RunPod must fetch the image itself). No mask, no LoRA.
    image_input=True,
    image_sources=("url",),
)
RUNPOD_DEFAULT_STRENGTH = 0.8  # seed 004's default, used only when no strength is sent
PHASES = {
    "IN_QUEUE": "running",
    "IN_PROGRESS": "running",
    "COMPLETED": "done",
    "FAILED": "failed",
    "CANCELLED": "cancelled",
    "TIMED_OUT": "timed_out",
}
MESSAGES = {"IN_QUEUE": "in queue", "IN_PROGRESS": "running"}


def runpod_body(params: GenerationParams) -> tuple[dict[str, Any], SentValues, list[str]]:
    """Params (seed concrete) -> `{"input": {...}}`: size "W*H" from the fixed list; no steps field."""
    assert params.seed is not None
    refuse_inputs(params, CAPABILITIES, "runpod")  # a local file, a mask or a LoRA: never dropped
    width, height = nearest_listed(params.width, params.height, SIZES)
    steps, step_notes = steps_sent(params, CAPABILITIES, LABEL)
    body = {
        "input": {
            "prompt": params.prompt,
            "size": f"{width}*{height}",
            "seed": params.seed,
            "output_format": params.output_format,
            "enable_safety_checker": params.options.safety_checker,
        }
    }
    notes = [
        *size_note((params.width, params.height), (width, height), SIZE_RULE),
        *step_notes,
        *unsupported_notes(params, CAPABILITIES, LABEL),
    ]
    strength = params.strength
    if params.image is not None and strength is not None:  # prepare refused a local file already
        body["input"] |= {"image": params.image, "strength": strength}
        notes.append(
            f"input image sent as its URL for {LABEL} to fetch, strength {strength:g} "
            f"(sent explicitly: {LABEL}'s own default is {RUNPOD_DEFAULT_STRENGTH:g})"
        )
    sent = SentValues(width=width, height=height, steps=steps, seed=params.seed, strength=strength)
    return body, sent, notes


def job_state(data: Any) -> JobState:
    status = dig_text(data, "status")
    error = data.get("error")
    reason = error if isinstance(error, str) else api_error(error)
    return JobState(PHASES.get(status, "running"), MESSAGES.get(status, status.lower()), None, reason)


def api_error(error: Any) -> str:
    return str(error.get("message") or "") if isinstance(error, dict) else ""


def image_url(data: Any) -> str:
    url = dig(data, "output", "image_url")
    if not isinstance(url, str) or not url:
        raise Unexpected("no output.image_url in the finished job")
    return url


def job_cost(data: Any) -> Cost | None:
    """The job's cost where the worker reports one; any other shape: none (cost is optional)."""
    output = data.get("output") if isinstance(data, dict) else None
    value = output.get("cost") if isinstance(output, dict) else None
    return Cost(float(value), "USD") if isinstance(value, (int, float)) else None


def timing_s(data: Any, name: str) -> float | None:
    value = data.get(name) if isinstance(data, dict) else None
    return value / 1000 if isinstance(value, (int, float)) else None


class RunPodProvider(HostedProvider):
    id = "runpod"
    label = "RunPod public endpoint (z-image-turbo)"
    capabilities = CAPABILITIES
    key_names = ("RUNPOD_API_KEY",)
    default_base_url = "https://api.runpod.ai/v2/z-image-turbo"
    submit_path = "/runsync"
    error_paths = ("error", "message", "error.message", "detail")

    map_params = staticmethod(runpod_body)

    async def execute(self, session: HttpSession, prepared: PreparedRequest, progress: ProgressFn) -> JobDone:
        base = self.base_of(prepared)
        job = await session.submit(prepared.url, prepared.body, read_timeout_s=RUNSYNC_READ_TIMEOUT_S)
        job_id = str(dig(job, "id"))
        session.job_started(f"{base}/cancel/{job_id}")
        state = job_state(job)
        self.raise_if_ended(state)
        if state.phase != "done":  # /runsync ran out of time: the job goes on, poll it
            job = await self.poll_job(session, f"{base}/status/{job_id}", job_state, progress)
        image = await session.download_image(image_url(job))
        return JobDone(
            images=[image],
            job_id=job_id,
            cost=job_cost(job),
            queue_s=timing_s(job, "delayTime"),
            run_s=timing_s(job, "executionTime"),
        )
