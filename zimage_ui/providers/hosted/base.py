"""What the hosted providers share: keys, base URLs, the run template, and pure mapping helpers."""

from __future__ import annotations

import abc
import asyncio
import logging
import math
import re
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import urlsplit

from PIL import Image

from zimage_ui import env
from zimage_ui.cancel import CancelToken
from zimage_ui.errors import (
    Cancelled,
    JobFailed,
    MalformedResponse,
    NoCredit,
    ProviderError,
    ProviderUnavailable,
)
from zimage_ui.net.answers import DEFAULT_ERROR_PATHS, ErrorPath, Unexpected, dig, redacted_detail
from zimage_ui.net.http import HttpEngine
from zimage_ui.net.images import PIXEL_HEADROOM
from zimage_ui.net.session import HttpSession
from zimage_ui.params import TURBO_SHIFT, TURBO_STEPS, GenerationParams
from zimage_ui.providers.base import (
    REDACTED,
    Availability,
    Capabilities,
    Cost,
    KeyRing,
    PreparedRequest,
    Progress,
    ProgressFn,
    Provider,
    RunResult,
    SentValues,
    ignore_progress,
)
from zimage_ui.redaction import header_secrets, key_problem, redact, safe_url, url_secrets

T = TypeVar("T")
log = logging.getLogger(__name__)
OWNER_ONLY = "the owner lets visitors use it by setting ZIMAGE_SERVER_KEYS=all"

# -- pure helpers ---------------------------------------------------------------------------


def snap_side(value: float, multiple: int, low: int, high: int) -> int:
    """Nearest multiple of `multiple` (halves round up), kept inside low..high."""
    lowest = math.ceil(low / multiple) * multiple
    highest = high // multiple * multiple
    nearest = math.floor(value / multiple + 0.5) * multiple
    return min(max(nearest, lowest), highest)


def fit_size(width: int, height: int, *, low: int, high: int, multiple: int) -> tuple[int, int]:
    """Scale into the low..high box keeping the aspect ratio where possible, then snap each side."""
    scale = 1.0
    if min(width, height) < low:
        scale = low / min(width, height)
    if max(width, height) * scale > high:
        scale = high / max(width, height)
    return (
        snap_side(width * scale, multiple, low, high),
        snap_side(height * scale, multiple, low, high),
    )


def nearest_listed(width: int, height: int, sizes: Sequence[tuple[int, int]]) -> tuple[int, int]:
    """The listed size closest in aspect ratio, then in area."""

    def distance(size: tuple[int, int]) -> tuple[float, float]:
        ratio = abs(math.log(width / height) - math.log(size[0] / size[1]))
        area = abs(math.log(width * height) - math.log(size[0] * size[1]))
        return round(ratio, 6), area

    return min(sizes, key=distance)


def size_note(asked: tuple[int, int], sent: tuple[int, int], rule: str) -> list[str]:
    if asked == sent:
        return []
    return [f"sent {sent[0]}x{sent[1]} instead of {asked[0]}x{asked[1]}: {rule}"]


def seed_at_least_one(seed: int, label: str) -> tuple[int, list[str]]:
    """Scenario, AIML and EvoLink accept seeds from 1: seed 0 is sent as 1, and said so."""
    if seed >= 1:
        return seed, []
    return 1, [f"sent seed 1 instead of 0: {label} accepts seeds from 1"]


def steps_sent(
    params: GenerationParams, capabilities: Capabilities, label: str
) -> tuple[int | None, list[str]]:
    """The steps value a provider gets (None: it picks them itself), with a note when it differs."""
    asked = params.num_inference_steps
    if capabilities.steps_range is None:
        if asked == TURBO_STEPS:
            return None, []
        return None, [f"steps not sent: {label} takes no steps value, it uses its own (asked: {asked})"]
    low, high = capabilities.steps_range
    sent = min(max(asked, low), high)
    if sent == asked:
        return sent, []
    return sent, [f"sent {sent} steps instead of {asked}: {label} accepts {low}..{high}"]


