"""ZeroGPU as it really behaves, read from the `spaces` package (0.51.3: `spaces/zero/decorator.py`,
`wrappers.py`, `torch/aoti.py`) and the Hub's ZeroGPU docs:

- `import spaces` patches torch so that `.to("cuda")` works without a GPU; when the app launches
  (`gr.Blocks.launch`) it packs every tensor moved to "cuda" and reports the `@spaces.GPU`
  functions. So the pipeline is loaded and moved to "cuda" before launch, and the function is
  decorated at import.
- A call schedules a GPU for `duration` seconds (a number, or a callable given the call's own
  arguments; 60 when unset), forks a worker (multiprocessing's "fork") or reuses an idle one, and
  pickles (args, kwargs) onto a queue: a closure, a lock or an Event fails right there.
- A generator function's yields are pickled back one by one and re-yielded by the caller's
  generator. Closing the caller's generator (GeneratorExit at its yield) sets the worker's stop
  event; the worker checks it after each value and closes the task's generator; close() returns
  once the worker has finished with the task. That is how Stop crosses the fork: `drain` closes.
- An exception in the worker reaches the caller as `gr.Error(<its class name>)` only (a gr.Error
  keeps its message): failures cross as yielded values instead, with their messages.
- Gradio progress and tqdm inside the worker are relayed by patching Gradio's queue (marked "not
  working properly" for generators); progress crosses as yielded values instead.
- torch.compile (JIT) is not supported; ahead-of-time compiled blocks are:
  `spaces.aoti_blocks_load(module, repo_id, variant=None)` downloads `<Block>[.variant]/package.pt2`
  for each class name in `module._repeated_blocks` and replaces the forward of every such
  submodule. The official Z-Image Space sets `_repeated_blocks` on `transformer.layers` (the
  refiner blocks are ZImageTransformerBlocks too, with other shapes) and loads "zerogpu-aoti/Z-Image"
  with variant "fa3" (FlashAttention-3, Hopper: ZeroGPU's H200).
"""

from __future__ import annotations

import logging
import math
import queue
import threading
from collections.abc import Callable, Generator, Iterator
from typing import Any, TypeVar

from zimage_ui import env
from zimage_ui.cancel import CancelToken
from zimage_ui.providers.base import ProgressFn

log = logging.getLogger(__name__)

T = TypeVar("T")
Event = tuple[str, Any]  # ("progress", Progress), then one of ("images", [...]), ("stopped", text),
# ("failed", text), ("error", text): plain picklable values, the only things that cross the fork

AOTI_REPO = "zerogpu-aoti/Z-Image"
AOTI_VARIANT = "fa3"
AOTI_BLOCK = "ZImageTransformerBlock"
FULL_SIZE = {"dim": 3840, "n_layers": 30}  # the Z-Image transformer the AoTI blocks were compiled for

# How long one call asks to hold ZeroGPU's GPU (the default "large" size: an H200 MIG slice, 60
# of its 132 SMs). The shorter the ask, the sooner ZeroGPU schedules it and the less of a visitor's
# quota its pre-check demands; too short, and the call may be cut off. Estimates with margin, to be
# replaced by measurements on a lent H200 (benchmarks/):
WORKER_START_S = 10.0  # a fresh fork, the packed weights onto the attached GPU, the text encoder
STEP_S_PER_MEGAPIXEL = 0.5  # one Turbo pass at 1024x1024 (4096 image tokens)
DECODE_S_PER_MEGAPIXEL = 1.0  # the VAE decode
MIN_GPU_S = 15  # 8 steps at 1024x1024: the common request
MAX_GPU_S = 120  # the most one call asks for: beyond a visitor tier's per-call cap is "illegal"


def on_zero_gpu() -> bool:
    """A Hugging Face ZeroGPU Space (`spaces` reads the same variable)."""
    return env.raw("SPACES_ZERO_GPU").lower() in {"1", "t", "true"}


def _spaces() -> Any:
    try:
        import spaces
    except ImportError:
        log.warning("SPACES_ZERO_GPU is set but the spaces package is missing: no GPU will be attached")
        return None
    return spaces


def gpu_function(task: Callable[..., Any], duration: Callable[..., int]) -> Callable[..., Any] | None:
    """`spaces.GPU(task, duration=duration)` on ZeroGPU; None elsewhere (call in-process).

    Call it at import: ZeroGPU lists its functions when the app launches.
    """
    if not on_zero_gpu():
        return None
    spaces = _spaces()
    return None if spaces is None else spaces.GPU(task, duration=duration)


