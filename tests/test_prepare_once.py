"""Preparing a request checks each thing once, in one place: the seed is made concrete and
checked by `Provider.prepare`, and each provider's mapping refuses what it can't take, once."""

from __future__ import annotations

import sys

import pytest

from zimage_ui.errors import InvalidParams
from zimage_ui.params import GenerationParams, parse_params
from zimage_ui.providers import PROVIDERS
from zimage_ui.providers import base as provider_base
from zimage_ui.providers.hosted import HOSTED_PROVIDERS

HOSTED = [provider.id for provider in HOSTED_PROVIDERS]


@pytest.fixture
def refusals(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every call of `refuse_inputs`, by the label it was given, wherever it was imported."""
    calls: list[str] = []
    real = provider_base.refuse_inputs

    def counted(params, capabilities, label):  # type: ignore[no-untyped-def]
        calls.append(label)
        return real(params, capabilities, label)

    for name, module in list(sys.modules.items()):
        if name.startswith("zimage_ui") and getattr(module, "refuse_inputs", None) is real:
            monkeypatch.setattr(module, "refuse_inputs", counted)
    return calls


@pytest.mark.parametrize("provider_id", HOSTED)
def test_each_hosted_prepare_refuses_inputs_exactly_once(provider_id: str, refusals: list[str]):
    PROVIDERS[provider_id].prepare(parse_params(prompt="a fox", seed=3))
    assert len(refusals) == 1, refusals


@pytest.mark.parametrize("provider_id", HOSTED)
def test_each_hosted_prepare_still_refuses_a_mask(provider_id: str):
    params = parse_params(
        prompt="a fox", seed=3, inputs={"image": "https://img.test/in.png", "mask": "https://img.test/m.png"}
    )
    with pytest.raises(InvalidParams) as caught:
        PROVIDERS[provider_id].prepare(params)
    assert caught.value.fields, provider_id


@pytest.mark.parametrize("provider_id", [*HOSTED, "diffusers-tiny"])
def test_prepare_draws_a_missing_seed_once_and_keeps_a_given_one(
    provider_id: str, monkeypatch: pytest.MonkeyPatch
):
    drawn: list[int] = []
    real = GenerationParams.with_concrete_seed

    def counting(self, rng=None):  # type: ignore[no-untyped-def]
        made = real(self, rng)
        if self.seed is None:
            drawn.append(made.seed)
        return made

    monkeypatch.setattr(GenerationParams, "with_concrete_seed", counting)
    provider = PROVIDERS[provider_id]
    random_run = provider.prepare(parse_params(prompt="a fox"))
    assert len(drawn) == 1 and random_run.params.seed == drawn[0]
    given = provider.prepare(parse_params(prompt="a fox", seed=41))
    assert given.params.seed == 41 and len(drawn) == 1


def test_a_seed_above_a_providers_top_is_refused_for_every_hosted_provider():
    big = parse_params(prompt="a fox", seed=2**32 - 1)
    for provider_id in HOSTED:
        with pytest.raises(InvalidParams, match="is above"):
            PROVIDERS[provider_id].prepare(big)
    assert PROVIDERS["diffusers-tiny"].prepare(big).params.seed == 2**32 - 1
