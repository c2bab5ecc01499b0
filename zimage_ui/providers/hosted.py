"""The hosted API providers, in dropdown order."""

from __future__ import annotations

from zimage_ui.providers.aimlapi import AimlApiProvider
from zimage_ui.providers.base import Provider
from zimage_ui.providers.evolink import EvoLinkProvider
from zimage_ui.providers.inferencesh import InferenceShProvider
from zimage_ui.providers.runpod import RunPodProvider
from zimage_ui.providers.scenario import ScenarioProvider

HOSTED_PROVIDERS: tuple[Provider, ...] = (
    ScenarioProvider(),
    InferenceShProvider(),
    AimlApiProvider(),
    EvoLinkProvider(),
    RunPodProvider(),
)
