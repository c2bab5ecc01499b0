"""Deployment files agree with each other and with the code."""

import re
from pathlib import Path

import yaml

from zimage_ui.providers import PROVIDERS

ROOT = Path(__file__).resolve().parent.parent


def readme_front_matter() -> dict:
    text = (ROOT / "README.md").read_text()
    match = re.match(r"---\n(.*?)\n---\n", text, re.DOTALL)
    assert match, "README.md must start with YAML front matter for the Space"
    return yaml.safe_load(match.group(1))


def spaces() -> dict:
    return yaml.safe_load((ROOT / "spaces.yaml").read_text())


def requirement_pins() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        requirement = line.split("#")[0].strip()
        if "==" in requirement:
            name, version = requirement.split("==")
            pins[re.sub(r"\[.*\]", "", name).strip().lower()] = version.strip()  # gradio[mcp] -> gradio
    return pins


def test_readme_front_matter_equals_spaces_yaml():
    assert readme_front_matter() == spaces()["space"]


def test_sdk_version_matches_requirements():
    assert spaces()["space"]["sdk_version"] == requirement_pins()["gradio"]
    assert spaces()["space"]["app_file"] == "app.py"


def test_torch_is_pinned():
    assert requirement_pins()["torch"] == "2.13.0"


def test_secrets_are_exactly_the_keys_the_app_reads():
    """Every provider's key and the prompt enhancer's: each a Space secret, none a variable."""
    from zimage_ui import env

    providers = {name for provider in PROVIDERS.values() for name in provider.key_names}
    keys = {
        name
        for name, field in env.Environment.model_fields.items()
        if (field.json_schema_extra or {}).get("group") == env.PROVIDER_KEYS  # type: ignore[union-attr]
    }
    assert providers <= keys
    assert set(spaces()["secrets"]) == keys


def test_every_environment_variable_the_code_reads_is_documented():
    code = "\n".join(p.read_text() for p in [ROOT / "app.py", *(ROOT / "zimage_ui").rglob("*.py")])
    read = set(re.findall(r"environ(?:\.get)?[\[(]\s*\"([A-Z][A-Z0-9_]+)\"", code))
    read |= {name for provider in PROVIDERS.values() for name in provider.key_names}
    readme = (ROOT / "README.md").read_text()
    missing = sorted(name for name in read if f"`{name}`" not in readme)
    assert not missing, f"document these in the README's configuration table: {missing}"


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    assert "<!-- test-command -->" in readme
    assert "test-command" in (ROOT / ".ci" / "run").read_text()
