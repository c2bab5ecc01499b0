"""Run all five emulators on fixed loopback ports so the page can be tried without keys.

python -m tests.emulators [--port-base 8701] [--job-delay 1.0]
"""

from __future__ import annotations

import argparse
import os
import time

from tests.emulators import export_lines, running


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.emulators", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--port-base",
        type=int,
        default=int(os.environ.get("ZIMAGE_EMULATOR_PORT_BASE", "8701")),
        help="first port; the five emulators take this one and the next four (default 8701; 0: free ports)",
    )
    parser.add_argument("--job-delay", type=float, default=1.0, help="seconds each job takes (default 1)")
    args = parser.parse_args()
    with running(port_base=args.port_base) as emulators:
        for emulator in emulators.values():
            emulator.behaviour.job_delay_s = args.job_delay
        print("# Emulators of the hosted APIs are running. In the shell that starts the app:")
        print("\n".join(export_lines(emulators)), flush=True)
        print("# Press Ctrl+C to stop.", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
