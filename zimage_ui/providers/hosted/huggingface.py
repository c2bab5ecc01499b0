"""Hugging Face Inference Providers: one `HF_TOKEN`, many providers, through `huggingface_hub`.

`AsyncInferenceClient(provider=..., api_key=HF_TOKEN).text_to_image(...)` does the HTTP: with an
`hf_` token it posts to `https://router.huggingface.co/{provider}/...` and the router forwards to
the provider. `ZIMAGE_HF_PROVIDER` picks the provider (`auto`, the default, takes the first one
the Hub lists for the model in `/api/models/{id}?expand=inferenceProviderMapping`); which
providers serve Z-Image-Turbo is live hub data. `ZIMAGE_HF_MODEL` is the hub model id.

What each routed provider's helper (`huggingface_hub/inference/_providers/*.py`, 2.4.0) sends for
our `text_to_image` arguments (None values are dropped by `filter_none` everywhere):

| provider     | prompt    | width, height                 | steps, guidance, seed, negative_prompt |
|--------------|-----------|-------------------------------|----------------------------------------|
| fal-ai       | `prompt`  | `image_size: {width, height}` | same names, flat                       |
| replicate    | `input.prompt` | `input.width`, `input.height` | same names, under `input`         |
| wavespeed    | `prompt`  | `width`, `height`             | same names, flat                       |
| hf-inference | `inputs`  | `parameters.width/height`     | same names, under `parameters`         |

Routes through the router (`{providerId}` is the provider's own model id, from the Hub mapping):
fal-ai `POST /fal-ai/{providerId}`, answer `{"images": [{"url"}]}`, then GET the url; replicate
`POST /replicate/v1/models/{providerId}/predictions` with `Prefer: wait`, then GET `output`;
wavespeed `POST /wavespeed/api/v3/{providerId}`, poll `data.urls.get`, GET `outputs[0]`;
hf-inference `POST /hf-inference/models/{id}`, answered with the image bytes.

The helpers pass every parameter through under its own name (fal-ai renames only the size): a
field the provider's model does not take is ignored or refused by the provider, not by the
client. `providerId` (the provider's own model id) is live hub data, so prepare() shows the
payload and the route with `{providerId}` left open.

huggingface_hub blocks threads (the mapping look-up, fal-ai's download, wavespeed's polling), so
a run works on a pool of its own (`HF_WORKERS` threads, each run in an event loop of its own): a
stalled provider can fill that pool, never the default one the app decodes and encodes images
on. Every request goes through a transport of ours (`net.transport2`): bodies decoded in bounded
steps, capped at `HF_BODY_CAP`, given up past the run's deadline (`ZIMAGE_TIMEOUT_S`) however
slowly they trickle, read timeouts instead of none. Stop and the deadline abandon the run at once
and cancel its work in its loop. The Hub and the router get the run's own `HF_TOKEN` (a visitor's
own where the instance shares no key) and no other host gets any: the owner's token never goes
out for a visitor, not even for the provider mapping look-up.

`ZIMAGE_HUGGINGFACE_BASE_URL` and `HF_ENDPOINT` send the router's and the Hub's requests to
another server (an emulator); the requests are rewritten at the transport, so each helper still
sees the router's own URL.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import json
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import httpx2
from PIL import Image, UnidentifiedImageError

from zimage_ui import env
from zimage_ui.errors import (
    AuthError,
    Cancelled,
    JobFailed,
    MalformedResponse,
    NoCredit,
    ProviderError,
    ProviderTimeout,
    ProviderUnavailable,
    RateLimited,
)
from zimage_ui.net.answers import MAX_DETAIL_CHARS
from zimage_ui.net.decoding import BodyTooSlow, EncodingRefused
from zimage_ui.net.guard import origin
from zimage_ui.net.images import PIXEL_HEADROOM
from zimage_ui.net.session import HttpSession, timeout_s
from zimage_ui.net.transport2 import AsyncBounded, Bounded
from zimage_ui.params import GenerationParams
from zimage_ui.providers.base import (
    Capabilities,
    KeyRing,
    PreparedRequest,
    Progress,
    ProgressFn,
    SentValues,
    refuse_inputs,
)
from zimage_ui.providers.hosted.base import (
    HostedPreparedRequest,
    HostedProvider,
    JobDone,
    steps_sent,
    unsupported_notes,
)
from zimage_ui.redaction import REDACTED, redact

LABEL = "HF Inference Providers"
DEFAULT_MODEL = "Tongyi-MAI/Z-Image-Turbo"
PROVIDER_VAR, MODEL_VAR = "ZIMAGE_HF_PROVIDER", "ZIMAGE_HF_MODEL"
ROUTER = "https://router.huggingface.co"
ROUTER_HOST, HUB_HOST = "router.huggingface.co", "huggingface.co"
REQUEST_TIMEOUT_S = 120.0  # the POST (replicate holds it with `Prefer: wait`)
READ_TIMEOUT_S = 60.0  # any other request: silence this long ends it
CONNECT_TIMEOUT_S = 10.0
HF_WORKERS = 4  # runs of this provider at once; more wait (within their deadline) for a thread
HF_BODY_CAP = 64 * 2**20  # any one answer or image: decoded bytes
TASK = "text-to-image"
CAPABILITIES = Capabilities(
    size_rule="WxH, multiples of 16 (each provider may snap)",
    steps_range=(1, 50),
    negative_prompt=True,
    guidance=True,
    max_images=1,
)
ROUTES = {
    "fal-ai": "POST /fal-ai/{providerId}, then GET images[0].url",
    "replicate": "POST /replicate/v1/models/{providerId}/predictions (Prefer: wait), then GET output",
    "wavespeed": "POST /wavespeed/api/v3/{providerId}, poll data.urls.get, then GET outputs[0]",
    "hf-inference": "POST /hf-inference/models/{model}, answered with the image bytes",
}
NOTES = {
    "fal-ai": "fal-ai takes width and height as image_size {width, height}",
    "replicate": "replicate takes the arguments wrapped in {'input': ...} and waits (Prefer: wait, 60 s)",
    "wavespeed": "wavespeed takes the arguments flat and is polled for the result",
    "hf-inference": "hf-inference takes the arguments under 'parameters' and the prompt as 'inputs'",
}


def hf_provider() -> str:
    return env.raw(PROVIDER_VAR) or "auto"


def hf_model() -> str:
    return env.raw(MODEL_VAR) or DEFAULT_MODEL


def text_to_image_args(params: GenerationParams, model: str) -> tuple[dict[str, Any], SentValues, list[str]]:
    """Params (seed concrete) -> the keyword arguments of `text_to_image`, exactly as passed."""
    assert params.seed is not None
    steps, step_notes = steps_sent(params, CAPABILITIES, LABEL)
    args: dict[str, Any] = {
        "prompt": params.prompt,
        "negative_prompt": params.negative_prompt.strip() or None,
        "width": params.width,
        "height": params.height,
        "num_inference_steps": steps,
        "guidance_scale": params.guidance_scale,
        "seed": params.seed,
        "model": model,
    }
    notes = [*step_notes, *unsupported_notes(params, CAPABILITIES, LABEL)]
    sent = SentValues(
        width=params.width,
        height=params.height,
        steps=steps,
        seed=params.seed,
        guidance=params.guidance_scale,
        negative_sent=args["negative_prompt"] is not None and params.guidance_scale > 0,
    )
    return args, sent, notes


def routed_payload(provider: str, args: dict[str, Any]) -> dict[str, Any] | None:
    """The JSON body the provider's helper builds for these arguments (offline: its payload code
    needs only the mapping's ids, given here as the hub model id), or None for an unknown one."""
    from huggingface_hub.hf_api import InferenceProviderMapping
    from huggingface_hub.inference._providers import PROVIDERS as HELPERS

    helper = HELPERS.get(provider, {}).get(TASK)  # type: ignore[call-overload]
    if helper is None:
        return None
    parameters = {k: v for k, v in args.items() if k not in {"prompt", "model"}}
    mapping = InferenceProviderMapping(
        provider=provider, hf_model_id=args["model"], providerId=args["model"], task=TASK, status="live"
    )
    payload = helper._prepare_payload_as_dict(args["prompt"], parameters, mapping)
    return payload if isinstance(payload, dict) else None


