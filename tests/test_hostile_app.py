"""The hostile server against the running app (`python app.py`) and the CLI: each attack ends in
time with a message naming the provider, no piece of a key reaches the client or the app's log,
the app's memory grows by less than 150 MB, a client that goes away frees its run, and a Space
lists no owner's engine as usable for a visitor."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import pytest
from gradio_client import Client

from tests.hostile import HostileServer, leaked
from tests.serving import ROOT, api_url, app_log, running_app
from tests.test_hostile import KEY, SECRET

MEMORY_BUDGET_MB = 150
ATTACKS = {  # provider: the hostile path its base URL points at, and what the client is told
    "aimlapi": ("/bomb.json", "inflates more than 200:1"),
    "evolink": ("/stacked.png", "compressed 2 times over (gzip, gzip)"),
    "scenario": ("/echo", "invalid key"),
}


@pytest.fixture(scope="module")
def app(hostile_http: HostileServer, hostile_https: HostileServer, tmp_path_factory) -> Iterator[str]:
    ca = tmp_path_factory.mktemp("ca") / "ca.pem"
    assert hostile_https.ca is not None
    hostile_https.ca.cert_pem.write_to_path(str(ca))
    env = {
        "SSL_CERT_FILE": str(ca),  # the app trusts the https hostile server's test CA
        "ZIMAGE_ALLOW_PRIVATE_URLS": "1",  # which listens on 127.0.0.1 (the guard is tested apart)
        "ZIMAGE_SERVER_KEYS": "all",
        "ZIMAGE_TIMEOUT_S": "30",
        "ZIMAGE_MAX_ACTIVE_RUNS": "1",  # one run at a time: a run left behind is seen at once
        "AIML_API_KEY": KEY,
        "EVOLINK_API_KEY": KEY,
        "SCENARIO_SDK_API_KEY": KEY,
        "SCENARIO_SDK_API_SECRET": SECRET,
        "RUNPOD_API_KEY": KEY,
        "ZIMAGE_RUNPOD_BASE_URL": f"{hostile_http.url}/stall",
    }
    for provider, (path, _) in ATTACKS.items():
        env[f"ZIMAGE_{provider.upper()}_BASE_URL"] = f"{hostile_http.url}{path}"
    with running_app(env) as url:
        yield url


def app_rss_mb(url: str) -> float:
    from benchmarks.load import app_pid

    with open(f"/proc/{app_pid(url)}/status") as status:
        return int(next(line for line in status if line.startswith("VmRSS:")).split()[1]) / 1024


class PeakRss:
    """The app's peak RSS while a block runs, sampled every 20 ms."""

    def __init__(self, url: str) -> None:
        self.url, self.peak, self._stop = url, app_rss_mb(url), threading.Event()

    def __enter__(self) -> PeakRss:
        self.start = self.peak
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, app_rss_mb(self.url))
            time.sleep(0.02)

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


@pytest.mark.parametrize("provider", sorted(ATTACKS))
def test_an_attack_through_the_app_ends_clean_and_small(app: str, provider: str) -> None:
    client = Client(api_url(app), verbose=False)
    client.predict(provider="diffusers-tiny", prompt="warm", width=256, height=256, api_name="/generate")
    with PeakRss(app) as rss:
        started = time.monotonic()
        for _ in range(3):
            with pytest.raises(Exception) as caught:
                client.predict(provider=provider, prompt="x", seed="1", api_name="/generate")
            said = str(caught.value)
            assert provider in said and ATTACKS[provider][1] in said, said
        took = time.monotonic() - started
    assert took < 30, f"three attacks took {took:.0f} s"
    assert rss.peak - rss.start < MEMORY_BUDGET_MB, f"the app grew {rss.peak - rss.start:.0f} MB"
    basic = base64.b64encode(f"{KEY}:{SECRET}".encode()).decode()
    assert not leaked(said + app_log(app), KEY, SECRET, basic)


