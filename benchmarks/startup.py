"""Time from `python app.py` to a served page, and the tiny model's time per image size.

python -m benchmarks.startup [--runs 3]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

from benchmarks._machine import machine
from tests.serving import running_app
from zimage_ui.params import GenerationParams
from zimage_ui.runner import generate_one


def time_to_page() -> float:
    started = time.perf_counter()
    with running_app():
        return time.perf_counter() - started


def time_tiny(side: int) -> float:
    params = GenerationParams(prompt="a red fox", width=side, height=side, seed=1)
    outcome = asyncio.run(generate_one("diffusers-tiny", params))
    assert outcome.ok, outcome.error
    return outcome.elapsed_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    page = statistics.median(time_to_page() for _ in range(args.runs))
    time_tiny(256)  # builds the tiny model once
    sizes = {side: statistics.median(time_tiny(side) for _ in range(args.runs)) for side in (256, 512, 1024)}
    print(f"machine: {machine()}")
    print(f"median of {args.runs} runs")
    print(f"{'case':<40}{'median s':>10}")
    print(f"{'python app.py -> page served':<40}{page:>10.2f}")
    for side, seconds in sizes.items():
        print(f"{f'diffusers-tiny {side}x{side}, 8 steps':<40}{seconds:>10.2f}")


if __name__ == "__main__":
    main()
