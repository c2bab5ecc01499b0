"""`python -m tests.emulators`: starts the five emulators and prints working export lines."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from zimage_ui.params import GenerationParams
from zimage_ui.providers import PROVIDERS
from zimage_ui.providers.base import KeyRing

ROOT = Path(__file__).resolve().parent.parent


async def test_main_prints_exports_that_work(monkeypatch: pytest.MonkeyPatch) -> None:
    command = [sys.executable, "-m", "tests.emulators", "--port-base", "0", "--job-delay", "0.2"]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert process.stdout is not None
        lines = []
        for line in process.stdout:
            lines.append(line.strip())
            if "Ctrl+C" in line or len(lines) > 30:
                break
        exports = dict(
            line.removeprefix("export ").split("=", 1) for line in lines if line.startswith("export ")
        )
        assert set(exports) >= {f"ZIMAGE_{pid.upper()}_BASE_URL" for pid in ("scenario", "runpod", "evolink")}
        assert {"SCENARIO_SDK_API_KEY", "INFERENCE_API_KEY", "AIML_API_KEY", "RUNPOD_API_KEY"} <= set(exports)
        for name, value in exports.items():
            monkeypatch.setenv(name, value)
        monkeypatch.setenv("ZIMAGE_POLL_INTERVAL_S", "0.05")
        monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
        provider = PROVIDERS["evolink"]
        result = await provider.run(
            provider.prepare(GenerationParams(prompt="a kite", seed=5)), keys=KeyRing()
        )
        assert result.images[0].size == (1024, 1024)
        assert result.elapsed_s >= 0.2
    finally:
        process.terminate()
        process.wait(timeout=10)
