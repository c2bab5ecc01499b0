import random

import pytest

from zimage_ui.errors import InvalidParams
from zimage_ui.params import MAX_LOCAL_SEED, MAX_SEED, GenerationParams, image_seed, parse_params


def test_turbo_defaults():
    params = parse_params(prompt="a red fox")
    assert (params.width, params.height) == (1024, 1024)
    assert params.num_inference_steps == 8
    assert params.guidance_scale == 0.0
    assert params.shift == 3.0
    assert params.num_images == 1
    assert params.seed is None


@pytest.mark.parametrize(
    ("values", "field", "words"),
    [
        ({"prompt": ""}, "prompt", "empty"),
        ({"prompt": "   \n\t"}, "prompt", "empty"),
        ({"prompt": "x" * 4001}, "prompt", "4000"),
        ({"width": 1000}, "width", "multiple of 16; use 992 or 1008"),
        ({"height": 240}, "height", "outside 256..2048"),
        ({"width": 2064}, "width", "outside 256..2048"),
        ({"num_inference_steps": 0}, "num_inference_steps", "1..50"),
        ({"num_inference_steps": 51}, "num_inference_steps", "1..50"),
        ({"shift": 0.5}, "shift", "1..10"),
        ({"shift": 10.5}, "shift", "1..10"),
        ({"num_images": 5}, "num_images", "1..4"),
        ({"seed": -1}, "seed", "outside 0..4294967295 (0..2147483647 for hosted providers)"),
        ({"seed": MAX_LOCAL_SEED + 1}, "seed", "outside"),
        ({"seed": "abc"}, "seed", "not a whole number"),
        ({"seed": 1.5}, "seed", "whole number"),
        ({"guidance_scale": -1}, "guidance_scale", "0..20"),
        ({"sampler": "euler"}, "sampler", "unknown field"),
    ],
)
def test_invalid_input_names_the_field_and_what_to_do(values, field, words):
    with pytest.raises(InvalidParams) as caught:
        parse_params(**{"prompt": "a fox", **values})
    assert field in caught.value.fields
    assert words in caught.value.fields[field]
    assert str(caught.value).startswith(f"{field}: ")


def test_several_wrong_fields_are_all_reported():
    with pytest.raises(InvalidParams) as caught:
        parse_params(prompt="", width=1000, num_images=9)
    assert set(caught.value.fields) == {"prompt", "width", "num_images"}


@pytest.mark.parametrize("seed", [0, 1, 42, MAX_SEED, MAX_SEED + 1, MAX_LOCAL_SEED, "7"])
def test_valid_seeds(seed):
    assert parse_params(prompt="p", seed=seed).seed == int(seed)


def test_a_batch_wraps_within_the_range_its_seed_is_in():
    assert [image_seed(MAX_SEED - 1, i) for i in range(3)] == [MAX_SEED - 1, MAX_SEED, 0]
    assert [image_seed(MAX_LOCAL_SEED, i) for i in range(2)] == [MAX_LOCAL_SEED, 0]
    assert image_seed(3_000_000_000, 1) == 3_000_000_001


def test_a_seed_only_the_local_model_takes_is_refused_by_hosted_providers_not_changed():
    from zimage_ui.providers import PROVIDERS

    params = parse_params(prompt="p", seed=MAX_SEED + 1)
    for provider in PROVIDERS.values():
        if provider.capabilities.local_gpu:
            assert provider.prepare(params).sent.seed == MAX_SEED + 1
            continue
        with pytest.raises(InvalidParams) as caught:
            provider.prepare(params)
        assert caught.value.fields["seed"] == (
            f"2147483648 is above 2147483647, the largest seed {provider.id} takes: use 0..2147483647, "
            "or the local model, which takes seeds up to 4294967295"
        )


def test_empty_seed_means_random():
    assert parse_params(prompt="p", seed="").seed is None


def test_random_seed_is_drawn_in_range_and_kept():
    params = GenerationParams(prompt="p")
    drawn = {params.with_concrete_seed(random.Random(n)).seed for n in range(50)}
    assert all(seed is not None and 1 <= seed <= MAX_SEED for seed in drawn)
    assert len(drawn) > 40
    concrete = params.model_copy(update={"seed": 5})
    assert concrete.with_concrete_seed() is concrete


def test_params_are_frozen():
    params = GenerationParams(prompt="p")
    with pytest.raises(Exception):  # noqa: B017 - pydantic raises ValidationError on frozen models
        params.width = 512  # type: ignore[misc]
