"""Start the real app (`python app.py`) on a free loopback port for API and browser tests."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent


def app_log(url: str) -> str:
    """What the app started by `running_app` at `url` printed so far."""
    port = url.rstrip("/").rsplit(":", 1)[1]
    return (ROOT / ".pytest_cache" / f"app-{port}.log").read_text()


def api_url(url: str) -> str:
    """Where the running app at `url` serves its API (`ui.api`): what `gradio_client` is given."""
    return f"{url.rstrip('/')}/api/"


_ORDER: dict[tuple[str, str], list[tuple[str, Any]]] = {}


def call_api(http: httpx.Client, api: str, name: str, given: Mapping[str, Any], session: str) -> Any | None:
    """One call of the API's `name` as a raw HTTP client makes it, over Gradio's `/call` route:
    every argument by place (the order and defaults read once from `/gradio_api/info`, `given`
    by name over them), then the event stream. The result's data, or None when it did not
    complete (an error event). `http` may be Starlette's TestClient (an httpx.Client)."""
    if (api, name) not in _ORDER:
        info = http.get(f"{api}gradio_api/info").json()["named_endpoints"][f"/{name}"]["parameters"]
        _ORDER[(api, name)] = [(p["parameter_name"], p.get("parameter_default")) for p in info]
    data = [given.get(parameter, default) for parameter, default in _ORDER[(api, name)]]
    event = http.post(f"{api}gradio_api/call/{name}", json={"data": data, "session_hash": session})
    stream = http.get(f"{api}gradio_api/call/{name}/{event.json()['event_id']}").text
    if "event: complete" not in stream:
        return None
    return json.loads(stream.strip().rsplit("data: ", 1)[1])


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def running_app(
    extra_env: dict[str, str] | None = None, timeout_s: float = 90, script: str = "app.py"
) -> Iterator[str]:
    """`python <script> --host 127.0.0.1 --port <free port>` until the block ends; yields its URL."""
    port = free_port()
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", **(extra_env or {})}
    log = ROOT / ".pytest_cache"
    log.mkdir(exist_ok=True)
    with open(log / f"app-{port}.log", "w") as out:
        process = subprocess.Popen(
            [sys.executable, script, "--host", "127.0.0.1", "--port", str(port)],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        url = f"http://127.0.0.1:{port}/"
        try:
            deadline = time.monotonic() + timeout_s
            while True:
                if process.poll() is not None:
                    raise RuntimeError(f"app exited with {process.returncode}; see {out.name}")
                try:
                    if httpx.get(url, timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"app did not serve {url} within {timeout_s} s")
                time.sleep(0.2)
            yield url
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