@dataclass(frozen=True)
class HFPreparedRequest(HostedPreparedRequest):
    """Also shows the provider's own payload, when the provider is named."""

    routed: dict[str, Any] | None = None

    def display(self) -> dict[str, Any]:
        shown = super().display()
        if self.routed is not None:
            shown["routed_payload"] = self.routed
        return shown


# -- routing (an emulator, a proxy) ---------------------------------------------------------

Guard = Callable[[httpx2.Request], None]
# The HF_TOKEN of the run being served in this context (set in the run's own thread): the Hub and
# the router get it, whatever token huggingface_hub found in the environment.
RUN_TOKEN: contextvars.ContextVar[str | None] = contextvars.ContextVar("zimage_hf_token", default=None)


def routes() -> dict[str, httpx2.URL]:
    """Host -> where its requests go: the router (`ZIMAGE_HUGGINGFACE_BASE_URL`), the Hub
    (`HF_ENDPOINT`, read here at every request, so it also applies after import)."""
    found: dict[str, httpx2.URL] = {}
    router = env.raw("ZIMAGE_HUGGINGFACE_BASE_URL")
    hub = env.raw("HF_ENDPOINT")
    if router:
        found[ROUTER_HOST] = httpx2.URL(router)
    if hub:
        found[HUB_HOST] = httpx2.URL(hub)
    return found


