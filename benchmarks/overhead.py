"""What the app adds to an image: round trips against a direct pipeline call, and session memory.

Round trips, on `diffusers-tiny` (the real Z-Image pipeline code, tiny weights) at 256², 512²
and 1024², 8 steps, the paths interleaved in each round, medians of `--repeats` (15: on a 2-core
machine the medians of 5 or 9 still moved by 10% from run to run):
- direct: the tiny pipeline called in this process, the way the provider calls it (the
  FlowMatch scheduler with the shift, a seeded CPU generator), PNG not included;
- runner: `runner.generate_one` in this process (validation, prepare, run, PNG with provenance);
- app raw HTTP: the running app's `/api/` `generate` over Gradio's `/call` route, one keep-alive
  `httpx` client and one session hash, the answer's PNG fetched;
- gradio_client: the same call through `gradio_client` (one Client, files downloaded).
The app runs in its own process (`python app.py`), with the same tiny model.

Sessions: the app's RSS before and after `--sessions` new API sessions (a raw `/call` each,
with a fresh session hash), against the same count of calls in one session. Then what one new
page session costs (Gradio's `SessionState` of the whole page: time, median of 20, and memory
kept), with the upload buttons' schema kept (`ui.common.upload_button`) and as Gradio rebuilds it.

Then `benchmarks.hosted_app`'s tables (a second app, on the RunPod emulator): the event loop's
latency through a 36-cell 1024² sweep, and a 4-side compare against one side.

    python -m benchmarks.overhead [--repeats 15] [--sessions 300] [--delay 0.5]
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from typing import Any

import httpx
from gradio_client import Client

from benchmarks._machine import machine
from benchmarks.hosted_app import hosted_tables
from benchmarks.load import app_pid, rss_mib
from tests.serving import api_url, call_api, running_app
from zimage_ui.params import GenerationParams
from zimage_ui.runner import generate_one

SIZES = (256, 512, 1024)
STEPS = 8
PROMPT = "a red fox in snow"


def direct_call(size: int) -> Callable[[], object]:
    import torch
    from diffusers import FlowMatchEulerDiscreteScheduler

    from zimage_ui.providers.local.tiny_model import build_tiny_pipeline

    pipeline = build_tiny_pipeline()

    def run() -> object:
        pipeline.scheduler = FlowMatchEulerDiscreteScheduler.from_config(
            pipeline.scheduler.config, shift=3.0, use_dynamic_shifting=False
        )
        return pipeline(  # type: ignore[operator]
            prompt=PROMPT,
            width=size,
            height=size,
            num_inference_steps=STEPS,
            guidance_scale=0.0,
            generator=torch.Generator("cpu").manual_seed(7),
        ).images[0]

    return run


def runner_call(size: int, loop: asyncio.AbstractEventLoop) -> Callable[[], object]:
    """`generate_one` on one long-lived event loop, as the app runs it (a new loop per call would
    add its own setup and teardown)."""
    params = GenerationParams(prompt=PROMPT, width=size, height=size, num_inference_steps=STEPS, seed=7)

    def run() -> object:
        outcome = loop.run_until_complete(generate_one("diffusers-tiny", params))
        assert outcome.ok and outcome.pngs, outcome.error
        return outcome.pngs

    return run


def call_generate(http: httpx.Client, api: str, session: str, named: dict[str, object]) -> bytes:
    """One /generate over Gradio's /call route; the first image's PNG fetched."""
    answer = call_api(
        http, api, "generate", {"prompt": PROMPT, "provider": "diffusers-tiny", **named}, session
    )
    assert answer is not None, "the call did not complete"
    return http.get(answer[0][0]["image"]["url"]).content


def client_call(client: Client, size: int) -> Callable[[], object]:
    def run() -> object:
        return client.predict(
            PROMPT, "diffusers-tiny", width=size, height=size, steps=STEPS, seed=7, api_name="/generate"
        )

    return run


def round_trips(url: str, repeats: int) -> None:
    api = api_url(url)
    columns = ["size", "direct s", "runner s", "app raw HTTP s", "gradio_client s"]
    columns += ["runner/direct", "app/direct", "client/direct"]
    print("| " + " | ".join(columns) + " |")
    print("|---|---|---|---|---|---|---|---|")
    with httpx.Client(timeout=300) as http:
        client = Client(api, verbose=False, download_files=tempfile.mkdtemp())
        loop = asyncio.new_event_loop()
        for size in SIZES:
            session = uuid.uuid4().hex
            settings = {"width": size, "height": size, "steps": STEPS, "seed": 7}
            paths: dict[str, Callable[[], object]] = {
                "direct": direct_call(size),
                "runner": runner_call(size, loop),
                "raw": functools.partial(call_generate, http, api, session, settings),
                "client": client_call(client, size),
            }
            for work in paths.values():  # warm: first calls build and cache
                work()
            times: dict[str, list[float]] = {name: [] for name in paths}
            for _ in range(repeats):  # interleaved: each round runs every path once
                for name, work in paths.items():
                    started = time.perf_counter()
                    work()
                    times[name].append(time.perf_counter() - started)
            m = {name: statistics.median(values) for name, values in times.items()}
            print(
                f"| {size}² | {m['direct']:.3f} | {m['runner']:.3f} | {m['raw']:.3f} | {m['client']:.3f} "
                f"| {m['runner'] / m['direct']:.2f} | {m['raw'] / m['direct']:.2f} "
                f"| {m['client'] / m['direct']:.2f} |"
            )


def sessions(url: str, count: int) -> None:
    api, pid = api_url(url), app_pid(url)

    def providers(http: httpx.Client, session: str) -> None:
        event = http.post(f"{api}gradio_api/call/providers", json={"data": [], "session_hash": session})
        http.get(f"{api}gradio_api/call/providers/{event.json()['event_id']}").raise_for_status()

    with httpx.Client(timeout=60) as http:
        for _ in range(20):  # warm: imports, first allocations
            providers(http, uuid.uuid4().hex)
        one = uuid.uuid4().hex
        before = rss_mib(pid)
        for _ in range(count):
            providers(http, one)
        same = rss_mib(pid)
        for _ in range(count):
            providers(http, uuid.uuid4().hex)
        after = rss_mib(pid)
    print(
        f"\n| calls | app RSS before MiB | after {count} calls in one session | after {count} new sessions |"
    )
    print("|---|---|---|---|")
    print(
        f"| {count} | {before:.0f} | {same:.0f} (+{same - before:.1f}) | {after:.0f} (+{after - same:.1f}) |"
    )


def page_session_cost(page: Any) -> tuple[float, float]:
    """(ms, KiB) one new page session costs: a median of 20 builds, memory kept by 10."""
    import gc
    import tracemalloc

    from gradio.state_holder import SessionState

    SessionState(page)  # warm
    times = []
    for _ in range(20):
        started = time.perf_counter()
        SessionState(page)
        times.append((time.perf_counter() - started) * 1000)
    gc.collect()
    tracemalloc.start()
    kept = [SessionState(page) for _ in range(10)]
    used = tracemalloc.get_traced_memory()[0] / len(kept) / 1024
    tracemalloc.stop()
    return statistics.median(times), used


def page_sessions() -> None:
    import gradio as gr

    from zimage_ui.ui import build_demo

    page = build_demo()
    kept_ms, kept_kib = page_session_cost(page)
    for block in page.blocks.values():  # Gradio's own UploadButton: the schema on every call
        if isinstance(block, gr.UploadButton):
            block.__dict__.pop("api_info", None)
    rebuilt_ms, rebuilt_kib = page_session_cost(page)
    print(f"\n| new page session ({len(page.blocks)} blocks) | ms (median of 20) | KiB kept |")
    print("|---|---|---|")
    print(f"| upload schema kept | {kept_ms:.1f} | {kept_kib:.0f} |")
    print(f"| rebuilt by Gradio each time | {rebuilt_ms:.1f} | {rebuilt_kib:.0f} |")
    print(f"| kept / rebuilt | {kept_ms / rebuilt_ms:.2f} | {kept_kib / rebuilt_kib:.2f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--sessions", type=int, default=300)
    parser.add_argument("--delay", type=float, default=0.5, help="seconds each emulated job takes")
    args = parser.parse_args()
    print(f"machine: {machine()}")
    with running_app({"ZIMAGE_SERVER_KEYS": "none", "NO_PROXY": "127.0.0.1,localhost"}) as url:
        print(f"load average at start: {' '.join(f'{v:.2f}' for v in os.getloadavg())}\n")
        round_trips(url, args.repeats)
        sessions(url, args.sessions)
        page_sessions()
        print(f"\nload average at end: {' '.join(f'{v:.2f}' for v in os.getloadavg())}\n")
    for line in hosted_tables(args.delay, 1024, args.repeats):
        print(line)


if __name__ == "__main__":
    main()
