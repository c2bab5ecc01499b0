"""A comparison takes about as long as its slowest side, not the sum.

Five hosted sides run against the loopback emulators, each job held for a set delay
(1 s by default). Prints the median wall time of one side alone and of all five at
once, and their ratio (ideal: 1.0; the sum would be 5.0).

    python -m benchmarks.compare_concurrency [--delay 1.0] [--runs 5]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time

from benchmarks._machine import machine
from tests.emulators import running
from zimage_ui.compare import Side, run_comparison
from zimage_ui.params import GenerationParams
from zimage_ui.runner import generate_one

HOSTED = ("scenario", "inferencesh", "aimlapi", "evolink", "runpod")
PARAMS = GenerationParams(prompt="a red fox", width=512, height=512, seed=7)


async def one_side(provider: str) -> float:
    started = time.perf_counter()
    outcome = await generate_one(provider, PARAMS)
    assert outcome.ok, outcome.error
    return time.perf_counter() - started


async def all_sides() -> float:
    started = time.perf_counter()
    outcomes = await run_comparison([Side(provider=p) for p in HOSTED], PARAMS)
    assert all(o.ok for o in outcomes), [o.error for o in outcomes]
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--delay", type=float, default=1.0, help="seconds each emulated job takes")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    os.environ.setdefault("ZIMAGE_POLL_INTERVAL_S", "0.05")
    with running(*HOSTED) as emulators:
        for emulator in emulators.values():
            os.environ.update(emulator.env())
            emulator.behaviour.job_delay_s = args.delay
            emulator.behaviour.sync_wait_s = args.delay + 1  # RunPod's runsync answers when done
        singles = {p: statistics.median(asyncio.run(one_side(p)) for _ in range(args.runs)) for p in HOSTED}
        together = statistics.median(asyncio.run(all_sides()) for _ in range(args.runs))
    slowest = max(singles.values())
    print(f"machine: {machine()}")
    print(
        f"emulated job delay {args.delay:.2f} s, poll interval {os.environ['ZIMAGE_POLL_INTERVAL_S']} s, "
        f"median of {args.runs} runs"
    )
    print(f"{'case':<28}{'median s':>10}{'ratio to slowest side':>24}")
    for provider, seconds in singles.items():
        print(f"{'1 side: ' + provider:<28}{seconds:>10.3f}{seconds / slowest:>24.2f}")
    print(f"{'5 sides at once':<28}{together:>10.3f}{together / slowest:>24.2f}")
    print(f"{'sum of the 5 sides':<28}{sum(singles.values()):>10.3f}{sum(singles.values()) / slowest:>24.2f}")


if __name__ == "__main__":
    main()
