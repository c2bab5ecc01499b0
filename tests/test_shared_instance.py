"""A shared instance, used the way a team or a public Space uses it: many sessions at once.

Each test starts the real app (`python app.py`) and talks to it through `gradio_client`, one
client per session, so sessions are as separate as two browsers.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from gradio_client import Client

from tests.emulators import Emulator
from tests.serving import api_url, app_log, running_app
from zimage_ui.metadata import read_provenance, read_text_chunks
from zimage_ui.visitor_files import upload_folder

SESSIONS = 20
SEED = "4242"


def client_of(url: str) -> Client:
    """A gradio_client for the shared app. Its 20 s read timeout is for a person waiting; here
    several sessions share two cores (and, under pytest-xdist, another worker), so a slow answer
    is not the failure these tests look for: their assertions are about whose image is whose."""
    return Client(api_url(url), verbose=False, httpx_kwargs={"timeout": 180})


@pytest.fixture(scope="module")
def shared_app(emulator_servers: dict[str, Emulator], tmp_path_factory) -> Iterator[tuple[str, Path]]:
    team = tmp_path_factory.mktemp("team-outputs")
    env = {
        "ZIMAGE_POLL_INTERVAL_S": "0.05",
        "ZIMAGE_TIMEOUT_S": "30",
        "NO_PROXY": "127.0.0.1,localhost",
        "ZIMAGE_OUTPUT_DIR": str(team),
        "ZIMAGE_SERVER_KEYS": "all",
    }
    for emulator in emulator_servers.values():
        env.update(emulator.env())
    with running_app(env) as url:
        yield url, team


def generate(url: str, provider: str, prompt: str, size: int) -> tuple[str, bytes]:
    client = client_of(url)
    gallery, seed_used, status, _sent = client.predict(
        prompt=prompt, provider=provider, width=size, height=size, seed=SEED, steps=4, api_name="/generate"
    )
    assert "Done" in status, status
    assert seed_used == SEED
    return prompt, Path(gallery[0]["image"]).read_bytes()


@pytest.mark.parametrize(("provider", "size"), [("diffusers-tiny", 256), ("aimlapi", 512), ("runpod", 512)])
def test_sessions_sharing_a_seed_each_get_their_own_image(
    provider: str, size: int, shared_app: tuple[str, Path], emulator_servers: dict[str, Emulator]
) -> None:
    url, _team = shared_app
    for emulator in emulator_servers.values():
        emulator.reset()
    prompts = [f"session {index}: a lighthouse in a storm" for index in range(SESSIONS)]
    with ThreadPoolExecutor(SESSIONS) as pool:
        results = list(pool.map(lambda p: generate(url, provider, p, size), prompts))
    for prompt, png in results:
        chunks = read_text_chunks(png)
        assert chunks["parameters"].split("\n")[0] == prompt, "a session got another session's image"
        assert read_provenance(png)["params"]["prompt"] == prompt
        assert f"Seed: {SEED}" in chunks["parameters"]


def test_compare_of_one_provider_at_two_step_counts_shows_two_images(shared_app: tuple[str, Path]) -> None:
    url, _team = shared_app
    images, report = client_of(url).predict(
        "a paper boat", "diffusers-tiny:steps=2; diffusers-tiny:steps=8",
        width=256, height=256, seed=77,
        api_name="/compare",
    )  # fmt: skip
    assert [side["steps"] for side in report["sides"]] == [2, 8] and report["seed"] == 77
    assert [image["caption"] for image in images] == ["diffusers-tiny (steps 2)", "diffusers-tiny (steps 8)"]
    first, second = Path(images[0]["image"]), Path(images[1]["image"])
    assert first != second
    first_png, second_png = first.read_bytes(), second.read_bytes()
    assert read_provenance(first_png)["sent"]["steps"] == 2
    assert read_provenance(second_png)["sent"]["steps"] == 8
    from PIL import Image, ImageChops

    with Image.open(first) as a, Image.open(second) as b:
        assert ImageChops.difference(a.convert("RGB"), b.convert("RGB")).getbbox() is not None


def test_team_copies_are_kept_per_run_and_never_served(shared_app: tuple[str, Path]) -> None:
    url, team = shared_app
    client = client_of(url)
    gallery, *_ = client.predict(
        prompt="a quiet harbour",
        provider="diffusers-tiny",
        width=256,
        height=256,
        seed=5,
        steps=2,
        api_name="/generate",
    )
    copies = sorted(team.rglob("diffusers-tiny-5-0.png"))
    assert copies, "the team folder keeps a copy of every image"
    assert all(copy.parent.parent == team for copy in copies), "copies sit in per-run folders"
    for copy in copies:
        answer = httpx.get(f"{url}gradio_api/file={copy}", timeout=10)
        assert answer.status_code == 403, "a file in ZIMAGE_OUTPUT_DIR was served"
    # The run's own file is what Gradio serves (no second copy), at a path holding the process's
    # random tag and the run's random id: without both, nothing answers.
    runs = sorted(upload_folder().glob("zimage-ui-runs-*/process-*/*/diffusers-tiny-5-0.png"))
    assert runs and Path(gallery[0]["image"]).read_bytes() == runs[-1].read_bytes()
    run_folder, process_folder = runs[-1].parent, runs[-1].parent.parent
    for guess in (process_folder / runs[-1].name, process_folder.parent / runs[-1].name, run_folder):
        assert httpx.get(f"{url}gradio_api/file={guess}", timeout=10).status_code in (403, 404), guess


def test_cached_file_urls_cannot_be_guessed_from_provider_and_seed(shared_app: tuple[str, Path]) -> None:
    url, _team = shared_app
    client = client_of(url)
    job = client.submit(
        prompt="an owl",
        provider="diffusers-tiny",
        width=256,
        height=256,
        seed=9,
        steps=2,
        api_name="/generate",
    )
    job.result()
    final = job.outputs()[-1]
    name = Path(final[0][0]["image"]).name
    assert name == "diffusers-tiny-9-0.png"
    # What a stranger might try: the old shared folder, by provider and seed, answers nothing.
    guesses = [f"/tmp/zimage-ui/{name}", f"/tmp/gradio/{name}", f"{upload_folder()}/{name}"]
    for guess in guesses:
        assert httpx.get(f"{url}gradio_api/file={guess}", timeout=10).status_code in (403, 404)


def test_a_sweep_range_of_a_billion_values_is_refused_at_once(shared_app: tuple[str, Path]) -> None:
    url, _team = shared_app
    client = client_of(url)
    started = time.monotonic()
    with pytest.raises(Exception) as caught:
        client.predict(
            "a red fox",
            "diffusers-tiny",
            "steps",
            "1-8 [1000000000]",
            width=256,
            height=256,
            api_name="/sweep",
        )
    assert time.monotonic() - started < 5
    assert "over the limit" in str(caught.value)


def test_uploads_over_the_cap_are_refused_before_they_are_kept(shared_app: tuple[str, Path]) -> None:
    url, _team = shared_app
    big = b"\0" * (51 * 2**20)
    answer = httpx.post(f"{url}gradio_api/upload", files={"files": ("big.png", big, "image/png")}, timeout=60)
    assert answer.status_code == 413
    small = httpx.post(f"{url}gradio_api/upload", files={"files": ("ok.png", b"\0" * 1024, "image/png")})
    assert small.status_code == 200


def test_api_clients_see_progress_and_their_place_in_line(shared_app: tuple[str, Path]) -> None:
    url, _team = shared_app
    args = {
        "prompt": "a long run",
        "provider": "diffusers-tiny",
        "width": 1024,
        "height": 1024,
        "seed": 3,
        "steps": 30,
    }
    first = client_of(url).submit(**args, api_name="/generate")
    second = client_of(url).submit(**args, api_name="/generate")
    seen: set[str] = set()
    deadline = time.monotonic() + 120
    while not second.done() and time.monotonic() < deadline:
        for job in (first, second):
            for unit in job.status().progress_data or []:
                seen.add(unit.desc or "")
        time.sleep(0.05)
    first.result(), second.result()
    assert any("1st in line" in text for text in seen), seen
    assert any(re.search(r"step \d+/30", text) for text in seen), seen


def test_sweep_cells_carry_captions_and_failures_stay_in_place(
    shared_app: tuple[str, Path], emulator_servers: dict[str, Emulator]
) -> None:
    url, _team = shared_app
    emulator_servers["evolink"].reset()
    emulator_servers["evolink"].behaviour.fail_reason = "prompt refused"
    status, _grid, cells = client_of(url).predict(
        "a red fox", "diffusers-tiny", "provider", "diffusers-tiny, evolink",
        width=512, height=512, seed=8, steps=4,
        api_name="/sweep",
    )  # fmt: skip
    emulator_servers["evolink"].reset()
    assert "1 failed" in status and "prompt refused" in status
    assert [cell["caption"] for cell in cells] == ["Provider: diffusers-tiny", "Provider: evolink: failed"]
    assert all(Path(cell["image"]).read_bytes().startswith(b"\x89PNG") for cell in cells)


def test_expected_failures_print_no_traceback(
    shared_app: tuple[str, Path], emulator_servers: dict[str, Emulator]
) -> None:
    url, _team = shared_app
    client = client_of(url)
    args = {"prompt": "a fox", "height": 256, "seed": 1, "steps": 8}
    with pytest.raises(Exception, match="multiple of 16"):
        client.predict(provider="diffusers-tiny", width=1000, **args, api_name="/generate")
    emulator_servers["evolink"].reset()
    emulator_servers["evolink"].behaviour.fail_reason = "prompt refused"
    with pytest.raises(Exception, match="prompt refused"):
        client.predict(provider="evolink", width=256, **args, api_name="/generate")
    emulator_servers["evolink"].reset()
    assert "Traceback" not in app_log(url), app_log(url)[-3000:]
