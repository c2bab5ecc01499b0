"""The page, the API and MCP on one server (`ui.serve`): an API call builds none of the page's
session state, and each address answers for itself."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from pathlib import Path

import gradio as gr
import pytest
from gradio.routes import App
from starlette.testclient import TestClient

from tests.serving import call_api
from zimage_ui.ui import build_demo
from zimage_ui.ui.api import build_api
from zimage_ui.ui.mcp_tools import McpEndpoint
from zimage_ui.ui.serve import beside_the_page, queued


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[TestClient, gr.Blocks, gr.Blocks]]:
    """The same assembly `serve` launches, on an in-process test client (lifespan included)."""
    page, api = queued(build_demo()), queued(build_api())
    app = App.create_app(page, app_kwargs={"lifespan": beside_the_page(api, McpEndpoint())})
    with TestClient(app) as http:
        yield http, page, api


def test_api_calls_build_the_api_sessions_only_never_the_pages(served) -> None:
    http, page, api = served
    for number in range(3):
        listed = call_api(http, "/api/", "providers", {}, f"client-{number}")
        assert "diffusers-tiny" in json.dumps(listed), listed
    assert len(api.state_holder.session_data) >= 3  # each new client is a session of the API's
    assert len(page.state_holder.session_data) == 0  # and none of the page's
    assert len(api.blocks) < len(page.blocks) / 5, (len(api.blocks), len(page.blocks))


def test_an_image_is_written_once_and_served_from_its_run_folder(served) -> None:
    """Gradio serves a run's file where the run wrote it: no hash, no second copy in its cache."""
    from zimage_ui.runs import work_root

    http, _page, api = served
    seed = random.randrange(10**9)  # a file name no earlier run left in the shared cache folder
    given = {"prompt": "a heron", "width": 256, "height": 256, "steps": 2, "seed": seed}
    answer = call_api(http, "/api/", "generate", given, "one-client")
    assert answer is not None
    images = answer[0]
    path = Path(images[0]["image"]["path"])
    assert path.is_relative_to(work_root()), path  # the run's own file, not a copy
    assert path.name == f"diffusers-tiny-{seed}-0.png"
    assert http.get(images[0]["image"]["url"].split("/api", 1)[1].join(["/api", ""])).status_code == 200
    served_copies = [f for f in Path(api.GRADIO_CACHE).rglob(path.name) if f != path]
    assert not served_copies, served_copies


def test_each_address_serves_its_own_app(served) -> None:
    http, _page, _api = served
    page_config, api_config = http.get("/config").json(), http.get("/api/config").json()
    assert page_config["title"] == "Z-Image-Turbo playground"
    assert api_config["title"] == "Z-Image-Turbo playground API"
    page_endpoints = {dep.get("api_name") for dep in page_config["dependencies"]}
    assert not {"generate", "compare", "sweep", "providers"} & page_endpoints  # the API is at /api/
    assert "[Use via API](api/)" in json.dumps(page_config)  # and the page's header links there
    assert not api_config.get("mcp_server")  # MCP is ours, at /gradio_api/mcp/, not Gradio's
    info = http.get("/api/gradio_api/info").json()
    assert set(info["named_endpoints"]) == {"/generate", "/compare", "/sweep", "/providers"}
    listed = http.post(
        "/gradio_api/mcp/",
        json={"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}},
        headers={"Accept": "application/json, text/event-stream"},
    )
    data = json.loads(listed.text.split("data: ", 1)[1].splitlines()[0])
    assert {tool["name"] for tool in data["result"]["tools"]} == {"generate", "compare", "sweep", "providers"}


def test_a_page_session_does_not_rebuild_the_upload_buttons_schema(monkeypatch: pytest.MonkeyPatch) -> None:
    """Gradio's UploadButton works its API schema out with pydantic on every call, and each new
    session asks every block: the page's buttons keep theirs (`common.upload_button`)."""
    from gradio.data_classes import FileData, ListFiles
    from gradio.state_holder import SessionState

    page = build_demo()
    buttons = [block for block in page.blocks.values() if isinstance(block, gr.UploadButton)]
    assert len(buttons) >= 3  # presets, LoRAs, votes
    built: list[str] = []
    for model in (FileData, ListFiles):
        schema = model.model_json_schema

        def counted(*args, _schema=schema, _name=model.__name__, **kwargs):
            built.append(_name)
            return _schema(*args, **kwargs)

        monkeypatch.setattr(model, "model_json_schema", counted)
    session = SessionState(page)
    assert built == []
    api_infos = [session.config_values[button._id].get("api_info") for button in buttons]
    assert [info["title"] for info in api_infos] == ["FileData"] * len(buttons)  # still the schema
