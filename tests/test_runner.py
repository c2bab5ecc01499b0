"""The runner turns every failure into a message: never a traceback, never a key."""

import pytest

from zimage_ui.params import GenerationParams
from zimage_ui.providers import PROVIDERS
from zimage_ui.providers.base import Capabilities, KeyRing, PreparedRequest, Provider, SentValues
from zimage_ui.runner import generate_many

SECRET = "sk-live-0123456789abcdef"


class Exploding(Provider):
    id = "exploding"
    label = "raises an unexpected error"
    capabilities = Capabilities(size_rule="any", steps_range=None)
    key_names = ("EXPLODING_API_KEY",)

    def prepare_seeded(self, params: GenerationParams) -> PreparedRequest:
        params = params.with_concrete_seed()
        sent = SentValues(params.width, params.height, None, params.seed or 1)
        return PreparedRequest(self.id, params, sent, "POST", "http://127.0.0.1:9/none", {})

    async def run(self, prepared, *, keys, progress=None, cancel=None):
        raise RuntimeError(f"library bug echoing the header Bearer {keys.get('EXPLODING_API_KEY')}")


@pytest.fixture
def exploding(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setitem(PROVIDERS, "exploding", Exploding())
    return "exploding"


async def test_unexpected_error_is_a_message_without_the_key(exploding: str):
    params = GenerationParams(prompt="fox", width=256, height=256, seed=4, num_inference_steps=2)
    keys = KeyRing({"EXPLODING_API_KEY": SECRET})
    tiny, broken = await generate_many(["diffusers-tiny", exploding], params, keys=keys)
    assert tiny.ok and tiny.pngs
    assert broken.error.startswith("exploding: unexpected error (RuntimeError")
    assert SECRET not in broken.error and "***" in broken.error
    assert broken.seed == tiny.seed == 4
