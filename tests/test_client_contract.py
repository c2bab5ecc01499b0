"""The API as a client that has nothing of this project sees it: a venv holding only
`gradio_client` (made by scripts/test.sh) runs the README's calls against the running app."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

CLIENT_VENV = Path(os.environ.get("TEST_CLIENT_VENV") or "/tmp/zimage-ui-client-venv")
CALLS = Path(__file__).with_name("clients") / "gradio_client_calls.py"
README = Path(__file__).resolve().parent.parent / "README.md"


def test_a_client_with_only_gradio_client_gets_what_the_readme_promises(plain_app: str):
    python = CLIENT_VENV / "bin" / "python"
    assert python.exists(), f"{python} is missing: run scripts/test.sh, which makes the client venv"
    probe = "import importlib.util as u; print(u.find_spec('zimage_ui'), u.find_spec('gradio'))"
    isolated = subprocess.run([str(python), "-c", probe], capture_output=True, text=True, cwd="/", timeout=60)
    assert isolated.stdout.split() == ["None", "None"], isolated  # only the client, none of us
    shown = re.search(r'Client\("http://127\.0\.0\.1:7860/([^"]*)"\)', README.read_text())
    assert shown and shown[1] == "api/", "the README's client example gives the API's address"
    address = plain_app.rstrip("/") + "/" + shown[1]
    run = subprocess.run(
        [str(python), str(CALLS), address], capture_output=True, text=True, cwd="/", timeout=300
    )
    assert run.returncode == 0, run.stderr[-3000:]
    got = json.loads(run.stdout)

    assert "Done" in got["positional"]["status"] and got["positional"]["seed"].isdigit()
    assert got["positional"]["sent"]["seed"] == int(got["positional"]["seed"])
    for given in ("seed 7", "seed '7'"):  # a seed given is the seed used, as a number or its digits
        assert got[given]["seed"] == "7" and got[given]["sent"]["seed"] == 7
        assert got[given]["sent"]["steps"] == 2 and got[given]["sent"]["width"] == 256
    assert got["seed 7"]["png_bytes"] == got["seed '7'"]["png_bytes"]

    report = got["compare"]["report"]
    assert [side["steps"] for side in report["sides"]] == [2, 4] and report["seed"] == 5
    assert got["compare"]["images"] == ["diffusers-tiny (steps 2)", "diffusers-tiny (steps 4)"]
    assert got["sweep"]["cells"] == ["Steps: 1", "Steps: 2"] and "2 cells" in got["sweep"]["status"]

    refused = got["steps 2.5"]
    assert "steps" in refused and "2.5" in refused and "whole number" in refused
