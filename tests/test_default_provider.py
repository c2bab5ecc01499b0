"""The provider the page starts on: the GPU's model, else a hosted API a visitor can use, else tiny."""

import pytest

import zimage_ui.providers as providers
from zimage_ui.keyguard import key_env_names


@pytest.fixture(autouse=True)
def no_gpu_and_no_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(providers, "gpu_available", lambda: False)
    for name in key_env_names():
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("SPACE_ID", raising=False)
    monkeypatch.delenv("ZIMAGE_SERVER_KEYS", raising=False)


def test_with_nothing_set_the_tiny_model_is_the_default():
    assert providers.default_provider_id() == "diffusers-tiny"


def test_a_hosted_key_makes_that_provider_the_default_without_a_gpu(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("RUNPOD_API_KEY", "rp-test-key-0123456789")
    assert providers.default_provider_id() == "runpod"
    monkeypatch.setenv("AIML_API_KEY", "aiml-test-key-0123456789")
    assert providers.default_provider_id() == "aimlapi"  # the first usable one, in dropdown order


def test_keys_visitors_may_not_use_do_not_count(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("RUNPOD_API_KEY", "rp-test-key-0123456789")
    monkeypatch.setenv("SPACE_ID", "someone/zimage")  # a public Space: visitors bring their own keys
    assert providers.default_provider_id() == "diffusers-tiny"


def test_a_gpu_makes_the_real_model_the_default(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("RUNPOD_API_KEY", "rp-test-key-0123456789")
    monkeypatch.setattr(providers, "gpu_available", lambda: True)
    assert providers.default_provider_id() == "diffusers"
