"""Inputs that used to escape as an "unexpected" error or a bare 500 now get a message naming the
field or the provider, and say what to do."""

from __future__ import annotations

import asyncio
import inspect
import re
from typing import Any

import gradio as gr
import pytest

from zimage_ui.errors import PresetError
from zimage_ui.presets import import_preset
from zimage_ui.providers import PROVIDERS
from zimage_ui.providers.base import KeyRing
from zimage_ui.ui.generate_tab import generate
from zimage_ui.ui.inputs_panel import api_image_inputs
from zimage_ui.ui.sweep_tab import sweep


def call(function: Any, **arguments: Any) -> None:
    result = function(**arguments)
    if inspect.isawaitable(result):
        asyncio.run(result)


@pytest.mark.parametrize(
    "document",
    [
        '{"prompt": "a", "provider": "diffusers-tiny", "seed": ' + "9" * 5000 + "}",
        "prompt: a\nprovider: diffusers-tiny\nseed: " + "9" * 5000,
    ],
    ids=["json", "yaml"],
)
def test_a_preset_number_of_thousands_of_digits_is_refused(document: str) -> None:
    with pytest.raises(PresetError, match="thousands of digits"):
        import_preset(document)


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
@pytest.mark.parametrize("field", ["width", "steps", "num_images"])
def test_a_number_that_is_not_finite_names_its_field(field: str, value: float) -> None:
    with pytest.raises(gr.Error, match=rf"{field}: '(nan|inf)' is not a whole number"):
        call(generate, provider="diffusers-tiny", prompt="x", **{field: value})


@pytest.mark.parametrize(
    ("kind", "values", "says"),
    [
        ("seed", "0-99999999999999999999999999 [3]", r"Seed: \d+: seed: \d+ is outside 0\.\.4294967295"),
        ("shift", "inf", "not a finite number"),
        ("shift", "1e308", "outside 1..10"),
    ],
)
def test_a_sweep_value_out_of_every_range_is_refused_before_any_work(
    kind: str, values: str, says: str
) -> None:
    with pytest.raises(gr.Error, match="Check the sweep") as caught:
        call(
            sweep, provider="diffusers-tiny", prompt="x", x_kind=kind, x_values=values, width=256, height=256
        )
    assert re.search(says, caught.value.message), caught.value.message


def test_an_image_input_error_names_the_field_without_pydantics_link() -> None:
    from zimage_ui.errors import InvalidParams

    with pytest.raises(InvalidParams) as caught:
        api_image_inputs(None, "", None, "owner/ink 99")
    assert "loras.0.scale" in caught.value.fields and "-4..4" in caught.value.fields["loras.0.scale"]
    assert "errors.pydantic.dev" not in str(caught.value)


def test_an_api_root_with_a_query_string_is_refused_naming_its_variable(monkeypatch) -> None:
    monkeypatch.setenv("RUNPOD_API_KEY", "rp-0123456789abcdef")
    monkeypatch.setenv("ZIMAGE_RUNPOD_BASE_URL", "https://proxy.example.test/v2/z?token=abc")
    status = PROVIDERS["runpod"].availability(KeyRing())
    assert not status.usable and "ZIMAGE_RUNPOD_BASE_URL has a query string" in status.reason
    monkeypatch.setenv("ZIMAGE_OPENAI_BASE_URL", "http://gpu.example.test:30000/v1#x")
    assert (
        "ZIMAGE_OPENAI_BASE_URL has a query string"
        in PROVIDERS["openai-compatible"].availability(KeyRing()).reason
    )
