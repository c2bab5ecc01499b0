"""Many sessions at once on one instance: throughput, latency, cross-talk, memory and files.

Starts the real app (`python app.py`) against the loopback emulators, then N sessions (one
keep-alive HTTP client and session hash each, in threads, on the API's raw `/call` route) make
M requests each on one hosted provider, all with the
same seed and each with its own prompt. Every emulated job takes `--delay` seconds, so the
ideal is N requests per delay. Reports requests/s against that ideal, p50/p95 latency,
errors, cross-talk (a PNG holding another session's prompt), the app's RSS before and after,
the files it left, and the app's own CPU time per request. Loopback only, bounded in count.

    python -m benchmarks.load [--sessions 20] [--requests 5] [--provider runpod] [--delay 0.5]
    python -m benchmarks.load --provider diffusers-tiny --size 256   # the local line (no ideal)
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from benchmarks._machine import machine
from tests.emulators import EMULATORS, running
from tests.serving import api_url, call_api, running_app
from zimage_ui.metadata import read_text_chunks

SEED = "1234"
TICKS = os.sysconf("SC_CLK_TCK")


def app_pid(url: str) -> int:
    """The process serving `url` (found by the port on its command line)."""
    port = str(urlsplit(url).port).encode()
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmdline = (proc / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"--port" in cmdline and port in cmdline and any(arg.endswith(b".py") for arg in cmdline):
                return int(proc.name)
    raise RuntimeError(f"no app process serves {url}")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def files_under(folder: Path) -> int:
    return sum(1 for path in folder.rglob("*") if path.is_file())


def session(url: str, provider: str, index: int, requests: int, size: int) -> tuple[list[float], int, int]:
    """One visitor: a keep-alive HTTP client and one session hash, `requests` calls one after another
    over Gradio's `/call` route, each answer's first PNG fetched and its prompt checked."""
    latencies, errors, crosstalk = [], 0, 0
    with httpx.Client(timeout=300) as http:
        session_hash = uuid.uuid4().hex
        for number in range(requests):
            prompt = f"session {index} request {number}: a harbour at dusk"
            given = {
                "prompt": prompt,
                "provider": provider,
                "width": size,
                "height": size,
                "seed": SEED,
                "steps": 8,
            }
            started = time.perf_counter()
            answer = call_api(http, url, "generate", given, session_hash)
            if answer is None:
                errors += 1
                continue
            gallery = answer[0]
            png = http.get(gallery[0]["image"]["url"]).content
            latencies.append(time.perf_counter() - started)
            crosstalk += read_text_chunks(png)["parameters"].split("\n")[0] != prompt
    return latencies, errors, crosstalk


def measure(url: str, args: argparse.Namespace, scratch: Path) -> tuple:
    """Run every session against `url`; results, wall time, the server's CPU s, RSS, files left."""
    pid = app_pid(url)
    session(url, args.provider, -1, 1, args.size)  # warm up: first request, imports
    rss_before, files_before, cpu_before = rss_mib(pid), files_under(scratch), cpu_seconds(pid)
    started, own_before = time.perf_counter(), time.process_time()
    with ThreadPoolExecutor(args.sessions) as pool:
        results = list(
            pool.map(lambda i: session(url, args.provider, i, args.requests, args.size), range(args.sessions))
        )
    wall, own = time.perf_counter() - started, time.process_time() - own_before
    cpu = cpu_seconds(pid) - cpu_before
    files_left = files_under(scratch) - files_before
    return results, wall, cpu, rss_before, rss_mib(pid), files_left, own


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=20)
    parser.add_argument("--requests", type=int, default=5, help="requests per session, one after another")
    parser.add_argument("--provider", default="runpod")
    parser.add_argument("--delay", type=float, default=0.5, help="seconds each emulated job takes")
    parser.add_argument("--size", type=int, default=512)
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="zimage-load-"))
    emulated = args.provider in EMULATORS  # else a local provider: one device, first come first served
    with running(args.provider) if emulated else nullcontext({}) as emulators:
        for emulator in emulators.values():
            emulator.behaviour.job_delay_s = args.delay
            emulator.behaviour.sync_wait_s = args.delay + 1
        env = {
            **(emulators[args.provider].env() if emulated else {}),
            "ZIMAGE_POLL_INTERVAL_S": "0.05",
            "NO_PROXY": "127.0.0.1,localhost",
            "TMPDIR": str(scratch),  # the app's Gradio cache and run folders, to count files left
        }
        with running_app(env) as url:
            measured = measure(api_url(url), args, scratch)  # the app's API: its own small Blocks
    bare_env = {"TMPDIR": str(scratch), "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    with running_app(bare_env, script="benchmarks/bare_app.py") as url:
        floor = measure(url, args, scratch)
    shutil.rmtree(scratch, ignore_errors=True)
    results, wall, cpu, rss_before, rss_after, files_left, own = measured
    latencies = sorted(value for result in results for value in result[0])
    errors, crosstalk = sum(r[1] for r in results), sum(r[2] for r in results)
    done = len(latencies)
    ideal = args.sessions / args.delay if emulated else float("nan")
    p95 = latencies[min(len(latencies) - 1, int(0.95 * len(latencies)))] if latencies else float("nan")
    print(f"machine: {machine()} (threads: {threading.active_count()})")
    print(
        f"{args.sessions} sessions x {args.requests} requests on {args.provider} "
        + (f"(emulated, {args.delay:g} s a job)" if emulated else "(local, one device)")
        + f", {args.size}x{args.size}, one seed, a prompt per request"
    )
    rows = [
        ("requests done", f"{done} of {args.sessions * args.requests}"),
        ("errors", str(errors)),
        ("cross-talk (another session's prompt)", str(crosstalk)),
        ("requests/s", f"{done / wall:.1f}"),
        ("ideal requests/s (sessions / delay)", f"{ideal:.1f}"),
        ("ratio to ideal", f"{done / wall / ideal:.2f}"),
        ("latency p50 s", f"{statistics.median(latencies):.3f}" if latencies else "-"),
        ("latency p95 s", f"{p95:.3f}"),
        ("p95 / p50", f"{p95 / statistics.median(latencies):.2f}" if latencies else "-"),
        ("app CPU ms per request (whole process)", f"{1000 * cpu / max(done, 1):.1f}"),
        ("bare Gradio page, same I/O: CPU ms per request", f"{1000 * floor[2] / max(done, 1):.1f}"),
        ("the app's own CPU ms per request (difference)", f"{1000 * (cpu - floor[2]) / max(done, 1):.1f}"),
        ("app RSS MiB before -> after", f"{rss_before:.0f} -> {rss_after:.0f}"),
        ("files left (cache + run folders)", f"{files_left}, removed after ZIMAGE_CACHE_TTL_S"),
        ("this benchmark's own CPU s (the clients)", f"{own:.1f} ({own / wall:.2f} cores)"),
    ]
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")


if __name__ == "__main__":
    main()
