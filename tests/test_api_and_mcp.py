"""The running app as other tools see it: gradio_client's API view, and the official MCP client."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

import httpx
import pytest
from gradio_client import Client
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client

from zimage_ui.metadata import read_text_chunks

NAMED = ("/generate", "/compare", "/sweep", "/providers")


@pytest.fixture(scope="module")
def url(plain_app: str) -> str:
    return plain_app


def test_the_api_names_and_labels_everything(url: str):
    api = Client(url, verbose=False).view_api(return_format="dict", print_info=False)
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
    images, seed, status, sent = Client(url, verbose=False).predict(prompt="a heron", api_name="/generate")
    assert "Done" in status and seed.isdigit()
    assert sent["provider"] == "diffusers-tiny"  # the default with no GPU and no keys
    png = Path(images[0]["image"]).read_bytes()
    assert read_text_chunks(png)["parameters"].startswith("a heron")


def test_the_prompt_comes_first_and_a_given_seed_is_the_seed_used(url: str):
    client = Client(url, verbose=False)
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
    client = Client(url, verbose=False)
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
    entries = Client(url, verbose=False).predict(api_name="/providers")
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


def test_an_mcp_client_lists_the_tools_and_generates(url: str):
    async def work(session: ClientSession) -> Any:
        tools = {tool.name: tool for tool in (await session.list_tools()).tools}
        made = await session.call_tool(
            "generate",
            {"prompt": "a red fox", "provider": "diffusers-tiny", "width": 256, "height": 256, "seed": 7},
        )  # fmt: skip
        listed = await session.call_tool("providers", {})
        return tools, made, listed

    tools, made, listed = asyncio.run(mcp_session_run(url, work))
    assert {"generate", "compare", "providers"} <= set(tools)
    for name in ("generate", "compare"):
        tool = tools[name]
        assert tool.description and "Make images" in tools["generate"].description
        properties = tool.inputSchema["properties"]
        assert "prompt" in properties and all(p.get("description") for p in properties.values()), name
    assert "sides" in tools["compare"].inputSchema["properties"]
    assert not made.isError, made.content
    text = " ".join(getattr(part, "text", "") for part in made.content)
    png_url = re.search(r"https?://[^'\"\s]+\.png", text)
    assert png_url, text[:500]
    png = httpx.get(png_url[0], timeout=30).content
    parameters = read_text_chunks(png)["parameters"]
    assert parameters.startswith("a red fox") and "Seed: 7" in parameters
    assert not listed.isError
    assert "diffusers-tiny" in json.dumps([getattr(part, "text", "") for part in listed.content])
