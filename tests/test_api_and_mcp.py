"""The running app as other tools see it: gradio_client's API view, and the official MCP client."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import re
import tempfile
from pathlib import Path
from typing import Any

import httpx
import pytest
from gradio_client import Client
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from PIL import Image

from tests.serving import api_url
from zimage_ui.metadata import read_text_chunks

NAMED = ("/generate", "/compare", "/sweep", "/providers")


@pytest.fixture(scope="module")
def url(plain_app: str) -> str:
    return plain_app


def test_the_api_names_and_labels_everything(url: str):
    api = Client(api_url(url), verbose=False).view_api(return_format="dict", print_info=False)
    endpoints = api["named_endpoints"]
    assert set(NAMED) <= set(endpoints), sorted(endpoints)
    assert not api["unnamed_endpoints"]
    for name in NAMED:
        for parameter in endpoints[name]["parameters"]:
            assert not re.fullmatch(r"param_\d+", parameter["parameter_name"]), (name, parameter)
        for returned in endpoints[name]["returns"]:
            assert not re.fullmatch(r"value_\d+", returned["label"] or ""), (name, returned)
    generate = {p["parameter_name"]: p for p in endpoints["/generate"]["parameters"]}
    assert [name for name, p in generate.items() if not p["parameter_has_default"]] == ["prompt"]
    assert [r["label"] for r in endpoints["/generate"]["returns"]] == [
        "Images",
        "Seed used",
        "Status",
        "Prepared request (keys redacted)",
    ]


def test_generate_needs_nothing_but_a_prompt(url: str):
    images, seed, status, sent = Client(api_url(url), verbose=False).predict(
        prompt="a heron", api_name="/generate"
    )
    assert "Done" in status and seed.isdigit()
    assert sent["provider"] == "diffusers-tiny"  # the default with no GPU and no keys
    png = Path(images[0]["image"]).read_bytes()
    assert read_text_chunks(png)["parameters"].startswith("a heron")


def test_the_prompt_comes_first_and_a_given_seed_is_the_seed_used(url: str):
    client = Client(api_url(url), verbose=False)
    images, seed, status, sent = client.predict("a red fox", api_name="/generate")  # positional
    assert "Done" in status and seed.isdigit() and sent["sent"]["seed"] == int(seed)
    made = {}
    for given in (7, "7", 8):
        images, seed, _status, sent = client.predict(
            prompt="a red fox", seed=given, width=256, height=256, steps=2, api_name="/generate"
        )
        assert seed == str(given) and sent["sent"]["seed"] == int(given)
        assert sent["sent"]["steps"] == 2 and sent["sent"]["width"] == 256  # numbers, as numbers
        made[given] = Path(images[0]["image"]).read_bytes()
    assert made[7] == made["7"]  # one seed, however written: one image
    assert made[7] != made[8]
    _, seed, _, _ = client.predict(
        prompt="a red fox", seed="random", width=256, height=256, api_name="/generate"
    )
    assert seed.isdigit()


def test_whole_number_settings_are_integers_with_ranges_and_fractions_are_refused(url: str):
    client = Client(api_url(url), verbose=False)
    api = client.view_api(return_format="dict", print_info=False)["named_endpoints"]
    for name in ("/generate", "/compare", "/sweep"):
        types = {p["parameter_name"]: p["type"] for p in api[name]["parameters"]}
        assert next(iter(types)) == "prompt", name
        assert {k: types["steps"][k] for k in ("type", "minimum", "maximum")} == {
            "type": "integer",
            "minimum": 1,
            "maximum": 50,
        }
        assert types["num_images"]["type"] == "integer" and types["width"]["type"] == "integer"
        assert types["guidance"]["type"] == "number" and types["guidance"]["maximum"] == 20
        assert {"type": "integer", "minimum": 0} in [
            {k: v for k, v in option.items() if k != "maximum"} for option in types["seed"]["anyOf"]
        ]
        assert "random_seed" not in types
    for wrong, named in ((2.5, "steps"), ("four", "steps"), (60, "steps")):
        with pytest.raises(Exception, match=named) as caught:
            client.predict(prompt="a red fox", steps=wrong, width=256, height=256, api_name="/generate")
        assert str(wrong) in str(caught.value)
    with pytest.raises(Exception, match="num_images"):
        client.predict(prompt="a red fox", num_images=1.5, width=256, height=256, api_name="/generate")
    with pytest.raises(Exception, match="seed"):
        client.predict(prompt="a red fox", seed="seven", width=256, height=256, api_name="/generate")


def test_providers_says_what_is_usable(url: str):
    entries = Client(api_url(url), verbose=False).predict(api_name="/providers")
    by_id = {entry["id"]: entry for entry in entries}
    assert by_id["diffusers-tiny"]["usable"] and by_id["diffusers-tiny"]["default"]
    assert not by_id["runpod"]["usable"] and "key" in by_id["runpod"]["reason"]
    assert by_id["aimlapi"]["steps"] == [1, 8]


async def mcp_session_run(url: str, work: Any) -> Any:
    async with (
        streamable_http_client(f"{url}gradio_api/mcp/") as (read, write, _),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        return await work(session)


def answer_of(result: Any) -> tuple[list[bytes], dict[str, Any]]:
    """An MCP tool result as the images it carries and its one JSON text."""
    images = [base64.b64decode(part.data) for part in result.content if part.type == "image"]
    texts = [part.text for part in result.content if part.type == "text"]
    assert len(texts) == 1, texts
    return images, json.loads(texts[0])


def test_an_mcp_client_gets_the_seed_it_gave_the_image_and_json_without_server_paths(url: str):
    async def work(session: ClientSession) -> Any:
        tools = {tool.name: tool for tool in (await session.list_tools()).tools}
        small = {"width": 256, "height": 256, "steps": 2}
        made = {
            seed: await session.call_tool("generate", {"prompt": "a red fox", "seed": seed, **small})
            for seed in (7, 8)
        }
        axis = {"x_kind": "steps", "x_values": "1, 2"}
        swept = await session.call_tool(
            "sweep", {"prompt": "a red fox", "provider": "diffusers-tiny", **axis, **small}
        )
        compared = await session.call_tool(
            "compare", {"prompt": "a red fox", "sides": "diffusers-tiny; diffusers-tiny:steps=3", **small}
        )
        refused = await session.call_tool("generate", {"prompt": "a red fox", "steps": 2.5})
        listed = await session.call_tool("providers", {})
        return tools, made, swept, compared, refused, listed

    tools, made, swept, compared, refused, listed = asyncio.run(mcp_session_run(url, work))
    assert set(tools) == {"generate", "compare", "sweep", "providers"}
    for name in ("generate", "compare", "sweep"):
        schema = tools[name].inputSchema
        assert schema["required"][0] == "prompt" and schema["additionalProperties"] is False, name
        assert all(p.get("description") for p in schema["properties"].values()), name
        assert schema["properties"]["steps"]["type"] == "integer", name
        assert "Returns" in tools[name].description and "JSON" in tools[name].description
    assert tools["generate"].inputSchema["required"] == ["prompt"]
    assert tools["compare"].inputSchema["required"] == ["prompt", "sides"]

    pixels = {}
    for seed, result in made.items():
        assert not result.isError, result.content
        images, record = answer_of(result)
        assert record["seed"] == seed and record["sent"]["seed"] == seed and record["sent"]["steps"] == 2
        assert record["provider"] == "diffusers-tiny" and "Done" in record["status"]
        parameters = read_text_chunks(images[0])["parameters"]  # the PNG as made, metadata intact
        assert parameters.startswith("a red fox") and f"Seed: {seed}" in parameters
        served = httpx.get(record["images"][0]["url"], timeout=30)
        assert served.status_code == 200 and served.content == images[0]
        pixels[seed] = Image.open(io.BytesIO(images[0])).tobytes()
    assert pixels[7] != pixels[8]  # two seeds, two images

    grid, record = answer_of(swept)
    assert not swept.isError and len(grid) == 1 and record["cells"] == ["Steps: 1", "Steps: 2"]
    assert "zimage-grid" in read_text_chunks(grid[0])
    images, report = answer_of(compared)
    assert len(images) == 2 and [side["steps"] for side in report["sides"]] == [2, 3]

    for result in (*made.values(), swept, compared, listed):
        text = json.dumps([getattr(part, "text", "") for part in result.content])
        assert "/tmp" not in text and tempfile.gettempdir() not in text and "file=" not in text, text[:400]
    assert refused.isError and "steps" in refused.content[0].text and "2.5" in refused.content[0].text
    assert not listed.isError
    assert "diffusers-tiny" in {entry["id"] for entry in json.loads(listed.content[0].text)}
    gone = httpx.get(f"{url}gradio_api/mcp/images/{'x' * 24}.png", timeout=10)
    assert gone.status_code == 404
