"""The hosted API providers, in dropdown order (OpenAI-style endpoints: those configured at start)."""

from __future__ import annotations

from zimage_ui.providers.base import Provider
from zimage_ui.providers.hosted.aimlapi import AimlApiProvider
from zimage_ui.providers.hosted.comfyui import ComfyUIProvider
from zimage_ui.providers.hosted.evolink import EvoLinkProvider
from zimage_ui.providers.hosted.huggingface import HuggingFaceProvider
from zimage_ui.providers.hosted.inferencesh import InferenceShProvider
from zimage_ui.providers.hosted.openai_compat import configured_providers
from zimage_ui.providers.hosted.runpod import RunPodProvider
from zimage_ui.providers.hosted.scenario import ScenarioProvider

HOSTED_PROVIDERS: tuple[Provider, ...] = (
    ScenarioProvider(),
    InferenceShProvider(),
    AimlApiProvider(),
    EvoLinkProvider(),
    RunPodProvider(),
    HuggingFaceProvider(),
    ComfyUIProvider(),
    *configured_providers(),  # openai-compatible, and one per ZIMAGE_OPENAI_<NAME>_BASE_URL
)