def hub_origins() -> set[tuple[str, int]]:
    """The Hub's and the router's origins (host, port), rerouted ones included: the only places
    a token goes."""
    urls = [ROUTER, f"https://{HUB_HOST}", *(str(url) for url in routes().values())]
    return {found for url in urls if (found := origin(url))}


def run_token_only(request: httpx2.Request) -> None:
    """In a run, a request huggingface_hub authorised carries the run's token, not the one it found
    in the environment, and only to the Hub or the router: no other host gets any."""
    token = RUN_TOKEN.get()
    if token is None or "Authorization" not in request.headers:
        return
    if token and origin(str(request.url)) in hub_origins():
        request.headers["Authorization"] = f"Bearer {token}"
    else:
        del request.headers["Authorization"]


def reroute(request: httpx2.Request, guard: Guard | None) -> None:
    run_token_only(request)
    target = routes().get(request.url.host)
    if target is not None:
        path = target.path.rstrip("/") + request.url.path
        request.url = request.url.copy_with(
            scheme=target.scheme, host=target.host, port=target.port, path=path
        )
        request.headers["Host"] = request.url.netloc.decode()
    if guard is not None:
        guard(request)


class _Routing(httpx2.BaseTransport):
    def __init__(self, guard: Guard | None) -> None:
        self.inner, self.guard = httpx2.HTTPTransport(), guard

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        reroute(request, self.guard)
        return self.inner.handle_request(request)

    def close(self) -> None:
        self.inner.close()


class _AsyncRouting(httpx2.AsyncBaseTransport):
    def __init__(self, guard: Guard | None) -> None:
        self.inner, self.guard = httpx2.AsyncHTTPTransport(), guard

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        reroute(request, self.guard)
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


_installed: list[Any] = []  # the guard the factories were installed with (one item), if any


