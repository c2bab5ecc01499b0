"""The five hosted providers end to end through the CLI and the page, against the emulators."""

from collections.abc import Iterator
from pathlib import Path

import pytest
from gradio_client import Client

from tests.emulators import EMULATORS, Emulator
from tests.serving import api_url, running_app
from tests.test_cli import cli
from zimage_ui.metadata import read_provenance, read_text_chunks

HOSTED = list(EMULATORS)


@pytest.mark.parametrize("provider", HOSTED)
def test_cli_generates_through_the_emulator(provider: str, emulators: dict[str, Emulator], tmp_path: Path):
    import json

    run = cli(
        "generate",
        "--provider",
        provider,
        "--prompt",
        "a red fox",
        "--seed",
        "21",
        "--width",
        "512",
        "--height",
        "512",
        "--out",
        str(tmp_path),
        "--json",
    )
    assert run.returncode == 0, run.stderr
    record = json.loads(run.stdout)
    assert record["provider"] == provider and record["seed"] == 21 and record["error"] is None
    data = Path(record["images"][0]).read_bytes()
    assert "Seed: 21" in read_text_chunks(data)["parameters"]
    assert read_provenance(data)["provider"] == provider
    emulator = emulators[provider]
    assert emulator.requests, "the emulator saw the request"
    assert emulator.downloads or provider in {"aimlapi", "openai-compatible"}  # may answer inline (base64)
    for secret in emulator.env().values():
        if "KEY" in secret or "emu-" in secret:
            assert secret not in run.stdout + run.stderr
            assert secret.encode() not in data


def test_two_providers_one_failing_writes_the_other_and_exits_1(
    emulators: dict[str, Emulator], tmp_path: Path
):
    import json

    emulators["aimlapi"].behaviour.fail_reason = "content policy"
    emulators["aimlapi"].behaviour.reject_key = True
    run = cli(
        "generate",
        "--provider",
        "runpod",
        "--provider",
        "aimlapi",
        "--prompt",
        "a red fox",
        "--width",
        "512",
        "--height",
        "512",
        "--out",
        str(tmp_path),
        "--json",
    )
    assert run.returncode == 1
    records = {r["provider"]: r for r in map(json.loads, run.stdout.splitlines())}
    assert records["runpod"]["error"] is None and Path(records["runpod"]["images"][0]).exists()
    assert records["runpod"]["cost"] == "$0.0050"
    assert records["aimlapi"]["images"] == []
    assert records["aimlapi"]["error"].startswith("aimlapi:")
    assert "AIML_API_KEY" in records["aimlapi"]["error"]
    assert "emu-aimlapi-key" not in run.stdout + run.stderr


@pytest.fixture(scope="module")
def page_client(emulator_servers: dict[str, Emulator], tmp_path_factory) -> Iterator[Client]:
    env = {
        "ZIMAGE_POLL_INTERVAL_S": "0.05",
        "ZIMAGE_TIMEOUT_S": "10",
        "NO_PROXY": "127.0.0.1,localhost",
        "ZIMAGE_OUTPUT_DIR": str(tmp_path_factory.mktemp("outputs")),
    }
    for emulator in emulator_servers.values():
        env.update(emulator.env())
    with running_app(env) as url:
        yield Client(api_url(url), verbose=False)


@pytest.mark.parametrize("provider", HOSTED)
def test_page_generates_through_the_emulator(
    provider: str, page_client: Client, emulator_servers: dict[str, Emulator]
):
    emulator_servers[provider].reset()
    gallery, seed_used, status, sent = page_client.predict(
        prompt="a red fox", provider=provider, width=512, height=512, seed=33, steps=8, api_name="/generate"
    )
    assert seed_used == "33"
    assert "Done" in status
    assert sent["provider"] == provider
    assert "emu-" not in str(sent)  # the display copy of the headers is redacted
    assert Path(gallery[0]["image"]).read_bytes().startswith(b"\x89PNG")
    assert emulator_servers[provider].requests


def test_page_shows_a_provider_failure_as_a_message(
    page_client: Client, emulator_servers: dict[str, Emulator]
):
    emulator_servers["evolink"].reset()
    emulator_servers["evolink"].behaviour.fail_reason = "the prompt was refused"
    with pytest.raises(Exception) as caught:
        page_client.predict(
            prompt="a red fox",
            provider="evolink",
            width=512,
            height=512,
            seed=1,
            steps=8,
            api_name="/generate",
        )
    assert "evolink" in str(caught.value) and "refused" in str(caught.value)
    emulator_servers["evolink"].reset()
