"""Loopback emulators of the hosted Z-Image-Turbo APIs and serving engines, for tests and the page.

    with running("runpod") as emulators:
        emulators["runpod"].behaviour.polls_before_done = 3
        ...  # point ZIMAGE_RUNPOD_BASE_URL at emulators["runpod"].base_url

`python -m tests.emulators` starts them all on fixed ports and prints the variables to export.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from tests.emulators.aimlapi import AimlApiEmulator
from tests.emulators.base import Behaviour, Emulator, Recorded
from tests.emulators.comfyui import ComfyUIEmulator
from tests.emulators.evolink import EvoLinkEmulator
from tests.emulators.inferencesh import InferenceShEmulator
from tests.emulators.openai_images import OpenAIImagesEmulator
from tests.emulators.runpod import RunPodEmulator
from tests.emulators.scenario import ScenarioEmulator

EMULATORS: dict[str, type[Emulator]] = {
    "scenario": ScenarioEmulator,
    "inferencesh": InferenceShEmulator,
    "aimlapi": AimlApiEmulator,
    "evolink": EvoLinkEmulator,
    "runpod": RunPodEmulator,
    "comfyui": ComfyUIEmulator,
    "openai-compatible": OpenAIImagesEmulator,
}


@contextmanager
def running(*provider_ids: str, port_base: int | None = None) -> Iterator[dict[str, Emulator]]:
    """Start the named emulators (all five when none is named) on `port_base`, `port_base + 1`, ...
    or on free ports when `port_base` is None or 0."""
    started: dict[str, Emulator] = {}
    try:
        for offset, provider_id in enumerate(provider_ids or tuple(EMULATORS)):
            emulator = EMULATORS[provider_id]()
            started[provider_id] = emulator
            emulator.start(port_base + offset if port_base else 0)
        yield started
    finally:
        for emulator in started.values():  # signal all first: each takes ~0.1 s to wind down
            emulator.signal_stop()
        for emulator in started.values():
            emulator.stop()


def export_lines(emulators: dict[str, Emulator]) -> list[str]:
    """Shell lines that point the app at the emulators, with the dummy keys they accept."""
    return [
        f"export {name}={value}" for emulator in emulators.values() for name, value in emulator.env().items()
    ]


__all__ = ["EMULATORS", "Behaviour", "Emulator", "Recorded", "export_lines", "running"]
