"""inference.sh: `POST /apps/run`, poll `GET /tasks/{id}`, download `output.image`; cancel by POST."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from zimage_ui.errors import InvalidParams
from zimage_ui.lora_downloads import MAX_LORA_BYTES
from zimage_ui.net.answers import Unexpected, api_message, dig, dig_text
from zimage_ui.net.session import HttpSession
from zimage_ui.params import GenerationParams
from zimage_ui.providers.base import (
    Capabilities,
    PreparedRequest,
    Progress,
    ProgressFn,
    SentValues,
    refuse_inputs,
)
from zimage_ui.providers.hosted.base import (
    HostedProvider,
    JobDone,
    JobState,
    Refused,
    gather_all,
    named_step,
    percent_fraction,
    size_note,
    snap_side,
    steps_sent,
    unsupported_notes,
)

LABEL = "inference.sh"
APP = "infsh/z-image-turbo"
SIZE_MULTIPLE = 8
CAPABILITIES = Capabilities(
    size_rule="multiples of 8",
    steps_range=(1, 50),
    shift=True,
    max_images=1,
    # seed 001's schema: "list of lora configs to apply. each config specifies adapter_name,
    # lora_url, and lora_multiplier". A URL goes as `lora_url`; a local file is uploaded first the
    # way the SDK's `upload_file` does (POST /files, then a PUT of the bytes to `upload_url`) and its
    # `uri` sent as `lora_file`. No input image field is documented: text-to-image only.
    lora=True,
    lora_sources=("file", "url"),
)
# The SDK's `upload_file`: `mimetypes.guess_type` knows no .safetensors, so this content type.
LORA_CONTENT_TYPE = "application/octet-stream"

# The current status table (renumbered 2026-01-10): 9 is UPLOADING, still running; 10 is COMPLETED.
STATUS_NAMES = {
    0: "unknown",
    1: "received",
    2: "queued",
    3: "dispatched",
    4: "preparing",
    5: "serving",
    6: "setting_up",
    7: "running",
    8: "cancelling",
    9: "uploading",
    10: "completed",
    11: "failed",
    12: "cancelled",
    13: "rejected",
}
PHASES = {"completed": "done", "failed": "failed", "cancelled": "cancelled", "rejected": "no_credit"}


def inferencesh_body(params: GenerationParams) -> tuple[dict[str, Any], SentValues, list[str]]:
    """Params (seed concrete) -> `{"app", "input"}`; width and height in multiples of 8."""
    assert params.seed is not None
    width = snap_side(params.width, SIZE_MULTIPLE, SIZE_MULTIPLE, params.width + SIZE_MULTIPLE)
    height = snap_side(params.height, SIZE_MULTIPLE, SIZE_MULTIPLE, params.height + SIZE_MULTIPLE)
    steps, notes = steps_sent(params, CAPABILITIES, LABEL)
    body: dict[str, Any] = {
        "app": APP,
        "input": {
            "prompt": params.prompt,
            "width": width,
            "height": height,
            "seed": params.seed,
            "steps": steps,
            "shift": params.shift,
        },
    }
    refuse_inputs(params, CAPABILITIES, "inferencesh")  # an image or a local LoRA: never dropped
    loras = lora_configs(params)
    if loras:
        body["input"]["loras"] = loras
    sent = SentValues(
        width=width,
        height=height,
        steps=steps,
        seed=params.seed,
        shift=params.shift,
        # no file hash: inference.sh fetches the file, this machine never sees its bytes
        loras=tuple((lora["adapter_name"], lora["lora_multiplier"], "") for lora in loras),
    )
    notes = [
        *size_note(
            (params.width, params.height), (width, height), "inference.sh rounds sides to multiples of 8"
        ),
        *notes,
        *unsupported_notes(params, CAPABILITIES, LABEL),
        *(
            f"LoRA {lora['adapter_name']} sent as its URL for {LABEL} to fetch, "
            f"multiplier {lora['lora_multiplier']:g}"
            if "lora_url" in lora
            else f"LoRA {lora['adapter_name']} uploaded to {LABEL} first (POST /files, then a PUT of its "
            f"bytes), its uri sent as lora_file, multiplier {lora['lora_multiplier']:g}"
            for lora in loras
        ),
    ]
    return body, sent, notes


def file_pending(ref: str) -> str:
    """What the display shows as `lora_file` until the run has uploaded the file."""
    return f"(the uri of {Path(ref).name}, uploaded when the run starts)"


def lora_configs(params: GenerationParams) -> list[dict[str, Any]]:
    """`loras`: `[{adapter_name, lora_url, lora_multiplier}]`, one adapter name per LoRA."""
    configs: list[dict[str, Any]] = []
    for index, lora in enumerate(params.loras):
        stem = lora.ref.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1].removesuffix(".safetensors")
        name = re.sub(r"[^A-Za-z0-9_]+", "_", stem).strip("_")[:40] or "lora"
        where = {"lora_url": lora.ref} if lora.source == "url" else {"lora_file": file_pending(lora.ref)}
        configs.append({"adapter_name": f"{name}_{index}", **where, "lora_multiplier": lora.scale})
    return configs


def lora_file_size(ref: str) -> int:
    """A local LoRA file's size, checked against the cap before anything is sent (InvalidParams)."""
    path = Path(ref).expanduser()
    try:
        if not path.is_file():
            raise InvalidParams({"loras": f"can't read {ref[:200]!r}: not a file"})
        size = path.stat().st_size
        with path.open("rb"):
            pass  # readable: refused here, not half way through an upload
    except OSError as exc:
        raise InvalidParams(
            {"loras": f"can't read {ref[:200]!r}: {(exc.strerror or str(exc)).lower()}"}
        ) from None
    if size > MAX_LORA_BYTES:
        raise InvalidParams({"loras": f"{ref[:200]!r} is over {MAX_LORA_BYTES // 2**30} GB: not uploaded"})
    return size


