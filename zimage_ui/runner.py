"""Run one set of parameters on one or many providers: prepare, run, encode with provenance.

Every failure becomes an `Outcome.error` message (never a traceback, never a key),
so one failing provider never stops the others. Expected failures are logged as one
line; only a real bug logs a traceback, scrubbed of every key. PNG encoding runs off
the event loop.
"""

from __future__ import annotations

import asyncio
import logging
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from zimage_ui.cancel import CancelToken
from zimage_ui.errors import Cancelled, ProviderUnavailable, ZImageError, failure_kind
from zimage_ui.keyguard import known_secrets, scrub
from zimage_ui.metadata import png_bytes, spliceable_png
from zimage_ui.params import GenerationParams
from zimage_ui.providers import get_provider
from zimage_ui.providers.base import (
    KeyRing,
    PreparedRequest,
    Progress,
    RunResult,
    SentValues,
    ignore_progress,
)
from zimage_ui.runs import hosted_slot

log = logging.getLogger(__name__)

SidedProgress = Callable[[str, Progress], None]


@dataclass
class Outcome:
    """What one provider produced: PNGs with provenance, or a message saying what went wrong."""

    provider: str
    prepared: PreparedRequest | None = None
    result: RunResult | None = None
    pngs: list[bytes] = field(default_factory=list)
    error: str | None = None
    elapsed_s: float = 0.0
    stopped: bool = False  # the user's Stop ended it: not a failure
    failure: str | None = None  # the kind of failure (`errors.failure_kind`), for the providers' view

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def seed(self) -> int | None:
        return self.prepared.sent.seed if self.prepared else None


async def generate_one(
    provider_id: str,
    params: GenerationParams,
    *,
    keys: KeyRing | None = None,
    progress: Callable[[Progress], None] = ignore_progress,
    cancel: CancelToken | None = None,
    hosted_gate: asyncio.Semaphore | None = None,
) -> Outcome:
    """One provider, one request. `hosted_gate` bounds the hosted requests a session has in flight."""
    keys = keys or KeyRing()
    started = time.perf_counter()
    outcome = Outcome(provider=provider_id)
    try:
        provider = get_provider(provider_id)
        status = provider.availability(keys)
        if not status.usable:
            outcome.error = f"{provider_id}: not usable here: {status.reason}"
            outcome.failure = failure_kind(ProviderUnavailable(provider_id, status.reason))
            return outcome
        outcome.prepared = provider.prepare(params)
        gate = None if provider.capabilities.local_gpu else hosted_gate
        waiting = Progress(None, "waiting: this session has the most hosted requests allowed in flight")
        async with hosted_slot(gate, lambda: progress(waiting)):
            result = await provider.run(outcome.prepared, keys=keys, progress=progress, cancel=cancel)
        outcome.result = result
        if tuple(result.notes) != outcome.prepared.notes:  # notes the run itself learned (a fallback)
            outcome.prepared = replace(outcome.prepared, notes=tuple(result.notes))
        prepared = outcome.prepared

        def encode() -> list[bytes]:
            return [
                png_bytes(image, *image_provenance(prepared.params, result, index), provider_id)
                for index, image in enumerate(result.images)
            ]

        # A provider's PNG only has its text chunks spliced (microseconds); encoding pixels is
        # CPU-heavy and runs off the event loop.
        spliced = all(spliceable_png(image) is not None for image in result.images)
        outcome.pngs = encode() if spliced else await asyncio.to_thread(encode)
    except Cancelled as exc:
        outcome.error, outcome.stopped = str(exc), True
    except ZImageError as exc:
        outcome.error, outcome.failure = str(exc), failure_kind(exc)
        log.warning("%s", scrub(outcome.error, known_secrets(keys.secrets())))
    except Exception as exc:  # a bug or an unmapped library error: still a message, not a crash
        known = known_secrets(keys.secrets())
        log.error(
            "unexpected error from %s\n%s",
            provider_id,
            scrub("".join(traceback.format_exception(exc)), known),
        )
        outcome.failure = failure_kind(exc)
        outcome.error = scrub(
            f"{provider_id}: unexpected error ({type(exc).__name__}: {exc}); "
            "try again, and report it if it keeps happening",
            known,
        )
    finally:
        outcome.elapsed_s = time.perf_counter() - started
    return outcome


async def generate_many(
    provider_ids: list[str],
    params: GenerationParams,
    *,
    keys: KeyRing | None = None,
    progress: SidedProgress | None = None,
    cancel: CancelToken | None = None,
) -> list[Outcome]:
    """The same params (one concrete seed) on every provider at once; results in input order."""
    params = params.with_concrete_seed()
    report = progress or (lambda _side, _update: None)

    def side_progress(side: str) -> Callable[[Progress], None]:
        return lambda update: report(side, update)

    return list(
        await asyncio.gather(
            *(
                generate_one(pid, params, keys=keys, progress=side_progress(pid), cancel=cancel)
                for pid in provider_ids
            )
        )
    )


def image_provenance(
    params: GenerationParams, result: RunResult, index: int
) -> tuple[GenerationParams, SentValues]:
    """What image `index` records: as a run of its own (its seed, one image) where its seed is
    known, so it can be made again alone; else the batch it came from."""
    seed = result.image_seed(index)
    if params.num_images == 1 or seed is None:
        return params, result.sent
    return params.for_image(index), replace(result.sent, seed=seed)


def output_name(outcome: Outcome, index: int, prefix: str = "") -> str:
    """`{prefix}{provider}-{seed}-{index}.png`: the prefix (a side or cell) keeps names unique in a run."""
    seed = outcome.seed if outcome.seed is not None else "noseed"
    return f"{prefix}{outcome.provider}-{seed}-{index}.png"


def save_outcome(outcome: Outcome, out_dir: Path, prefix: str = "") -> list[Path]:
    """Write the PNGs into `out_dir`; an existing file is never overwritten (`-2`, `-3`... instead)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    return [
        _write_new(out_dir / output_name(outcome, i, prefix), data) for i, data in enumerate(outcome.pngs)
    ]


def _write_new(path: Path, data: bytes) -> Path:
    for attempt in range(1, 10_000):
        candidate = path if attempt == 1 else path.with_stem(f"{path.stem}-{attempt}")
        try:
            with candidate.open("xb") as file:
                file.write(data)
        except FileExistsError:
            continue
        return candidate
    raise FileExistsError(f"too many files named like {path.name} in {path.parent}")
