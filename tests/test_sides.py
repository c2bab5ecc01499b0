"""One `Side` model reads and writes comparison sides: CLI `--provider`, share links, the page."""

from __future__ import annotations

import pytest
from hypothesis import given, settings

from tests.strategies import comparison_sides, preset_sides
from zimage_ui.compare import SIDE_KEYS, Side, read_side_fields
from zimage_ui.errors import InvalidParams
from zimage_ui.presets import PresetSide
from zimage_ui.sizes import parse_size

PYDANTIC_TEXT = ("validation error", "errors.pydantic.dev", "Input should be", "type=")


def problems(text: str, side_type: type[Side] = Side) -> dict[str, str]:
    with pytest.raises(InvalidParams) as caught:
        side_type.parse(text)
    message = str(caught.value)
    assert not any(words in message for words in PYDANTIC_TEXT), message
    return caught.value.fields


# -- round trips -----------------------------------------------------------------------------


@settings(max_examples=300, deadline=None, database=None)
@given(comparison_sides())
def test_parse_reads_back_what_spec_writes(side: Side):
    assert Side.parse(side.spec()) == side
    assert Side.parse(side.spec(include_label=False)) == side.model_copy(update={"label": ""})


@settings(max_examples=100, deadline=None, database=None)
@given(preset_sides(labels=False))
def test_preset_sides_round_trip_through_their_own_rules(side: PresetSide):
    again = PresetSide.parse(side.spec())
    assert again == side and type(again) is PresetSide


def test_spec_writes_short_names_in_one_order():
    side = Side(provider="runpod", label="fast", height=768, shift=2.5, num_inference_steps=4, width=512)
    assert side.spec() == "runpod:steps=4,shift=2.5,width=512,height=768,label=fast"
    assert side.spec(include_label=False) == "runpod:steps=4,shift=2.5,width=512,height=768"
    assert Side(provider="runpod", label="fast").spec(include_label=False) == "runpod"


@pytest.mark.parametrize("label", ["a, b", "a;b", " padded"])
def test_spec_refuses_a_label_parse_could_not_read_back(label: str):
    side = Side(provider="runpod", label=label)
    with pytest.raises(InvalidParams) as caught:
        side.spec()
    assert "label" in caught.value.fields
    assert side.spec(include_label=False) == "runpod"


# -- reading ---------------------------------------------------------------------------------


def test_overrides_are_read_with_their_short_names():
    side = Side.parse(" runpod : steps = 4 , shift=2.5, size=512X768 , label=a: b=c ")
    assert side == Side(
        provider="runpod", num_inference_steps=4, shift=2.5, width=512, height=768, label="a: b=c"
    )
    assert Side.parse("runpod:size=512x512,") == Side(provider="runpod", width=512, height=512)
    assert Side.parse("runpod:width=512") == Side(provider="runpod", width=512)


def test_blank_values_stay_shared():
    assert Side.parse("runpod:steps=,shift= ,size=,label=") == Side(provider="runpod")
    blank = {"steps": "", "shift": " ", "size": "", "width": "", "height": "", "label": ""}
    assert Side.from_overrides("runpod", blank) == Side(provider="runpod")


@pytest.mark.parametrize(
    ("text", "key", "words"),
    [
        ("runpod:steps=abc", "steps", "'abc' is not a whole number, e.g. steps=4"),
        ("runpod:steps=4.5", "steps", "'4.5' is not a whole number"),
        ("runpod:shift=lots", "shift", "'lots' is not a number, e.g. shift=3"),
        ("runpod:shift=nan", "shift", "'nan' is not a number"),
        ("runpod:shift=inf", "shift", "'inf' is not a number"),
        ("runpod:size=512", "size", "'512' is not WxH, e.g. size=512x512"),
        ("runpod:size=512x512x2", "size", "is not WxH"),
        ("runpod:size=ax b", "size", "is not WxH"),
        ("runpod:width=wide", "width", "'wide' is not a whole number, e.g. width=512"),
        ("runpod:height=1_024", "height", "'1_024' is not a whole number, e.g. height=512"),
        ("runpod:label=a;b", "label", "a label can't hold"),
        (
            "runpod:colour=red",
            "colour",
            "unknown override; use steps, shift, size, width, height, strength, lora_scale or label",
        ),
        ("runpod:num_inference_steps=4", "num_inference_steps", "unknown override"),
        ("runpod:4", "4", "not key=value"),
        ("runpod:steps=4,steps=8", "steps", "given twice"),
        ("runpod:size=512x512,width=256", "size", "not both"),
        ("", "provider", "empty"),
        (":steps=4", "provider", "empty"),
        ("run pod", "provider", "not a provider id"),
    ],
)
def test_each_problem_names_its_key_the_text_and_what_to_type(text: str, key: str, words: str):
    found = problems(text)
    assert key in found, found
    assert words in found[key]


def test_every_bad_key_is_named_at_once():
    found = problems("runpod:steps=x,shift=y,size=z,colour=red")
    assert set(found) == {"steps", "shift", "size", "colour"}
    assert set(problems(":steps=x")) == {"provider", "steps"}


def test_preset_sides_keep_their_rules_under_the_short_names():
    assert "unknown provider 'nope'" in problems("nope", PresetSide)["provider"]
    assert "outside 1..50" in problems("runpod:steps=99", PresetSide)["steps"]
    assert "multiple of 16" in problems("runpod:size=1000x512", PresetSide)["size"]
    assert "100 or fewer" in problems(f"runpod:label={'x' * 101}", PresetSide)["label"]
    assert Side.parse("nope:steps=99") == Side(provider="nope", num_inference_steps=99)  # checked later


def test_titles_use_the_same_short_names():
    side = Side(provider="runpod", num_inference_steps=4, shift=2.5, width=512)
    assert side.title() == "runpod (steps 4, shift 2.5, width 512)"
    assert {"steps", "shift", "width", "height"} <= set(SIDE_KEYS)
    assert Side(provider="runpod", label="fast", width=512).title() == "fast"


# -- the page's side controls ----------------------------------------------------------------


def test_page_fields_become_a_side():
    assert read_side_fields(0, "runpod", " 4 ", "", "512X768") == Side(
        provider="runpod", num_inference_steps=4, width=512, height=768
    )
    assert read_side_fields(1, "runpod", None, None, None) == Side(provider="runpod")
    assert read_side_fields(0, "runpod", 4.0, 2.5, "") == Side(
        provider="runpod", num_inference_steps=4, shift=2.5
    )


def test_page_problems_name_the_side():
    with pytest.raises(InvalidParams) as caught:
        read_side_fields(2, "", "abc", "x", "big")
    assert set(caught.value.fields) == {"side 3 provider", "side 3 steps", "side 3 shift", "side 3 size"}
    assert "'abc' is not a whole number, e.g. steps=4" in caught.value.fields["side 3 steps"]
    assert not any(words in str(caught.value) for words in PYDANTIC_TEXT)


@pytest.mark.parametrize(
    ("text", "size"), [("512x768", (512, 768)), ("512X768", (512, 768)), (" 64 x 32 ", (64, 32))]
)
def test_parse_size_reads_w_x_h(text: str, size: tuple[int, int]):
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["512", "x512", "512x", "512x512x2", "-512x512", "custom", ""])
def test_parse_size_refuses_anything_else(text: str):
    with pytest.raises(ValueError, match="is not WxH"):
        parse_size(text)
