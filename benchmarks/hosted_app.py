"""The app under hosted work: does a big sweep hold its event loop, and what does Compare add?

Starts the real app (`python app.py --mcp`) against the loopback RunPod emulator (each job
`--delay` s). Event loop: a probe thread asks the app for a tiny answer (an unknown MCP image
link: a 404 made on the event loop, nothing else) every 10 ms, first alone, then through a 6x6
sweep of 1024² cells on `/api/` to its end (the grid and the cells handed to the client); a
stall shows as probe latency (p50, p95, max). Compare: a 4-side `/compare` against one side's
`/generate`, over raw HTTP (the app's own time) and through `gradio_client` (which also
downloads each image), medians of `--runs`, interleaved.

    python -m benchmarks.hosted_app [--delay 0.5] [--size 1024] [--runs 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import threading
import time
from collections.abc import Callable

import httpx
from gradio_client import Client

from benchmarks._machine import machine
from tests.emulators import running
from tests.serving import api_url, call_api, running_app

PROBE_EVERY_S = 0.01


def probe(url: str, stop: threading.Event, latencies: list[float]) -> None:
    with httpx.Client(timeout=30) as http:
        while not stop.is_set():
            started = time.perf_counter()
            http.get(f"{url}gradio_api/mcp/images/{'x' * 24}.png")
            latencies.append(time.perf_counter() - started)
            time.sleep(PROBE_EVERY_S)


def probed(url: str, work: object) -> list[float]:
    latencies: list[float] = []
    stop = threading.Event()
    thread = threading.Thread(target=probe, args=(url, stop, latencies))
    thread.start()
    try:
        if callable(work):
            work()
    finally:
        stop.set()
        thread.join()
    return latencies


def row(name: str, latencies: list[float], took: float) -> str:
    ms = sorted(1000 * value for value in latencies)
    p95 = ms[min(len(ms) - 1, int(0.95 * len(ms)))]
    return f"| {name} | {took:.1f} | {len(ms)} | {statistics.median(ms):.1f} | {p95:.1f} | {ms[-1]:.1f} |"


def raw_call(http: httpx.Client, api: str, name: str, given: dict[str, object]) -> None:
    """One call over Gradio's `/call` route, to its last event (no file downloaded)."""
    assert call_api(http, api, name, given, "probe") is not None, f"/{name} did not complete"


def compare_rows(client: Client, api: str, runs: int, size: int) -> list[str]:
    """A 4-side hosted compare against one side alone, interleaved, medians: over raw HTTP (the
    app's own time) and through `gradio_client` (which then downloads every image, one by one)."""
    one = {"prompt": "a red fox", "width": size, "height": size, "seed": 7}
    single, four = {**one, "provider": "runpod"}, {**one, "sides": "; ".join(["runpod"] * 4)}
    with httpx.Client(timeout=120) as http:
        paths: dict[str, Callable[[], object]] = {
            "raw HTTP: one side (/generate)": lambda: raw_call(
                http, api, "generate", {**one, "provider": "runpod"}
            ),
            "raw HTTP: 4 sides (/compare)": lambda: raw_call(http, api, "compare", four),
            "gradio_client: one side": lambda: client.predict(**single, api_name="/generate"),
            "gradio_client: 4 sides": lambda: client.predict(**four, api_name="/compare"),
        }
        for work in paths.values():  # warm
            work()
        times: dict[str, list[float]] = {name: [] for name in paths}
        for _ in range(runs):
            for name, work in paths.items():
                started = time.perf_counter()
                work()
                times[name].append(time.perf_counter() - started)
    medians = {name: statistics.median(values) for name, values in times.items()}
    rows = ["| path | median s | 4 sides minus one side |", "|---|---|---|"]
    names = list(medians)
    for single, together in ((names[0], names[1]), (names[2], names[3])):
        rows.append(f"| {single} | {medians[single]:.3f} | |")
        rows.append(
            f"| {together} | {medians[together]:.3f} | {medians[together] - medians[single]:+.3f} s |"
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--delay", type=float, default=0.5, help="seconds each emulated job takes")
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    print(f"machine: {machine()}")
    for line in hosted_tables(args.delay, args.size, args.runs):
        print(line)


def hosted_tables(delay: float, size: int, runs: int) -> list[str]:
    lines = []
    with running("runpod") as emulators:
        emulators["runpod"].behaviour.job_delay_s = delay
        emulators["runpod"].behaviour.sync_wait_s = delay + 1  # /runsync answers when the job ends, as
        # the real one does within 90 s: the figures are the app's, not a polling interval's
        env = {**emulators["runpod"].env(), "NO_PROXY": "127.0.0.1,localhost", "GRADIO_MCP_SERVER": "true"}
        with running_app(env) as url:
            client = Client(api_url(url), verbose=False)
            lines.append(f"load average at start: {' '.join(f'{v:.2f}' for v in os.getloadavg())}\n")

            def sweep() -> None:
                status, _grid, cells = client.predict(
                    "a red fox", "runpod", "seed", "1-6", "shift", "1-6",
                    width=size, height=size, api_name="/sweep",
                )  # fmt: skip
                assert len(cells) == 36, status

            sweep()  # warm: imports, the first grid
            started = time.perf_counter()
            alone = probed(url, lambda: time.sleep(3))
            alone_s = time.perf_counter() - started
            started = time.perf_counter()
            during = probed(url, sweep)
            during_s = time.perf_counter() - started
            lines += [
                f"Event loop: sweep of 36 cells of {size}², RunPod emulator, {delay} s a job, 6 at a time\n",
                "| probe | seconds | probes | p50 ms | p95 ms | max ms |",
                "|---|---|---|---|---|---|",
                row("alone", alone, alone_s),
                row("during the sweep", during, during_s),
                f"\nCompare: RunPod emulator, {delay} s a job, {size}²\n",
                *compare_rows(client, api_url(url), runs, size),
            ]
    lines.append(f"\nload average at end: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    return lines


if __name__ == "__main__":
    main()
