"""Shared pytest fixtures."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.chat_server import ChatServer, chat_server
from tests.emulators import EMULATORS, Emulator, running
from tests.hostile import HostileServer

# Tests never reach a model hub or phone home; apps started by tests inherit these.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")


@pytest.fixture(scope="module")
def no_provider_keys() -> Iterator[None]:
    """Tests decide which keys exist; a key in the real environment must not change results."""
    from zimage_ui.keyguard import key_env_names

    with pytest.MonkeyPatch.context() as patch:
        for name in key_env_names():
            patch.delenv(name, raising=False)
        yield


@pytest.fixture
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch):
    """The tiny model saved as a checkpoint folder, loaded by the `diffusers` provider's real
    path (`ZImagePipeline.from_pretrained`), on the CPU; a fresh slot, so nothing is cached."""
    from zimage_ui.providers import get_provider
    from zimage_ui.providers.local import diffusers_local
    from zimage_ui.providers.local.tiny_model import build_tiny_pipeline

    folder = tmp_path_factory.mktemp("checkpoint") / "z-image-tiny"
    build_tiny_pipeline().save_pretrained(folder)
    monkeypatch.setenv("ZIMAGE_MODEL_ID", str(folder))
    slot = diffusers_local._PipelineSlot(diffusers_local._load_checkpoint)
    monkeypatch.setattr(get_provider("diffusers"), "_slot", slot)
    return folder


# ---- hosted API emulators (tests/emulators) ------------------------------------------------
# `emulators` starts all five loopback emulators once per session, resets them for each test and
# points the app at them: ZIMAGE_<ID>_BASE_URL, the dummy keys they accept, a 0.05 s poll
# interval and a 10 s deadline. `<id>_emulator` gives one of them; `hosted` is parametrized over
# the five and yields (provider, emulator).


@pytest.fixture(scope="session")
def plain_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The app as a visitor of a public instance meets it (no server keys, MCP on, its files in a
    temporary folder), started once and shared by the API and browser tests that need no more;
    each test's browser page or client is a session of its own. Yields its URL."""
    from tests.serving import running_app

    root = tmp_path_factory.mktemp("plain-app")
    env = {
        "GRADIO_MCP_SERVER": "true",
        "ZIMAGE_SERVER_KEYS": "none",
        "ZIMAGE_OUTPUT_DIR": str(root / "outputs"),
    }
    with running_app(env) as url:
        yield url


@pytest.fixture(scope="session")
def emulator_servers() -> Iterator[dict[str, Emulator]]:
    with running() as started:
        yield started


@pytest.fixture
def emulators(emulator_servers: dict[str, Emulator], monkeypatch: pytest.MonkeyPatch) -> dict[str, Emulator]:
    monkeypatch.setenv("ZIMAGE_POLL_INTERVAL_S", "0.05")
    monkeypatch.setenv("ZIMAGE_TIMEOUT_S", "10")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    from zimage_ui.providers.hosted.comfyui_files import forget_probes

    for emulator in emulator_servers.values():
        emulator.reset()
        for name, value in emulator.env().items():
            monkeypatch.setenv(name, value)
    forget_probes()  # what an emulator's ComfyUI said it has was for the test before
    return emulator_servers


@pytest.fixture
def scenario_emulator(emulators: dict[str, Emulator]) -> Emulator:
    return emulators["scenario"]


@pytest.fixture
def inferencesh_emulator(emulators: dict[str, Emulator]) -> Emulator:
    return emulators["inferencesh"]


@pytest.fixture
def aimlapi_emulator(emulators: dict[str, Emulator]) -> Emulator:
    return emulators["aimlapi"]


@pytest.fixture
def evolink_emulator(emulators: dict[str, Emulator]) -> Emulator:
    return emulators["evolink"]


@pytest.fixture
def runpod_emulator(emulators: dict[str, Emulator]) -> Emulator:
    return emulators["runpod"]


@pytest.fixture
def comfyui_emulator(emulators: dict[str, Emulator]) -> Emulator:
    return emulators["comfyui"]


@pytest.fixture(params=list(EMULATORS))
def hosted(request: pytest.FixtureRequest, emulators: dict[str, Emulator]) -> tuple:
    """(provider, its emulator), once per hosted provider; the provider is the registered class
    with a short retry backoff (Retry-After is still honoured)."""
    from zimage_ui.net.http import HttpEngine
    from zimage_ui.net.retry import RetryPolicy
    from zimage_ui.providers import PROVIDERS

    provider = type(PROVIDERS[request.param])(HttpEngine(retry=RetryPolicy(base_s=0.05)))
    return provider, emulators[request.param]


# ---- end of hosted API emulators -----------------------------------------------------------


@pytest.fixture(scope="module")
def hostile_http() -> Iterator[HostileServer]:
    """The hostile test server (`tests/hostile.py`) over plain http: a provider's address."""
    with HostileServer() as hostile:
        yield hostile


@pytest.fixture(scope="module")
def hostile_https() -> Iterator[HostileServer]:
    """The hostile test server over https with a test CA: a visitor's URL must be https."""
    with HostileServer(tls=True) as hostile:
        yield hostile


def ramp_rgb(side: int = 256) -> np.ndarray:
    """The test photo's pixels: a diagonal ramp per channel, each turned another way, so every
    pixel differs from its neighbours and a resize, a crop or a channel swap shows."""
    ramp = (np.indices((side, side)).sum(0) % 256).astype(np.uint8)
    return np.stack([ramp, ramp[::-1], 255 - ramp], -1)


@pytest.fixture(scope="session")
def photo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The test photo (256x256 ramps) as a PNG file."""
    path = tmp_path_factory.mktemp("photo") / "photo.png"
    Image.fromarray(ramp_rgb()).save(path)
    return path


@pytest.fixture
def chat() -> Iterator[ChatServer]:
    """A chat-completions server for the prompt enhancer (`tests.chat_server`)."""
    with chat_server() as server:
        yield server
