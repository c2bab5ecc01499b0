"""The provider interface: prepare (pure) then run (I/O), plus the values they exchange."""

from __future__ import annotations

import abc
import asyncio
import os
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from PIL import Image

from zimage_ui.params import GenerationParams

REDACTED = "***"


@dataclass(frozen=True)
class Capabilities:
    """What a provider can do; the UI greys out the rest."""

    size_rule: str
    steps_range: tuple[int, int] | None  # None: the provider picks the steps itself
    shift: bool = False
    negative_prompt: bool = False
    guidance: bool = False
    max_images: int = 1
    cost_reporting: bool = False
    img2img: bool = False
    lora: bool = False
    local_gpu: bool = False  # runs on this machine's one GPU: shares one queue


@dataclass(frozen=True)
class Availability:
    usable: bool
    reason: str = ""  # why not, and what to do


@dataclass(frozen=True)
class SentValues:
    """The values a provider really receives, after snapping and clamping."""

    width: int
    height: int
    steps: int | None  # None: "provider default"
    seed: int
    shift: float | None = None

    @property
    def steps_label(self) -> str:
        return "provider default" if self.steps is None else str(self.steps)


@dataclass(frozen=True)
class PreparedRequest:
    """Exactly what will be sent, with notes on anything adjusted. Holds no secret."""

    provider: str
    params: GenerationParams  # seed always concrete
    sent: SentValues
    method: str
    url: str
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)  # display copy: secrets redacted
    notes: tuple[str, ...] = ()

    def display(self) -> dict[str, Any]:
        """A JSON-able view for the "What was sent" panel."""
        return {
            "provider": self.provider,
            "request": f"{self.method} {self.url}",
            "headers": self.headers,
            "body": self.body,
            "sent": {
                "size": f"{self.sent.width}x{self.sent.height}",
                "steps": self.sent.steps_label,
                "seed": self.sent.seed,
            },
            "notes": list(self.notes),
        }


@dataclass(frozen=True)
class Cost:
    amount: float
    unit: str  # "USD", "compute units", "tokens"

    def __str__(self) -> str:
        if self.unit == "USD":
            return f"${self.amount:.4f}"
        return f"{self.amount:g} {self.unit}"


@dataclass
class RunResult:
    provider: str
    images: list[Image.Image]
    seed: int
    sent: SentValues
    elapsed_s: float
    queue_s: float | None = None
    run_s: float | None = None
    cost: Cost | None = None
    job_id: str | None = None
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Progress:
    fraction: float | None  # 0..1 where known
    message: str
    step: int | None = None
    total: int | None = None
    preview: Image.Image | None = None


ProgressFn = Callable[[Progress], None]


def ignore_progress(_: Progress) -> None:
    return None


class CancelToken:
    """Set by Stop; checked by the pipeline callback (a thread) and the HTTP engine (async)."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    async def wait(self, poll_s: float = 0.05) -> None:
        """Return once cancelled (for racing against network waits)."""
        while not self._event.is_set():
            await asyncio.sleep(poll_s)


class KeyRing:
    """Keys by their environment variable name: the environment overlaid by session keys."""

    def __init__(self, overrides: Mapping[str, str] | None = None, *, use_env: bool = True) -> None:
        self._overrides = {k: v for k, v in (overrides or {}).items() if v and v.strip()}
        self._use_env = use_env

    def get(self, name: str) -> str | None:
        value = self._overrides.get(name) or (os.environ.get(name) if self._use_env else None)
        return value.strip() if value and value.strip() else None

    def missing(self, names: tuple[str, ...]) -> list[str]:
        return [name for name in names if not self.get(name)]

    def secrets(self) -> list[str]:
        """Every key value known, so output can be scrubbed of them."""
        return [v for v in self._overrides.values() if v]

    def __repr__(self) -> str:  # never show values
        return f"KeyRing({sorted(self._overrides)})"


class Provider(abc.ABC):
    """One place an image can be made. Subclasses are registered in `providers/__init__`."""

    id: str
    label: str
    capabilities: Capabilities
    key_names: tuple[str, ...] = ()

    def availability(self, keys: KeyRing) -> Availability:
        missing = keys.missing(self.key_names)
        if missing:
            return Availability(False, f"set {' and '.join(missing)} or enter the key on the page")
        return Availability(True)

    def warm_up(self) -> None:  # noqa: B027 - optional hook, most providers need none
        """Start any slow one-time set-up in the background (no-op for hosted APIs)."""

    @abc.abstractmethod
    def prepare(self, params: GenerationParams) -> PreparedRequest:
        """Pure: map canonical params (with a concrete seed) to what will be sent."""

    @abc.abstractmethod
    async def run(
        self,
        prepared: PreparedRequest,
        *,
        keys: KeyRing,
        progress: ProgressFn = ignore_progress,
        cancel: CancelToken | None = None,
    ) -> RunResult:
        """Do the work; raise a `ProviderError` subclass with a clear message on failure."""
