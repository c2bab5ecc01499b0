"""Pure reading of each hosted API's answers: statuses, images, cost, timings, envelopes."""

from __future__ import annotations

import pytest

from zimage_ui.net.answers import Unexpected
from zimage_ui.providers.base import Cost
from zimage_ui.providers.hosted import aimlapi, evolink, inferencesh, runpod, scenario
from zimage_ui.providers.hosted.base import JobState, Refused, image_items

# -- Scenario ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "phase"),
    [
        ("pending", "running"),
        ("warming-up", "running"),
        ("queued", "running"),
        ("in-progress", "running"),
        ("finalizing", "running"),
        ("success", "done"),
        ("failure", "failed"),
        ("failed", "failed"),
        ("canceled", "cancelled"),
    ],
)
def test_scenario_statuses(status: str, phase: str) -> None:
    assert scenario.job_state({"job": {"status": status, "progress": 0.5}}).phase == phase


def test_scenario_reads_progress_reason_assets_and_cost() -> None:
    job = {
        "job": {
            "jobId": "job_1",
            "status": "failure",
            "progress": 0.25,
            "metadata": {"assetIds": ["asset_a", "asset_b"], "error": "NSFW content", "hint": "Rephrase."},
            "billing": {"cuCost": 10, "cuDiscount": 0},
        }
    }
    state = scenario.job_state(job)
    assert (state.fraction, state.reason) == (0.25, "NSFW content Rephrase.")
    assert scenario.asset_ids(job) == ["asset_a", "asset_b"]
    assert scenario.job_cost(job) == Cost(10.0, "compute units")
    assert scenario.job_id_of({"job": {"jobId": "job_1"}}) == "job_1"
    assert scenario.asset_url({"asset": {"id": "a", "url": "https://cdn/x.png"}}) == "https://cdn/x.png"


def test_scenario_new_status_reads_as_running_and_missing_assets_are_unexpected() -> None:
    assert scenario.job_state({"job": {"status": "upscaling"}}) == JobState("running", "upscaling", None, "")
    with pytest.raises(Unexpected, match="assetIds"):
        scenario.asset_ids({"job": {"metadata": {"assetIds": []}}})
    with pytest.raises(Unexpected, match=r"job\.jobId"):
        scenario.job_id_of({"job": {}})


# -- inference.sh ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "phase"),
    [
        (1, "running"),
        (7, "running"),
        (8, "running"),
        (9, "running"),  # UPLOADING: still running since the 2026-01-10 renumbering
        (10, "done"),
        (11, "failed"),
        (12, "cancelled"),
        (13, "no_credit"),
        ("uploading", "running"),
        ("COMPLETED", "done"),
        ("failed", "failed"),
        ("rejected", "no_credit"),
    ],
)
def test_inferencesh_statuses(status: int | str, phase: str) -> None:
    assert inferencesh.task_state({"status": status}).phase == phase


def test_inferencesh_status_nine_is_uploading_not_done() -> None:
    state = inferencesh.task_state({"status": 9, "output": None})
    assert (state.phase, state.message) == ("running", "uploading")


def test_inferencesh_accepts_both_envelopes() -> None:
    task = {"id": "t1", "status": 10}
    assert inferencesh.unwrap({"data": task, "messages": []}) == task
    assert inferencesh.unwrap({"success": True, "data": task, "error": None}) == task
    with pytest.raises(Refused, match="app not found"):
        inferencesh.unwrap({"success": False, "data": None, "error": {"message": "app not found"}})
    with pytest.raises(Unexpected):
        inferencesh.unwrap({"task": task})


@pytest.mark.parametrize(
    "output",
    [
        {"image": {"uri": "https://cdn/a.png", "path": "/o/a.png", "content_type": "image/png"}},
        {"image": "https://cdn/a.png"},
        {"images": [{"uri": "https://cdn/a.png"}]},
    ],
)
def test_inferencesh_image_as_file_object_or_url(output: dict) -> None:
    assert inferencesh.image_urls({"output": output}) == ["https://cdn/a.png"]


def test_inferencesh_failed_task_reason() -> None:
    assert (
        inferencesh.task_state({"status": 11, "error": "CUDA out of memory"}).reason == "CUDA out of memory"
    )
    with pytest.raises(Unexpected):
        inferencesh.image_urls({"output": {"text": "no image"}})


# -- AIML --------------------------------------------------------------------------------------


def test_aiml_reads_urls_base64_and_tokens() -> None:
    answer = {
        "data": [{"url": "https://cdn/a.png"}, {"b64_json": "aGk="}],
        "meta": {"usage": {"tokens_used": 10500}},
    }
    assert image_items(answer) == [("url", "https://cdn/a.png"), ("b64_json", "aGk=")]
    assert aimlapi.tokens_cost(answer) == Cost(10500.0, "tokens")
    assert aimlapi.tokens_cost({"data": []}) is None
    with pytest.raises(Unexpected):
        image_items({"data": [{"url": None, "b64_json": None}]})
    with pytest.raises(Unexpected):
        image_items({"data": None})


# -- EvoLink -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "phase"),
    [("pending", "running"), ("processing", "running"), ("completed", "done"), ("failed", "failed")],
)
def test_evolink_statuses(status: str, phase: str) -> None:
    assert evolink.task_state({"status": status, "progress": 40}).phase == phase


def test_evolink_progress_results_and_error() -> None:
    assert evolink.task_state({"status": "processing", "progress": 40}).fraction == 0.4
    failed = evolink.task_state(
        {"status": "failed", "error": {"code": "content_policy", "message": "blocked"}}
    )
    assert failed.reason == "content_policy: blocked"
    assert evolink.result_urls({"results": ["https://cdn/a.png"]}) == ["https://cdn/a.png"]
    with pytest.raises(Unexpected):
        evolink.result_urls({"status": "completed"})


# -- RunPod ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "phase"),
    [
        ("IN_QUEUE", "running"),
        ("IN_PROGRESS", "running"),
        ("COMPLETED", "done"),
        ("FAILED", "failed"),
        ("CANCELLED", "cancelled"),
        ("TIMED_OUT", "timed_out"),
    ],
)
def test_runpod_statuses(status: str, phase: str) -> None:
    assert runpod.job_state({"id": "x", "status": status}).phase == phase


@pytest.mark.parametrize(
    ("read", "answer"),
    [
        (runpod.job_state, {"status": "THROTTLED"}),
        (evolink.task_state, {"status": "queued"}),
        (inferencesh.task_state, {"status": 14}),
    ],
)
def test_statuses_added_later_read_as_running(read, answer: dict) -> None:
    assert read(answer).phase == "running"


def test_runpod_reads_image_cost_and_timings() -> None:
    answer = {
        "id": "sync-1",
        "status": "COMPLETED",
        "delayTime": 12,
        "executionTime": 1856,
        "output": {"image_url": "https://image.runpod.ai/a.png", "cost": 0.005},
    }
    assert runpod.image_url(answer) == "https://image.runpod.ai/a.png"
    assert runpod.job_cost(answer) == Cost(0.005, "USD")
    assert runpod.timing_s(answer, "delayTime") == 0.012
    assert runpod.timing_s(answer, "executionTime") == 1.856
    assert runpod.timing_s({}, "delayTime") is None
    assert runpod.job_state({"status": "FAILED", "error": "OOM"}).reason == "OOM"
    with pytest.raises(Unexpected, match="image_url"):
        runpod.image_url({"status": "COMPLETED", "output": {}})