def unsupported_notes(params: GenerationParams, capabilities: Capabilities, label: str) -> list[str]:
    """Notes for settings the provider's API has no field for, and for batches it can't make."""
    notes: list[str] = []
    if params.negative_prompt.strip() and not capabilities.negative_prompt:
        notes.append(f"negative prompt not sent: {label} has no negative prompt field")
    if params.guidance_scale > 0 and not capabilities.guidance:
        notes.append(f"guidance {params.guidance_scale:g} not sent: {label} has no guidance setting")
    if params.shift != TURBO_SHIFT and not capabilities.shift:
        notes.append(f"shift {params.shift:g} not sent: {label} uses its own scheduler shift")
    if params.num_images > capabilities.max_images:
        notes.append(
            f"requested {capabilities.max_images} image instead of {params.num_images}: "
            f"{label} makes {capabilities.max_images} per request"
        )
    return notes


def image_items(data: Any, kinds: tuple[str, str] = ("url", "b64_json")) -> list[tuple[str, str]]:
    """Each image of an OpenAI-style answer (`{"data": [{"url"} or {"b64_json"}, ...]}`) as
    (kind, value), the first of `kinds` an item has."""
    items = dig(data, "data")
    if not isinstance(items, list) or not items:
        raise Unexpected("no images in data")
    found: list[tuple[str, str]] = []
    for item in items:
        kind = next((k for k in kinds if isinstance(item, dict) and item.get(k)), None)
        if kind is None:
            raise Unexpected("an item of data has neither url nor b64_json")
        found.append((kind, str(item[kind])))
    return found


def percent_fraction(value: Any) -> float | None:
    """A 0..100 progress value as a 0..1 fraction (None when the answer has none)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return min(max(value / 100, 0.0), 1.0)


def images_sent(params: GenerationParams, capabilities: Capabilities) -> int:
    return min(params.num_images, capabilities.max_images)


def address_problem(base: str, variable: str) -> str | None:
    """Why a configured API root can't be used, or None: its paths are appended to it, so a query
    or fragment would end up in front of them."""
    try:
        parts = urlsplit(base)
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        return f"{variable} is not a valid URL: fix it and restart"
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        return f"{variable} must be an http(s) URL with a host: fix it and restart"
    if parts.query or parts.fragment:
        return (
            f"{variable} has a query string or fragment: paths are added to it, so give the root "
            "alone and put a key in the provider's key variable"
        )
    return None


class Refused(Exception):
    """A 2xx answer that says the request was refused (e.g. `success: false`)."""


@dataclass(frozen=True)
class JobState:
    """A provider's job status, read by a pure function.

    A status a provider adds later reads as "running", shown by name: the deadline bounds it.
    """

    phase: str  # "running", "done", or a key of ENDED
    message: str
    fraction: float | None = None
    reason: str = ""


ENDED: dict[str, tuple[type[ProviderError], str]] = {
    "failed": (JobFailed, "the job failed{reason}: try again, or change the prompt or settings"),
    "cancelled": (Cancelled, "the job was cancelled at the provider{reason}"),
    "no_credit": (NoCredit, "the job was refused: no balance left{reason}; top up the account, then retry"),
    "timed_out": (JobFailed, "the job timed out at the provider{reason}: retry in a moment"),
}


@dataclass
class JobDone:
    """What a provider's run produced, before it becomes a RunResult."""

    images: list[Image.Image]
    job_id: str | None = None
    cost: Cost | None = None
    queue_s: float | None = None
    run_s: float | None = None
    notes: list[str] = field(default_factory=list)  # what the run learnt (an uploaded asset's id)


URL_IN_TEXT = re.compile(r"https?://[^\s'\"<>]+")


def display_safe(value: Any) -> Any:
    """A body or note to show: every URL's query values and userinfo redacted (a signed LoRA or
    image URL's `?token=` / `X-Amz-Signature=`). The request itself still sends them."""
    if isinstance(value, dict):
        return {key: display_safe(item) for key, item in value.items()}
    if isinstance(value, list):
        return [display_safe(item) for item in value]
    if isinstance(value, str) and "://" in value:
        return URL_IN_TEXT.sub(lambda found: safe_url(found.group(0)), value)
    return value


def input_url_secrets(params: GenerationParams) -> list[str]:
    """The credentials the input URLs carry (query values, userinfo): redacted from every message."""
    refs = [params.image, params.mask, params.control_image, *(lora.ref for lora in params.loras)]
    return [secret for ref in refs if ref and "://" in ref for secret in url_secrets(ref)]


class HostedPreparedRequest(PreparedRequest):
    """A hosted provider's prepared request: its display redacts the URLs in the body and notes."""

    def display(self) -> dict[str, Any]:
        shown = super().display()
        return {**shown, "body": display_safe(shown["body"]), "notes": display_safe(shown["notes"])}


