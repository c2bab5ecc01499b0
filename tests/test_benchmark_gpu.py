"""`python -m benchmarks.gpu` runs here on the CPU (the tiny model, the provider's own code path)."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_gpu_benchmark_prints_its_table_on_the_cpu():
    run = subprocess.run(
        [sys.executable, "-m", "benchmarks.gpu", "--device", "cpu", "--size", "256", "--steps", "2",
         "--repeats", "1"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    table = run.stdout[run.stdout.index("| option |") :].splitlines()
    assert table[0].split("|")[1:-1] == [
        " option ", " on ", " text s ", " denoise s ", " decode s ", " PNG s ", " total s ", " vs plain ",
        " peak GiB ",
    ]  # fmt: skip
    rows = {line.split("|")[1].strip(): line.split("|")[2:-1] for line in table[2:] if line.startswith("|")}
    assert set(rows) == {
        "plain (native attention, eager)",
        "default (chosen attention + compile)",
        "default + prompt cache (a re-roll)",
    }  # the GPU-only rows are left out on the CPU
    for cells in rows.values():
        assert "attention: native" in cells[0]
        assert all(float(cell.strip().rstrip("x")) >= 0 for cell in cells[1:])
    assert rows["plain (native attention, eager)"][6].strip() == "1.00x"
    assert "machine:" in run.stdout and "no GPU" in run.stdout and "model: the tiny model" in run.stdout
