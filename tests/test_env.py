"""The environment is declared once (`zimage_ui.env`) and read nowhere else."""

from __future__ import annotations

import ast
import json
import logging
import re
from pathlib import Path

import pytest

from tests.test_cli import cli
from zimage_ui import env
from zimage_ui.net.session import poll_interval_s, timeout_s
from zimage_ui.providers.base import KeyRing

ROOT = Path(__file__).resolve().parent.parent


def _reads_the_environment(tree: ast.AST) -> list[int]:
    """Lines that touch `os.environ`, `os.getenv` or `from os import environ/getenv`."""
    lines = []
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and node.attr in {"environ", "getenv", "putenv"}
            and isinstance(node.value, ast.Name)
            and node.value.id == "os"
        ) or (
            isinstance(node, ast.ImportFrom)
            and node.module == "os"
            and any(alias.name in {"environ", "getenv"} for alias in node.names)
        ):
            lines.append(node.lineno)
    return sorted(lines)


def test_only_the_env_module_reads_the_environment():
    sources = [*sorted((ROOT / "zimage_ui").rglob("*.py")), ROOT / "app.py"]
    readers = {
        str(path.relative_to(ROOT)): found
        for path in sources
        if path.name != "env.py" or path.parent.name != "zimage_ui"
        if (found := _reads_the_environment(ast.parse(path.read_text(encoding="utf-8"))))
    }
    assert readers == {}


def test_the_reader_check_sees_each_way_of_reading():
    code = "import os\nfrom os import environ\na = os.environ.get('X')\nb = os.getenv('Y')\n"
    assert _reads_the_environment(ast.parse(code)) == [2, 3, 4]


def _readme_variables() -> set[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    table = text.split("## Configuration", 1)[1]
    names: set[str] = set()
    for line in table.splitlines():
        if not line.startswith("| `"):
            if names and not line.startswith("|"):
                break
            continue
        first = line.split("|")[1]
        names.update(re.findall(r"`([A-Z][A-Z0-9_]+)`", first))
    return names


def test_the_readme_table_lists_exactly_the_declared_variables():
    assert _readme_variables() == set(env.NAMES)


def test_the_readme_names_each_pattern():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert [pattern.shape for pattern in env.PATTERNS if f"`{pattern.shape}`" not in text] == []


def test_values_are_read_at_call_time_and_typed(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("ZIMAGE_TIMEOUT_S", " 12.5 ")
    monkeypatch.setenv("ZIMAGE_POLL_INTERVAL_S", "0.25")
    assert (timeout_s(), poll_interval_s()) == (12.5, 0.25)
    monkeypatch.setenv("ZIMAGE_TIMEOUT_S", "40")
    assert timeout_s() == 40.0
    assert env.get("GRADIO_SERVER_PORT") == 7860 and isinstance(env.get("GRADIO_SERVER_PORT"), int)


@pytest.mark.parametrize("text", ["abc", "-3", "0", "inf-ish"])
def test_an_unreadable_value_is_the_default_with_a_warning(monkeypatch, caplog, text: str):
    monkeypatch.setenv("ZIMAGE_TIMEOUT_S", text)
    with caplog.at_level(logging.WARNING, logger="zimage_ui.env"):
        assert timeout_s() == 300.0
    assert "ZIMAGE_TIMEOUT_S is not readable as float" in caplog.text


def test_an_undeclared_name_is_a_bug_not_an_empty_value():
    with pytest.raises(KeyError, match="ZIMAGE_TIMEOUT_SECONDS is not declared"):
        env.raw("ZIMAGE_TIMEOUT_SECONDS")


def test_every_provider_key_and_base_url_is_declared():
    from zimage_ui.providers import PROVIDERS

    names = {
        name
        for provider in PROVIDERS.values()
        for name in (*provider.key_names, getattr(provider, "base_url_var", None) or "")
        if name
    }
    assert names and [name for name in sorted(names) if not env.declared(name)] == []


def test_named_endpoints_match_the_pattern_and_keys_are_found(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("ZIMAGE_OPENAI_LAB_API_KEY", " lab-key-123 ")
    assert env.declared("ZIMAGE_OPENAI_LAB_BASE_URL") and not env.declared("ZIMAGE_OPENAI_LAB")
    assert KeyRing().get("ZIMAGE_OPENAI_LAB_API_KEY") == "lab-key-123"
    assert KeyRing(use_env=False).get("ZIMAGE_OPENAI_LAB_API_KEY") is None


def test_the_env_command_lists_sources_and_masks_secrets(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("HF_TOKEN", "hf_abcdefghijklmnop")
    monkeypatch.setenv("ZIMAGE_OPENAI_LAB_API_KEY", "sk-lab-secret-value")
    monkeypatch.setenv("ZIMAGE_OPENAI_LAB_BASE_URL", "http://user:pass@gpu-box:30000/v1?token=tok123")
    monkeypatch.setenv("ZIMAGE_SWEEP_MAX_CELLS", "many")
    monkeypatch.delenv("ZIMAGE_TIMEOUT_S", raising=False)
    run = cli("env", "--json")
    assert run.returncode == 0, run.stderr
    out = run.stdout
    rows = {row["name"]: row for row in map(json.loads, out.splitlines())}
    assert set(env.NAMES) <= set(rows)
    assert rows["HF_TOKEN"]["source"] == "set" and rows["HF_TOKEN"]["value"] == "********"
    assert rows["ZIMAGE_TIMEOUT_S"] == {**rows["ZIMAGE_TIMEOUT_S"], "source": "default", "value": "300.0"}
    assert rows["ZIMAGE_SWEEP_MAX_CELLS"]["source"] == "unreadable"
    assert rows["ZIMAGE_OPENAI_LAB_API_KEY"]["value"] == "********"
    for secret in ("abcdefghijklmnop", "sk-lab-secret-value", "pass", "tok123"):
        assert secret not in out
    plain = cli("env")
    assert plain.returncode == 0 and "HF_TOKEN" in plain.stdout and "abcdefghijklmnop" not in plain.stdout