def install_routing(guard: Guard | None) -> None:
    """Point huggingface_hub's clients (sync: hub API, downloads, polls; async: the POST) through
    our transports: bounded decoding, a cap and a deadline on every body, the run's token only,
    read timeouts, and any route or guard."""
    from huggingface_hub import set_async_client_factory, set_client_factory
    from huggingface_hub.utils._http import (
        async_hf_request_event_hook,
        async_hf_response_event_hook,
        hf_request_event_hook,
    )

    if _installed and _installed[0] is guard:
        return
    _installed[:] = [guard]
    timeout = httpx2.Timeout(READ_TIMEOUT_S, connect=CONNECT_TIMEOUT_S)
    set_client_factory(
        lambda: httpx2.Client(
            transport=Bounded(_Routing(guard), HF_BODY_CAP, timeout_s()),
            event_hooks={"request": [hf_request_event_hook]},
            follow_redirects=True,
            timeout=timeout,
        )
    )
    set_async_client_factory(
        lambda: httpx2.AsyncClient(
            transport=AsyncBounded(_AsyncRouting(guard), HF_BODY_CAP, timeout_s()),
            event_hooks={
                "request": [async_hf_request_event_hook],
                "response": [async_hf_response_event_hook],
            },
            follow_redirects=True,
            timeout=timeout,
        )
    )


# -- errors ---------------------------------------------------------------------------------


def short(text: str, secrets: list[str]) -> str:
    clean = " ".join(redact(str(text), secrets).split())
    return clean[:MAX_DETAIL_CHARS] + ("..." if len(clean) > MAX_DETAIL_CHARS else "")


def classify(exc: BaseException, provider: str, used: str, secrets: list[str]) -> ProviderError:
    """A huggingface_hub / httpx2 / PIL failure as the app's error, with no secret in it."""
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

    if isinstance(exc, HfHubHTTPError) and exc.response is not None:
        status = exc.response.status_code
        said = short(exc.server_message or "", secrets)
        said = f": {said}" if said else ""
        if status in (401, 403):
            return AuthError(
                provider,
                f"HF_TOKEN was refused (HTTP {status}{said}): use a token with the 'Make calls to "
                "Inference Providers' permission (hf.co/settings/tokens), or enter it under API keys",
            )
        if status == 402:
            return NoCredit(
                provider,
                f"no Inference Providers credit left (HTTP 402{said}): add credit at "
                "hf.co/settings/billing, then retry",
            )
        if status == 429:
            wait = exc.response.headers.get("Retry-After", "").strip()
            when = f"in {wait} s" if wait.isdigit() else "in a minute"
            return RateLimited(provider, f"rate limited (HTTP 429{said}): retry {when}")
        if status >= 500:
            return ProviderUnavailable(
                provider,
                f"{used} failed (HTTP {status}{said}): retry in a moment, or set {PROVIDER_VAR} "
                "to another provider",
            )
        if status == 404:
            return ProviderUnavailable(
                provider, f"not found (HTTP 404{said}): check {MODEL_VAR} and {PROVIDER_VAR}"
            )
        return ProviderError(provider, f"the request was refused (HTTP {status}{said})")
    if isinstance(exc, BodyTooSlow):
        return ProviderTimeout(provider, f"{used} sent its answer too slowly ({exc}): retry in a moment")
    if isinstance(exc, EncodingRefused):
        return MalformedResponse(provider, f"{used}: {exc}: refused")
    if isinstance(exc, TimeoutError | httpx2.TimeoutException):
        return ProviderTimeout(provider, f"{used} did not answer in time: retry in a moment")
    if isinstance(exc, OfflineModeIsEnabled):
        return ProviderUnavailable(provider, "HF_HUB_OFFLINE is set: huggingface_hub sends nothing; unset it")
    if isinstance(exc, httpx2.TransportError | ConnectionError):
        return ProviderUnavailable(
            provider, f"could not reach {used} ({type(exc).__name__}): check the connection, then retry"
        )
    if isinstance(exc, Image.DecompressionBombError | UnidentifiedImageError):
        return MalformedResponse(provider, f"{used} answered with something that is not an image: retry")
    if isinstance(exc, json.JSONDecodeError | KeyError | IndexError | TypeError | AttributeError):
        return MalformedResponse(
            provider,
            f"malformed answer from {used}: it is not in the documented shape ({type(exc).__name__}): retry",
        )
    if isinstance(exc, ValueError):
        return JobFailed(provider, f"huggingface_hub refused the request: {short(str(exc), secrets)}")
    return ProviderError(provider, f"{used} failed ({type(exc).__name__}): {short(str(exc), secrets)}")