async def named_step(provider: str, what: str, work: Awaitable[T]) -> T:
    """One step of a run before the job (an upload): a failure's message names it, e.g.
    "uploading the control image to Scenario failed: the service failed (HTTP 500) ..."."""
    try:
        return await work
    except Cancelled:
        raise
    except ProviderError as exc:
        raise type(exc)(exc.provider, f"{what} failed: {exc.detail}") from None
    except Refused as exc:
        raise ProviderError(provider, f"{what} failed: the request was refused ({exc})") from None
    except Unexpected as exc:
        shape = str(exc) if isinstance(exc, Unexpected) else type(exc).__name__
        raise MalformedResponse(
            provider, f"{what} failed: the answer is not in the documented shape ({shape}): retry"
        ) from None


async def gather_all(work: Iterable[Awaitable[T]]) -> list[T]:
    """Run concurrently; wait for all (nothing left running), then raise the first error."""
    results = await asyncio.gather(*work, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return list(results)  # type: ignore[arg-type]


# -- the provider base ----------------------------------------------------------------------


class HostedProvider(Provider):
    """A hosted API: `prepare` is pure, `run` goes through the injected HttpEngine."""

    default_base_url: str
    submit_path: str
    # the provider's pure mapping: params (seed concrete) -> (body, values really sent, notes)
    map_params: Callable[[GenerationParams], tuple[dict[str, Any], SentValues, list[str]]]
    error_paths: tuple[ErrorPath, ...] = DEFAULT_ERROR_PATHS
    auth_scheme = "Bearer"

    def __init__(self, http: HttpEngine | None = None) -> None:
        self.http = http or HttpEngine()

    @property
    def base_url_var(self) -> str:
        return f"ZIMAGE_{self.id.upper()}_BASE_URL"

    def base_url(self) -> str:
        """The API root, overridable by `ZIMAGE_<ID>_BASE_URL` (read at every call)."""
        return (env.raw(self.base_url_var) or self.default_base_url).rstrip("/")

    def base_of(self, prepared: PreparedRequest) -> str:
        """The API root the prepared request was built for, so every call goes to the same place."""
        return prepared.url.removesuffix(self.submit_path)

    def availability(self, keys: KeyRing) -> Availability:
        """As every provider's, and: an address that carries credentials (`user:pass@`, `?token=`)
        is the owner's, so a visitor who may not use the server's keys may not use it either."""
        if problem := address_problem(self.base_url(), self.base_url_var):
            return Availability(False, problem)
        if not keys.use_env and url_secrets(self.base_url()):
            return Availability(False, f"{self.base_url_var} carries the owner's credentials: {OWNER_ONLY}")
        return super().availability(keys)

    def key_values(self, keys: KeyRing) -> list[str]:
        status = self.availability(keys)
        if not status.usable:
            raise ProviderUnavailable(self.id, status.reason)
        return [keys.get(name) or "" for name in self.key_names]

    def auth_headers(self, values: list[str]) -> dict[str, str]:
        return {"Authorization": f"Bearer {values[0]}"}

    def display_headers(self) -> dict[str, str]:
        return {"Authorization": f"{self.auth_scheme} {REDACTED}", "Content-Type": "application/json"}

    def prepare_seeded(self, params: GenerationParams) -> PreparedRequest:
        body, sent, notes = self.map_params(params)  # refuses what the provider can't take
        return HostedPreparedRequest(
            provider=self.id,
            params=params,
            sent=sent,
            method="POST",
            url=self.base_url() + self.submit_path,
            body=body,
            headers=self.display_headers(),
            notes=tuple(notes),
        )

    def raise_if_ended(self, state: JobState) -> None:
        if state.phase in ENDED:
            kind, template = ENDED[state.phase]
            reason = f" ({state.reason})" if state.reason else ""
            raise kind(self.id, template.format(reason=reason))

    async def poll_job(
        self, session: HttpSession, url: str, read_state: Callable[[Any], JobState], progress: ProgressFn
    ) -> Any:
        """Poll `url` until `read_state` says done; report progress; raise on a failed job."""

        async def check() -> Any:
            data = await session.get_json(url)
            state = read_state(data)
            progress(Progress(state.fraction, state.message))
            self.raise_if_ended(state)
            return data if state.phase == "done" else None

        return await session.poll(check)

    async def run(
        self,
        prepared: PreparedRequest,
        *,
        keys: KeyRing,
        progress: ProgressFn = ignore_progress,
        cancel: CancelToken | None = None,
    ) -> RunResult:
        values = self.key_values(keys)
        started = time.perf_counter()
        headers = self.auth_headers(values)
        secrets = [
            *values,
            *header_secrets(headers),
            *url_secrets(prepared.url),
            *input_url_secrets(prepared.params),
        ]
        session = self.http.session(
            self.id,
            headers=headers,
            secrets=secrets,
            key_hint=" and ".join(self.key_names),
            error_paths=self.error_paths,
            cancel=cancel,
            max_pixels=prepared.sent.width * prepared.sent.height * PIXEL_HEADROOM,
        )
        async with session:
            progress(Progress(0.0, "sending the request"))
            try:
                outcome = await self.execute_with_keys(session, prepared, progress, values)
            except Unexpected as exc:
                # An answer of the wrong shape (a list where an object was documented, ...).
                log.debug(
                    "%s answered in an unexpected shape: %r", self.id, redacted_detail(repr(exc), secrets)
                )
                what = str(exc) if isinstance(exc, Unexpected) else type(exc).__name__
                raise MalformedResponse(
                    self.id,
                    "malformed answer: it is not in the documented shape "
                    f"({redacted_detail(what, secrets)}): "
                    "retry; if it persists, the API may have changed",
                ) from None
            except Refused as exc:
                refusal = redacted_detail(str(exc), secrets)
                raise ProviderError(self.id, f"the request was refused ({refusal})") from None
            except ProviderError as exc:  # a last guard: no message may carry a key
                clean = redact(exc.detail, secrets)
                if clean != exc.detail:
                    raise type(exc)(exc.provider, clean) from None
                raise
        progress(Progress(1.0, "done"))
        return RunResult(
            provider=self.id,
            images=outcome.images,
            seed=prepared.sent.seed,
            sent=prepared.sent,
            elapsed_s=time.perf_counter() - started,
            queue_s=outcome.queue_s,
            run_s=outcome.run_s,
            cost=outcome.cost,
            job_id=outcome.job_id,
            notes=[*prepared.notes, *outcome.notes],
        )

    @abc.abstractmethod
    async def execute(self, session: HttpSession, prepared: PreparedRequest, progress: ProgressFn) -> JobDone:
        """Submit, wait and fetch the images of one prepared request."""

    async def execute_with_keys(
        self, session: HttpSession, prepared: PreparedRequest, progress: ProgressFn, keys: list[str]
    ) -> JobDone:
        """`execute`, for a provider whose client library needs the key itself (the session carries
        it in its headers for everyone else)."""
        return await self.execute(session, prepared, progress)


class SelfHostedProvider(HostedProvider):
    """An engine the team runs itself (an OpenAI-style server, ComfyUI): no default address (its
    `base_url_var` must be set) and an optional key, sent as a bearer token only when there is one."""

    default_base_url = ""
    address_hint = "the engine's URL"  # what the unset-address message asks for, with an example

    def availability(self, keys: KeyRing) -> Availability:
        if not self.base_url():
            return Availability(False, f"set {self.base_url_var} to {self.address_hint}")
        if problem := address_problem(self.base_url(), self.base_url_var):
            return Availability(False, problem)
        if not keys.use_env:  # its address, any key or password in it, and its GPUs are the owner's
            return Availability(False, f"this engine is the owner's hardware: {OWNER_ONLY}")
        name = self.key_names[0]
        problem = key_problem(key) if (key := keys.get(name)) else None
        if problem:
            return Availability(False, f"the key in {name} is malformed: {problem}; paste it again")
        return Availability(True)

    def key_values(self, keys: KeyRing) -> list[str]:
        super().key_values(keys)  # refuses when unusable
        return [keys.get(self.key_names[0]) or ""]

    def auth_headers(self, values: list[str]) -> dict[str, str]:
        return {"Authorization": f"Bearer {values[0]}"} if values[0] else {}

    def display_headers(self) -> dict[str, str]:
        auth = {"Authorization": f"Bearer {REDACTED}"} if env.is_set(self.key_names[0]) else {}
        return {**auth, "Content-Type": "application/json"}