def estimate_seconds(width: int, height: int, steps: int, images: int) -> float:
    """How long a request holds the GPU: start-up, then each image's steps and decode.

    A step's cost grows with the image tokens (the pixels), and faster than that (attention is
    quadratic in them): a quarter more per extra megapixel.
    """
    megapixels = width * height / 2**20
    step = STEP_S_PER_MEGAPIXEL * megapixels * (1 + (megapixels - 1) / 4)
    return WORKER_START_S + images * (steps * step + DECODE_S_PER_MEGAPIXEL * megapixels)


def gpu_seconds(width: int, height: int, steps: int, images: int) -> int:
    """The `duration` to reserve: the estimate, at least MIN_GPU_S, at most MAX_GPU_S."""
    estimate = estimate_seconds(width, height, steps, images)
    return int(min(MAX_GPU_S, max(MIN_GPU_S, math.ceil(estimate))))


_DONE = object()


def relay(work: Callable[[ProgressFn, CancelToken], T]) -> Generator[Event, None, T]:
    """Run `work(report, stop)` in a thread of this (worker) process: yield ("progress", update) for
    each update it reports, then return its result (or raise its error).

    Closed early (ZeroGPU closes it on the caller's Stop), it sets `stop`, which the pipeline's
    step callback sees, and returns once the work has ended.
    """
    updates: queue.SimpleQueue[Any] = queue.SimpleQueue()
    stop = CancelToken()
    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["value"] = work(updates.put, stop)
        except BaseException as exc:  # handed to the generator, raised there
            outcome["error"] = exc
        finally:
            updates.put(_DONE)

    thread = threading.Thread(target=target, name="zerogpu-pipeline", daemon=True)
    thread.start()
    try:
        while (update := updates.get()) is not _DONE:
            yield ("progress", update)
    finally:
        stop.cancel()  # a no-op once the work is done; on close, the work stops at its next step
        thread.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def drain(events: Iterator[Event], stop: Any, progress: ProgressFn) -> Event:
    """The caller's side: each progress update to `progress`, the final event returned.

    `stop.cancelled` is looked at after every event; once set, the events are closed, which
    ZeroGPU turns into the worker's stop event (see the module doc): the return waits for it.
    """
    final: Event = ("error", "the ZeroGPU worker ended without a result")
    try:
        for kind, value in events:
            if kind == "progress":
                progress(value)
            else:
                final = (kind, value)
            if stop.cancelled and kind == "progress":
                return ("stopped", "stopped")
        return final
    finally:
        close = getattr(events, "close", None)
        if close is not None:
            close()


def aoti_blocks(pipeline: Any, device: str) -> list[str]:
    """Load ZeroGPU's ahead-of-time compiled transformer blocks (FlashAttention-3) as the official
    Z-Image Space does; a note for anything that stops it, and the pipeline is left as it was.

    `ZIMAGE_AOTI=0` turns it off.
    """
    if env.raw("ZIMAGE_AOTI") == "0":
        return []
    if device != "cuda":
        return [f"ZeroGPU AoTI blocks not loaded: the pipeline runs on {device}"]
    spaces = _spaces()
    load = getattr(spaces, "aoti_blocks_load", None)
    if load is None:
        return ["ZeroGPU AoTI blocks not loaded: this spaces package has no aoti_blocks_load"]
    transformer = pipeline.transformer
    config = transformer.config
    if any(config.get(key) != value for key, value in FULL_SIZE.items()):
        return [
            "ZeroGPU AoTI blocks not loaded: they are compiled for the full-size Z-Image "
            f"transformer, and {config.get('dim')}x{config.get('n_layers')} is not it"
        ]
    layers = transformer.layers
    had = layers.__dict__.get("_repeated_blocks", None)
    try:
        layers._repeated_blocks = [AOTI_BLOCK]  # the main layers only, not the refiners
        load(layers, AOTI_REPO, variant=AOTI_VARIANT)
    except Exception as exc:  # no Hub, no `kernels` package, a mismatched package: run uncompiled
        log.warning("ZeroGPU AoTI blocks not loaded", exc_info=True)
        if had is None:
            layers.__dict__.pop("_repeated_blocks", None)
        return [f"ZeroGPU AoTI blocks not loaded ({type(exc).__name__}: {exc}); running uncompiled"]
    log.info("ZeroGPU AoTI blocks loaded from %s (%s)", AOTI_REPO, AOTI_VARIANT)
    return []