def files_body(name: str, size: int) -> dict[str, Any]:
    """`POST /files`, as the SDK's `upload_file` builds it; `public` false: a LoRA stays private."""
    file = {"uri": "", "filename": name, "content_type": LORA_CONTENT_TYPE, "path": None, "size": size}
    return {"files": [{**file, "public": False}]}


def created_file(payload: Any) -> tuple[str, str]:
    """(`upload_url`, `uri`) of the one file `POST /files` created: `data[0]` in either envelope."""
    if isinstance(payload, dict) and payload.get("success") is False:
        raise Refused(api_message(payload, ("error.message", "error", "message")) or "success: false")
    return dig_text(payload, "data", 0, "upload_url"), dig_text(payload, "data", 0, "uri")


def unwrap(payload: Any) -> dict[str, Any]:
    """The task inside either envelope: `{"data", "messages"}` or the older `{"success", "data", "error"}`."""
    if isinstance(payload, dict) and payload.get("success") is False:
        raise Refused(api_message(payload, ("error.message", "error", "message")) or "success: false")
    task = dig(payload, "data")
    if not isinstance(task, dict):
        raise Unexpected("no task in data")
    return task


def status_name(raw: Any) -> str:
    """A status number (current table) or name, as the lower-case name."""
    if isinstance(raw, int) and not isinstance(raw, bool):
        return STATUS_NAMES.get(raw, f"status {raw}")
    if isinstance(raw, str) and raw.strip():
        return raw.strip().lower()
    raise Unexpected(f"unreadable task status {raw!r}")


def task_state(task: dict[str, Any]) -> JobState:
    name = status_name(task.get("status"))
    reason = task.get("error") if isinstance(task.get("error"), str) else ""
    fraction = percent_fraction(task.get("progress"))  # a percentage, where the task has one
    return JobState(PHASES.get(name, "running"), name.replace("_", " "), fraction, reason or "")


def image_urls(task: dict[str, Any]) -> list[str]:
    """`output.image` as a file object `{uri, ...}` or a plain URL (or a list of either)."""
    output = dig(task, "output")
    found = output.get("image", output.get("images")) if isinstance(output, dict) else None
    files = found if isinstance(found, list) else [found]
    urls = [item.get("uri") or item.get("url") if isinstance(item, dict) else item for item in files]
    texts = [url for url in urls if isinstance(url, str) and url]
    if not texts or len(texts) != len(urls):
        raise Unexpected("no output.image in the finished task")
    return texts


class InferenceShProvider(HostedProvider):
    id = "inferencesh"
    label = "inference.sh (infsh/z-image-turbo)"
    capabilities = CAPABILITIES
    key_names = ("INFERENCE_API_KEY",)
    default_base_url = "https://api.inference.sh"
    submit_path = "/apps/run"
    error_paths = ("detail", "title", "message", "error.message", "error")

    map_params = staticmethod(inferencesh_body)

    async def execute(self, session: HttpSession, prepared: PreparedRequest, progress: ProgressFn) -> JobDone:
        base = self.base_of(prepared)
        body = await self.upload_loras(session, base, prepared, progress)
        task = unwrap(await session.submit(prepared.url, body))
        task_id = str(dig(task, "id"))
        session.job_started(f"{base}/tasks/{task_id}/cancel")
        state = task_state(task)
        self.raise_if_ended(state)
        if state.phase != "done":
            url = f"{base}/tasks/{task_id}"
            task = unwrap(await self.poll_job(session, url, lambda data: task_state(unwrap(data)), progress))
        images = await gather_all(session.download_image(url) for url in image_urls(task))
        return JobDone(images=images, job_id=task_id)

    async def upload_loras(
        self, session: HttpSession, base: str, prepared: PreparedRequest, progress: ProgressFn
    ) -> dict[str, Any]:
        """The body with each local LoRA file uploaded and its uri as `lora_file`. Every file is
        checked (readable, under the cap) before the first byte goes out."""
        files = [lora.ref for lora in prepared.params.loras if lora.source == "file"]
        if not files:
            return prepared.body
        sizes = [lora_file_size(ref) for ref in files]
        uris: dict[str, str] = {}
        for ref, size in zip(files, sizes, strict=True):
            name = Path(ref).name
            progress(Progress(0.0, f"uploading the LoRA {name}"))
            step = f"uploading the LoRA {name} to {LABEL}"
            uris[file_pending(ref)] = await named_step(self.id, step, self._upload(session, base, ref, size))
        loras = [
            {**lora, "lora_file": uris[lora["lora_file"]]} if "lora_file" in lora else lora
            for lora in prepared.body["input"]["loras"]
        ]
        return {**prepared.body, "input": {**prepared.body["input"], "loras": loras}}

    async def _upload(self, session: HttpSession, base: str, ref: str, size: int) -> str:
        path = Path(ref).expanduser()
        upload_url, uri = created_file(await session.submit(f"{base}/files", files_body(path.name, size)))
        await session.put_upload(
            upload_url, path, size=size, content_type=LORA_CONTENT_TYPE, what="LoRA file"
        )
        return uri