def checked(image: Image.Image, max_pixels: int) -> Image.Image:
    """The decoded image, after its declared size is checked against the cap (before decoding)."""
    width, height = image.size
    if width * height > max_pixels:
        raise MalformedResponse(
            "huggingface", f"the image is {width}x{height}, far more pixels than asked: refused"
        )
    image.load()
    return image


# -- the pool runs work on ---------------------------------------------------------------------

_POOL = ThreadPoolExecutor(max_workers=HF_WORKERS, thread_name_prefix="zimage-hf")


def _threadsafe(progress: ProgressFn) -> ProgressFn:
    """Progress reported from a pool thread, delivered on the caller's event loop."""
    loop = asyncio.get_running_loop()

    def report(update: Progress) -> None:
        with contextlib.suppress(RuntimeError):  # the caller's loop is gone: nobody to tell
            loop.call_soon_threadsafe(progress, update)

    return report


class PoolRun:
    """One run on the pool: a thread runs it in an event loop of its own; `abandon()` cancels it
    there (and skips it if it never started), without waiting for the thread."""

    def __init__(self) -> None:
        self.abandoned = threading.Event()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.task: asyncio.Task[Any] | None = None
        self.future: asyncio.Future[Any]

    def abandon(self) -> None:
        self.abandoned.set()
        if self.loop is not None and self.task is not None:
            with contextlib.suppress(RuntimeError):  # its loop already closed: nothing left to stop
                self.loop.call_soon_threadsafe(self.task.cancel)


def _start_in_pool(work: Callable[..., Any], prepared: PreparedRequest, token: str, *args: Any) -> PoolRun:
    run = PoolRun()

    async def main() -> Any:
        run.loop, run.task = asyncio.get_running_loop(), asyncio.current_task()
        if run.abandoned.is_set():
            raise asyncio.CancelledError
        return await work(prepared, token, *args)

    def in_thread() -> Any:
        if run.abandoned.is_set():  # abandoned while it waited for a thread: never started
            raise asyncio.CancelledError
        RUN_TOKEN.set(token)
        return asyncio.run(main())

    run.future = asyncio.get_running_loop().run_in_executor(_POOL, in_thread)
    run.future.add_done_callback(_retrieved)
    return run


async def _until_done(run: PoolRun) -> Any:
    """The pool run's result; cancelled (Stop, the deadline), it abandons the run at once."""
    try:
        return await asyncio.shield(run.future)
    finally:
        if not run.future.done():
            run.abandon()


def _retrieved(future: asyncio.Future[Any]) -> None:
    """An abandoned run's outcome is read, so it is not logged as never retrieved."""
    if not future.cancelled():
        future.exception()


# -- the provider ---------------------------------------------------------------------------


