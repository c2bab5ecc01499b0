"""A provider's answer in any shape is read, refused as "not the documented shape"
(`Unexpected`) or reported as the API's own refusal (`Refused`), never as a Python error: with
the broad catch around answers narrowed to `Unexpected`, an AttributeError or TypeError now
means a bug here, and is reported as one."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zimage_ui.errors import ZImageError
from zimage_ui.net.answers import Unexpected
from zimage_ui.providers.hosted import (
    aimlapi,
    base,
    comfyui,
    evolink,
    inferencesh,
    openai_compat,
    runpod,
    scenario,
)
from zimage_ui.providers.hosted.base import Refused

KEYS = [
    "status",
    "data",
    "task",
    "output",
    "images",
    "image",
    "url",
    "uri",
    "id",
    "asset",
    "assets",
    "job",
    "billing",
    "cuCost",
    "error",
    "result",
    "results",
    "usage",
    "metrics",
    "progress",
    "executionTime",
    "cost",
    "b64_json",
    "outputs",
    "exec_info",
    "queue_remaining",
    "p1",
    "success",
]
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=6),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(KEYS), inner, max_size=4),
    max_leaves=12,
)
READERS: dict[str, Callable[[Any], Any]] = {
    "aimlapi.tokens_cost": aimlapi.tokens_cost,
    "base.image_items": base.image_items,
    "comfyui.node_errors_text": comfyui.node_errors_text,
    "comfyui.history_entry": lambda data: comfyui.history_entry(data, "p1"),
    "comfyui.queue_remaining": comfyui.queue_remaining,
    "evolink.task_state": evolink.task_state,
    "evolink.result_urls": evolink.result_urls,
    "inferencesh.created_file": inferencesh.created_file,
    "inferencesh.task_state": lambda data: inferencesh.task_state(inferencesh.unwrap(data)),
    "inferencesh.image_urls": lambda data: inferencesh.image_urls(inferencesh.unwrap(data)),
    "openai_compat.engine_seconds": openai_compat.engine_seconds,
    "runpod.job_state": runpod.job_state,
    "runpod.image_url": runpod.image_url,
    "runpod.job_cost": runpod.job_cost,
    "runpod.timing_s": lambda data: runpod.timing_s(data, "executionTime"),
    "scenario.imported_asset": scenario.imported_asset,
    "scenario.job_state": scenario.job_state,
    "scenario.asset_ids": scenario.asset_ids,
    "scenario.job_cost": scenario.job_cost,
    "scenario.asset_url": scenario.asset_url,
}


@pytest.mark.parametrize("name", list(READERS))
def test_a_reader_takes_any_json_or_says_unexpected(name: str):
    reader = READERS[name]

    @settings(max_examples=150, deadline=None, database=None)
    @given(JSON)
    def read(data: Any) -> None:
        try:
            reader(data)
        except (Unexpected, Refused, ZImageError):  # not the documented shape; or the API's own refusal
            pass
        except Exception as exc:
            raise AssertionError(f"{name}({data!r}) raised {exc!r}") from None

    read()


def test_the_check_catches_a_reader_that_trusts_the_shape():
    READERS["a trusting reader"] = lambda data: data.get("status")
    try:
        with pytest.raises(AssertionError, match="raised AttributeError"):
            test_a_reader_takes_any_json_or_says_unexpected("a trusting reader")
    finally:
        del READERS["a trusting reader"]