@pytest.mark.parametrize(
    ("path", "says"), [("/bomb.png", "inflates more than 200:1"), ("/stacked.png", "2 times over")]
)
def test_a_visitors_bomb_url_through_the_app_is_refused_small(
    app: str, hostile_https: HostileServer, path: str, says: str
) -> None:
    """An anonymous visitor's input-image URL answering a compression bomb: three requests, each
    refused naming the image, the app's memory within 150 MB."""
    client = Client(api_url(app), verbose=False)
    with PeakRss(app) as rss:
        for _ in range(3):
            with pytest.raises(Exception) as caught:
                client.predict(
                    provider="diffusers-tiny", prompt="x", width=256, height=256,
                    image_url=f"{hostile_https.url}{path}", api_name="/generate",
                )  # fmt: skip
            assert "image" in str(caught.value) and says in str(caught.value), caught.value
    assert rss.peak - rss.start < MEMORY_BUDGET_MB, f"the app grew {rss.peak - rss.start:.0f} MB"


def test_a_client_that_goes_away_frees_its_run(app: str) -> None:
    """With one run slot, a client that starts a run on a stalled provider and is then killed
    leaves the slot free within seconds, not at the run's 30 s deadline."""
    script = (
        "from gradio_client import Client; import sys; "
        "Client(sys.argv[1].rstrip('/') + '/api/', verbose=False)"
        ".predict(provider='runpod', prompt='x', api_name='/generate')"
    )
    gone = subprocess.Popen([sys.executable, "-c", script, app], cwd=ROOT)
    time.sleep(4)  # the run has started and holds the only slot
    gone.kill()
    gone.wait(10)
    client = Client(api_url(app), verbose=False)
    deadline = time.monotonic() + 8
    while True:
        try:
            images, *_ = client.predict(
                provider="diffusers-tiny", prompt="after", width=256, height=256, api_name="/generate"
            )
            break
        except Exception as exc:
            assert "busy" in str(exc).lower(), exc
            assert time.monotonic() < deadline, "the slot is still held by a client that went away"
            time.sleep(0.5)
    assert images


def test_a_space_lists_no_owner_engine_for_visitors(hostile_http: HostileServer) -> None:
    env = {
        "SPACE_ID": "someone/zimage",
        "ZIMAGE_SERVER_KEYS": "",
        "ZIMAGE_COMFYUI_URL": f"http://owner:{SECRET}@127.0.0.1:{hostile_http.port}",
        "ZIMAGE_OPENAI_BASE_URL": f"http://127.0.0.1:{hostile_http.port}/v1",
        "ZIMAGE_OPENAI_GPU2_BASE_URL": f"http://127.0.0.1:{hostile_http.port}/v1",
        "HF_TOKEN": "hf_owner0123456789abcdef",
        "AIML_API_KEY": KEY,
    }
    with running_app(env) as url:
        listed = {
            row["id"]: row for row in Client(api_url(url), verbose=False).predict(api_name="/providers")
        }
    for provider in ("comfyui", "openai-compatible", "openai-gpu2", "huggingface", "aimlapi"):
        assert not listed[provider]["usable"], provider
    assert listed["diffusers-tiny"]["usable"]
    assert not leaked(str(listed), SECRET, KEY)


def test_the_cli_refuses_a_bomb_without_growing(hostile_http: HostileServer) -> None:
    """The CLI against a provider answering a 512 MB gzip bomb: a clear message, and the process's
    peak memory within 150 MB of the same run answered by a plain 404."""
    measure = (
        "import resource, runpy, sys\n"
        "sys.argv = ['zimage_ui', *sys.argv[1:]]\n"
        "try:\n    runpy.run_module('zimage_ui', run_name='__main__')\n"
        "except SystemExit as exc:\n    code = exc.code\n"
        "print('peak', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024, file=sys.stderr)\n"
        "sys.exit(code)\n"
    )

    def run(path: str) -> tuple[int, str, int]:
        env = {**os.environ, "AIML_API_KEY": KEY, "ZIMAGE_AIMLAPI_BASE_URL": f"{hostile_http.url}{path}"}
        done = subprocess.run(
            [sys.executable, "-c", measure, "generate", "--provider", "aimlapi", "--prompt", "x",
             "--out", "/tmp/zimage-cli-hostile"],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        peak = int(done.stderr.rsplit("peak ", 1)[1].split()[0])
        return done.returncode, done.stdout + done.stderr, peak

    code, said, bomb_peak = run("/bomb.json")
    assert code != 0 and "inflates more than 200:1" in said and "Traceback" not in said
    _, plain, plain_peak = run("/nothing")
    assert "HTTP 404" in plain
    assert bomb_peak - plain_peak < MEMORY_BUDGET_MB, f"{bomb_peak} MB against {plain_peak} MB"
    assert not leaked(said, KEY)
