"""The hosted API providers, in dropdown order (OpenAI-style endpoints: those configured at start)."""

from __future__ import annotations

from zimage_ui.providers.aimlapi import AimlApiProvider
from zimage_ui.providers.base import Provider
from zimage_ui.providers.comfyui import ComfyUIProvider
from zimage_ui.providers.evolink import EvoLinkProvider
from zimage_ui.providers.huggingface import HuggingFaceProvider
from zimage_ui.providers.inferencesh import InferenceShProvider
from zimage_ui.providers.openai_compat import configured_providers
from zimage_ui.providers.runpod import RunPodProvider
from zimage_ui.providers.scenario import ScenarioProvider

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
