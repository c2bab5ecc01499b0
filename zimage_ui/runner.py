"""Run one set of parameters on one or many providers: prepare, run, encode with provenance.

Every failure becomes an `Outcome.error` message (never a traceback, never a key),
so one failing provider never stops the others.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from zimage_ui.errors import ZImageError
from zimage_ui.keyguard import known_secrets, scrub
from zimage_ui.metadata import png_bytes
from zimage_ui.params import GenerationParams
from zimage_ui.providers import get_provider
from zimage_ui.providers.base import (
    CancelToken,
    KeyRing,
    PreparedRequest,
    Progress,
    RunResult,
    ignore_progress,
)

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
) -> Outcome:
    keys = keys or KeyRing()
    started = time.perf_counter()
    outcome = Outcome(provider=provider_id)
    try:
        provider = get_provider(provider_id)
        status = provider.availability(keys)
        if not status.usable:
            outcome.error = f"{provider_id}: not usable here: {status.reason}"
            return outcome
        outcome.prepared = provider.prepare(params)
        result = await provider.run(outcome.prepared, keys=keys, progress=progress, cancel=cancel)
        outcome.result = result
        outcome.pngs = [
            png_bytes(image, outcome.prepared.params, result.sent, provider_id) for image in result.images
        ]
    except ZImageError as exc:
        outcome.error = str(exc)
    except Exception as exc:  # a bug or an unmapped library error: still a message, not a crash
        log.exception("unexpected error from provider %s", provider_id)
        outcome.error = scrub(
            f"{provider_id}: unexpected error ({type(exc).__name__}: {exc}); "
            "try again, and report it if it keeps happening",
            known_secrets(keys.secrets()),
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


def output_name(outcome: Outcome, index: int) -> str:
    seed = outcome.seed if outcome.seed is not None else "noseed"
    return f"{outcome.provider}-{seed}-{index}.png"


def save_outcome(outcome: Outcome, out_dir: Path) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for index, data in enumerate(outcome.pngs):
        path = out_dir / output_name(outcome, index)
        path.write_bytes(data)
        paths.append(path)
    return paths
