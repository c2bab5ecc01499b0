"""What a bystander feels while strangers attack one instance, and what it costs the server.

Starts the real app (`python app.py`) with three hosted providers pointed at the hostile test
server (`tests/hostile.py`): AIML API answers a 512 MB gzip bomb, EvoLink a `gzip, gzip` stack,
RunPod never answers (stalls until the run's deadline), and as a control inference.sh answers a
plain 404 (what 5 busy clients cost a 2-core machine whatever they send). A bystander session
makes images on `diffusers-tiny` (256x256) again and again: first alone, then while 5 attacker
sessions keep hitting one attack. Reports the bystander's p50/p95 latency against alone and
against the control (target: p95 at most 1.5x), each attack's outcome, and the app's RSS before
and at its peak (target: under 300 MB of growth). The attackers, the bystander, the hostile server
and the app share the machine's cores. Loopback only, bounded in count and time.

    python -m benchmarks.hostile [--attackers 5] [--rounds 12]
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from gradio_client import Client

from benchmarks._machine import machine
from tests.hostile import HostileServer
from tests.serving import api_url, running_app

ATTACKS = {  # name: (provider, what its base URL points at)
    "control: plain 404 answers": ("inferencesh", "/nothing"),
    "answer bomb (gzip, 512 MB)": ("aimlapi", "/bomb.json"),
    "stacked gzip answer": ("evolink", "/stacked.png"),
    "stalled provider": ("runpod", "/stall"),
}


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        line = next(line for line in status if line.startswith("VmRSS:"))
    return int(line.split()[1]) / 1024


def app_pid(url: str) -> int:
    from benchmarks.load import app_pid as find

    return find(url)


def bystander(url: str, rounds: int) -> list[float]:
    client = Client(api_url(url), verbose=False)
    latencies = []
    for number in range(rounds):
        started = time.monotonic()
        client.predict(
            provider="diffusers-tiny", prompt=f"a harbour {number}", width=256, height=256,
            seed=7, api_name="/generate",
        )  # fmt: skip
        latencies.append(time.monotonic() - started)
    return latencies


def attacker(url: str, provider: str, stop: threading.Event, outcomes: list[str]) -> None:
    client = Client(api_url(url), verbose=False)
    while not stop.is_set():
        try:
            client.predict(provider=provider, prompt="x", seed=1, api_name="/generate")
            outcomes.append("answered")
        except Exception as exc:
            outcomes.append(str(exc).splitlines()[0][:110])


def p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20)[-1] if len(values) > 1 else values[0]


def watch_rss(pid: int, stop: threading.Event, peak: list[float]) -> None:
    while not stop.is_set():
        peak[0] = max(peak[0], rss_mb(pid))
        time.sleep(0.05)


def under_attack(
    url: str, pid: int, rounds: int, attackers: int, attack: Callable[..., None] | None, provider: str
) -> tuple[list[float], list[str], float]:
    stop, outcomes, peak = threading.Event(), [], [rss_mb(pid)]
    watcher = threading.Thread(target=watch_rss, args=(pid, stop, peak), daemon=True)
    watcher.start()
    with ThreadPoolExecutor(attackers or 1) as pool:
        for _ in range(attackers if attack else 0):
            pool.submit(attacker, url, provider, stop, outcomes)
        time.sleep(1.0 if attack else 0)  # the attack is under way before the bystander starts
        latencies = bystander(url, rounds)
        stop.set()
    watcher.join()
    return latencies, outcomes, peak[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--attackers", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=12)
    args = parser.parse_args()
    with HostileServer() as server:
        env = {"ZIMAGE_SERVER_KEYS": "all", "ZIMAGE_TIMEOUT_S": "8", "ZIMAGE_MAX_ACTIVE_RUNS": "64"}
        for provider, path in ATTACKS.values():
            env[f"ZIMAGE_{provider.upper()}_BASE_URL"] = f"{server.url}{path}"
        env |= {name: "k" * 24 for name in ("AIML_API_KEY", "EVOLINK_API_KEY", "RUNPOD_API_KEY")}
        env["INFERENCE_API_KEY"] = "k" * 24
        with running_app(env) as url:
            pid = app_pid(url)
            bystander(url, 2)  # warm: the tiny model is built, the first session made
            start_rss = rss_mb(pid)
            alone, _, alone_peak = under_attack(url, pid, args.rounds, 0, None, "")
            rows = [("alone", alone, [], alone_peak)]
            for name, (provider, _path) in ATTACKS.items():
                latencies, outcomes, peak = under_attack(
                    url, pid, args.rounds, args.attackers, attacker, provider
                )
                rows.append((name, latencies, outcomes, peak))
    print(f"machine: {machine()}")
    print(f"{args.attackers} attackers per attack, bystander: {args.rounds} diffusers-tiny 256² images")
    print(f"app RSS at start: {start_rss:.0f} MB")
    print()
    columns = ["attack", "bystander p50", "p95", "p95 vs alone", "vs control", "attacker requests"]
    columns.append("app RSS peak (growth)")
    print("| " + " | ".join([*columns, "what attackers saw"]) + " |")
    print("|---" * (len(columns) + 1) + "|")
    base = p95(alone)
    control = p95(rows[1][1])
    for name, latencies, outcomes, peak in rows:
        seen = max(set(outcomes), key=outcomes.count) if outcomes else "-"
        print(
            f"| {name} | {statistics.median(latencies):.2f} s | {p95(latencies):.2f} s | "
            f"{p95(latencies) / base:.2f}x | {p95(latencies) / control:.2f}x | {len(outcomes)} | "
            f"{peak:.0f} MB (+{peak - start_rss:.0f}) | {seen} |"
        )


if __name__ == "__main__":
    main()
