"""EvoLink: `POST /images/generations` creates a task; poll `GET /tasks/{id}`; download `results[]`."""

from __future__ import annotations

from typing import Any

from zimage_ui.errors import InvalidParams
from zimage_ui.net.answers import Unexpected, dig, dig_text
from zimage_ui.net.session import HttpSession
from zimage_ui.params import GenerationParams
from zimage_ui.providers.base import Capabilities, PreparedRequest, ProgressFn, SentValues, refuse_inputs
from zimage_ui.providers.hosted.base import (
    HostedProvider,
    JobDone,
    JobState,
    fit_size,
    gather_all,
    percent_fraction,
    seed_at_least_one,
    size_note,
    steps_sent,
    unsupported_notes,
)

LABEL = "EvoLink"
MODEL = "z-image-turbo"
MAX_PROMPT_CHARS = 2000
SIZE_LOW, SIZE_HIGH, SIZE_MULTIPLE = 376, 1536, 16
CAPABILITIES = Capabilities(size_rule="WxH, sides 376..1536", steps_range=None, max_images=1)
PHASES = {"pending": "running", "processing": "running", "completed": "done", "failed": "failed"}


def evolink_body(params: GenerationParams) -> tuple[dict[str, Any], SentValues, list[str]]:
    """Params (seed concrete) -> body: `size` as "WxH"; no steps field (provider default)."""
    assert params.seed is not None
    refuse_inputs(params, CAPABILITIES, "evolink")  # an input image, a mask or a LoRA: never dropped
    if len(params.prompt) > MAX_PROMPT_CHARS:
        problem = f"EvoLink accepts at most {MAX_PROMPT_CHARS} characters; this one has {len(params.prompt)}"
        raise InvalidParams({"prompt": problem})
    width, height = fit_size(
        params.width, params.height, low=SIZE_LOW, high=SIZE_HIGH, multiple=SIZE_MULTIPLE
    )
    seed, seed_notes = seed_at_least_one(params.seed, LABEL)
    steps, step_notes = steps_sent(params, CAPABILITIES, LABEL)
    body = {
        "model": MODEL,
        "prompt": params.prompt,
        "size": f"{width}x{height}",
        "seed": seed,
        "nsfw_check": params.options.safety_checker,
    }
    notes = [
        *size_note((params.width, params.height), (width, height), "EvoLink accepts sides of 376..1536"),
        *seed_notes,
        *step_notes,
        *unsupported_notes(params, CAPABILITIES, LABEL),
    ]
    return body, SentValues(width=width, height=height, steps=steps, seed=seed), notes


def task_state(data: Any) -> JobState:
    status = dig_text(data, "status")
    error = data.get("error") if isinstance(data.get("error"), dict) else {}
    reason = ": ".join(str(error[k]) for k in ("code", "message") if error.get(k))
    return JobState(PHASES.get(status, "running"), status, percent_fraction(data.get("progress")), reason)


def result_urls(data: Any) -> list[str]:
    urls = dig(data, "results")
    if not isinstance(urls, list) or not urls or not all(isinstance(url, str) for url in urls):
        raise Unexpected("no results in the finished task")
    return urls


class EvoLinkProvider(HostedProvider):
    id = "evolink"
    label = "EvoLink (z-image-turbo)"
    capabilities = CAPABILITIES
    key_names = ("EVOLINK_API_KEY",)
    default_base_url = "https://api.evolink.ai/v1"
    submit_path = "/images/generations"
    error_paths = ("error.message", "message", "error")

    map_params = staticmethod(evolink_body)

    async def execute(self, session: HttpSession, prepared: PreparedRequest, progress: ProgressFn) -> JobDone:
        created = await session.submit(prepared.url, prepared.body)
        task_id = str(dig(created, "id"))
        session.job_started()  # the API documents no cancel call
        task = await self.poll_job(session, f"{self.base_of(prepared)}/tasks/{task_id}", task_state, progress)
        images = await gather_all(session.download_image(url) for url in result_urls(task))
        return JobDone(images=images, job_id=task_id)
