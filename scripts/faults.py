"""Write docs/faults.md: every hosted provider against its emulator meets every fault
(`tests/test_fault_matrix.py`), and the message each run ended with is tabled.

    python scripts/faults.py
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "faults.md"


def main() -> int:
    env = {**os.environ, "ZIMAGE_FAULTS_DOC": str(DOC)}
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist"]
    run = subprocess.run([*command, "tests/test_fault_matrix.py"], cwd=ROOT, env=env, check=False)
    if run.returncode == 0:
        print(f"wrote {DOC.relative_to(ROOT)}")
    return run.returncode


if __name__ == "__main__":
    sys.exit(main())