class HuggingFaceProvider(HostedProvider):
    id = "huggingface"
    label = "HF Inference Providers (fal-ai, replicate, wavespeed, ...)"
    capabilities = CAPABILITIES
    key_names = ("HF_TOKEN",)
    default_base_url = ROUTER
    submit_path = ""

    def __init__(self, guard: Guard | None = None) -> None:
        super().__init__()
        self.guard = guard  # tests: refuse any host but the emulator's

    def map_params(self, params: GenerationParams) -> tuple[dict[str, Any], SentValues, list[str]]:
        refuse_inputs(params, self.capabilities, self.id)
        return text_to_image_args(params, hf_model())

    def prepare_seeded(self, params: GenerationParams) -> PreparedRequest:
        args, sent, notes = self.map_params(params)
        provider = hf_provider()
        routed = None if provider == "auto" else routed_payload(provider, args)
        if provider == "auto":
            notes.append(
                "provider auto: the first provider the Hub lists for the model "
                "(inferenceProviderMapping) is chosen at run time"
            )
        elif routed is None:
            notes.append(f"huggingface_hub 2.4 has no text-to-image helper for {provider!r}")
        else:
            notes.append(f"{provider} route: {ROUTES.get(provider, 'its own')}")
            if provider in NOTES:
                notes.append(NOTES[provider])
        return HFPreparedRequest(
            provider=self.id,
            params=params,
            sent=sent,
            method="POST",
            url=f"{self.base_url()}/{'{provider}' if provider == 'auto' else provider}",
            body={**args, "provider": provider},
            headers=self.display_headers(),
            notes=tuple(notes),
            routed=routed,
        )

    def key_values(self, keys: KeyRing) -> list[str]:
        token = super().key_values(keys)[0]
        if not token.startswith("hf_"):  # another provider's own key: huggingface_hub would skip the router
            raise AuthError(self.id, "HF_TOKEN must be a Hugging Face token (hf_...): nothing was sent")
        return [token]

    async def execute(self, session: HttpSession, prepared: PreparedRequest, progress: ProgressFn) -> JobDone:
        raise NotImplementedError("huggingface_hub needs the token itself: see execute_with_keys")

    async def execute_with_keys(
        self, session: HttpSession, prepared: PreparedRequest, progress: ProgressFn, keys: list[str]
    ) -> JobDone:
        """huggingface_hub does the HTTP, on the pool (`_start_in_pool`); the session gives the run
        its deadline and Stop, as for every hosted provider. An abandoned run is cancelled in its
        own event loop; the provider has no cancel call, so Stop says the job may still finish."""
        token, secrets = keys[0], [keys[0], f"Bearer {keys[0]}"]
        install_routing(self.guard)
        provider = prepared.body.get("provider", "auto")
        used_box = [provider]  # the provider in use, once the mapping says (for messages)
        session.job_started()  # no cancel call: huggingface_hub sends, and can't take one back
        work = _start_in_pool(self._generate, prepared, token, _threadsafe(progress), used_box)
        try:
            image, used = await session.wait(_until_done(work))
        except ProviderTimeout:
            limit = timeout_s()
            raise ProviderTimeout(
                self.id, f"no image within {limit:g} s: retry in a moment, or raise ZIMAGE_TIMEOUT_S"
            ) from None
        except Cancelled:
            raise
        except ProviderError as exc:
            raise type(exc)(exc.provider, redact(exc.detail, secrets)) from None
        except Exception as exc:  # huggingface_hub's, httpx2's and PIL's own errors
            raise classify(exc, self.id, used_box[0], secrets) from None
        notes = [f"provider auto resolved to {used}"] if provider == "auto" else []
        return JobDone(images=[image], notes=notes)

    async def _generate(
        self, prepared: PreparedRequest, token: str, progress: ProgressFn, used_box: list[str]
    ) -> tuple[Image.Image, str]:
        from huggingface_hub import AsyncInferenceClient
        from huggingface_hub.inference._providers._common import _fetch_inference_provider_mapping

        body = dict(prepared.body)
        provider, model = body.pop("provider"), body["model"]
        progress(Progress(0.0, "asking the Hub which providers serve the model"))
        # Off the event loop: the client looks the mapping up synchronously (then from its cache).
        mapping = await asyncio.to_thread(_fetch_inference_provider_mapping, model)
        served = [entry.provider for entry in mapping]
        if not served:
            raise ProviderUnavailable(self.id, f"no Inference Provider serves {model} right now")
        used = served[0] if provider == "auto" else provider
        if used not in served:
            raise ProviderUnavailable(
                self.id, f"{provider} does not serve {model}; it is served by {', '.join(served)}"
            )
        used_box[0] = used
        progress(Progress(0.1, f"sending to {used}"))
        async with AsyncInferenceClient(
            provider=provider, api_key=token, timeout=REQUEST_TIMEOUT_S
        ) as client:
            image = await client.text_to_image(**body)
        cap = prepared.sent.width * prepared.sent.height * PIXEL_HEADROOM
        return await asyncio.to_thread(checked, image, cap), used


__all__ = ["REDACTED", "HuggingFaceProvider", "classify", "routed_payload", "text_to_image_args"]
