import ast
import base64
import json
import os
import shlex
import subprocess
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from zimage_ui.codegen import copy_as_code, python_literal
from zimage_ui.keyguard import key_env_names
from zimage_ui.params import GenerationParams
from zimage_ui.providers import PROVIDERS
from zimage_ui.providers.base import KeyRing, PreparedRequest
from zimage_ui.providers.hosted.base import HostedProvider

ALL_HOSTED = [pid for pid, provider in PROVIDERS.items() if isinstance(provider, HostedProvider)]
HOSTED = [pid for pid in ALL_HOSTED if pid != "huggingface"]  # the ones whose code is an HTTP request
LOCAL = [pid for pid in PROVIDERS if pid not in ALL_HOSTED]
PARAMS = GenerationParams(
    prompt='it\'s a "fox", at: dawn\nünï ${HOME} `x` $(id)',
    negative_prompt="blur",
    guidance_scale=2.0,
    seed=42,
    width=768,
    height=512,
)


@pytest.fixture(autouse=True)
def fake_keys(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """A distinct, recognisable fake value in every provider key variable."""
    values = {name: f"fake-{name.lower()}-0123456789" for name in key_env_names()}
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    for provider in PROVIDERS.values():  # a self-hosted engine has no default address: give one
        if isinstance(provider, HostedProvider) and not provider.base_url():
            monkeypatch.setenv(provider.base_url_var, f"http://{provider.id}.test:30000/v1")
    return values


@pytest.fixture(params=HOSTED)
def hosted(request: pytest.FixtureRequest) -> Iterator[tuple[str, PreparedRequest]]:
    yield request.param, PROVIDERS[request.param].prepare(PARAMS)


def test_every_hosted_provider_is_covered():
    assert set(ALL_HOSTED) == {"scenario", "inferencesh", "aimlapi", "evolink", "runpod", "huggingface"} | {
        "openai-compatible",
        "comfyui",
    }


def test_no_key_value_in_either_text(hosted, fake_keys):
    provider_id, prepared = hosted
    for text in copy_as_code(prepared):
        for value in fake_keys.values():
            assert value not in text
        for name in PROVIDERS[provider_id].key_names:
            assert name in text


def test_python_is_valid_and_sends_what_was_prepared(hosted):
    _, prepared = hosted
    _, code = copy_as_code(prepared)
    tree = ast.parse(code)
    compile(tree, "<copied>", "exec")
    assigned = {node.targets[0].id: node.value for node in tree.body if isinstance(node, ast.Assign)}
    assert ast.literal_eval(assigned["URL"]) == prepared.url
    assert ast.literal_eval(assigned["BODY"]) == prepared.body


def run_python(code: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Run the copied code with httpx.request replaced: what would it send?"""
    sent: dict[str, Any] = {}

    def fake_request(method: str, url: str, **kwargs: Any) -> httpx.Response:
        sent.update(kwargs, method=method, url=url)
        return httpx.Response(200, json={"ok": True}, request=httpx.Request(method, url))

    monkeypatch.setattr(httpx, "request", fake_request)
    exec(compile(code, "<copied>", "exec"), {})
    return sent


def test_python_reads_the_key_from_the_environment_when_run(hosted, fake_keys, monkeypatch, capsys):
    provider_id, prepared = hosted
    provider = PROVIDERS[provider_id]
    assert isinstance(provider, HostedProvider)
    sent = run_python(copy_as_code(prepared)[1], monkeypatch)
    assert (sent["method"], sent["url"], sent["json"]) == (prepared.method, prepared.url, prepared.body)
    expected = provider.auth_headers(provider.key_values(KeyRing()))["Authorization"]
    if "auth" in sent:  # Basic auth built by httpx from (key, secret)
        request = httpx.Request("POST", prepared.url)
        header = next(httpx.BasicAuth(*sent["auth"]).auth_flow(request)).headers["Authorization"]
    else:
        header = sent["headers"]["Authorization"]
    assert header == expected
    assert capsys.readouterr().out.strip() == "{'ok': True}"


def test_curl_sends_what_was_prepared(hosted):
    _, prepared = hosted
    words = shlex.split(copy_as_code(prepared)[0])
    assert words[:4] == ["curl", "-X", "POST", prepared.url]
    assert json.loads(words[words.index("--data-raw") + 1]) == prepared.body


def test_curl_expands_the_key_only_when_run(hosted, fake_keys):
    provider_id, prepared = hosted
    curl, _ = copy_as_code(prepared)
    # A stand-in `curl` that prints its arguments: what the shell really passes.
    script = 'curl() { printf "%s\\n" "$@"; }\n' + curl
    result = subprocess.run(
        ["bash", "-c", script], capture_output=True, text=True, check=True, env=os.environ
    )
    args = result.stdout.splitlines()
    names = PROVIDERS[provider_id].key_names
    if provider_id == "scenario":
        assert args[args.index("-u") + 1] == f"{fake_keys[names[0]]}:{fake_keys[names[1]]}"
    else:
        assert f"Authorization: Bearer {fake_keys[names[0]]}" in args
    body = "\n".join(args[args.index("--data-raw") + 1 :])
    assert json.loads(body) == prepared.body  # nothing in the prompt was expanded by the shell


def test_scenario_basic_auth_is_built_from_env_references(fake_keys):
    curl, code = copy_as_code(PROVIDERS["scenario"].prepare(PARAMS))
    assert '-u "$SCENARIO_SDK_API_KEY:$SCENARIO_SDK_API_SECRET"' in curl
    assert 'auth=(os.environ["SCENARIO_SDK_API_KEY"], os.environ["SCENARIO_SDK_API_SECRET"])' in code
    key, secret = fake_keys["SCENARIO_SDK_API_KEY"], fake_keys["SCENARIO_SDK_API_SECRET"]
    assert base64.b64encode(f"{key}:{secret}".encode()).decode() not in curl + code


def test_bearer_auth_is_an_env_reference():
    curl, code = copy_as_code(PROVIDERS["runpod"].prepare(PARAMS))
    assert '-H "Authorization: Bearer $RUNPOD_API_KEY"' in curl
    assert '"Authorization": "Bearer " + os.environ["RUNPOD_API_KEY"]' in code.replace("'", '"')


@pytest.mark.parametrize("provider_id", LOCAL)
def test_local_providers_get_the_pipeline_call(provider_id: str, fake_keys):
    prepared = PROVIDERS[provider_id].prepare(PARAMS)
    curl, code = copy_as_code(prepared)
    assert curl.startswith(f"# {provider_id} runs in-process")
    tree = ast.parse(code)
    compile(tree, "<copied>", "exec")
    assert "ZImagePipeline" in code
    assert "FlowMatchEulerDiscreteScheduler.from_config(" in code and "shift=3.0" in code
    assert 'torch.Generator("cpu").manual_seed(42)' in code
    calls = [
        node for node in ast.walk(tree) if isinstance(node, ast.Call) and ast.unparse(node.func) == "pipe"
    ]
    kwargs = {kw.arg: ast.literal_eval(kw.value) for kw in calls[0].keywords if kw.arg != "generator"}
    assert kwargs == {
        "prompt": PARAMS.prompt,
        "height": 512,
        "width": 768,
        "num_inference_steps": 8,
        "guidance_scale": 2.0,
        "num_images_per_prompt": 1,
        "negative_prompt": "blur",
    }
    for value in fake_keys.values():
        assert value not in curl + code


def test_real_checkpoint_code_loads_the_configured_model(monkeypatch):
    monkeypatch.setenv("ZIMAGE_MODEL_ID", "/models/z-image-turbo")
    _, code = copy_as_code(PROVIDERS["diffusers"].prepare(PARAMS))
    assert "ZImagePipeline.from_pretrained('/models/z-image-turbo', torch_dtype=torch.bfloat16)" in code
    _, tiny = copy_as_code(PROVIDERS["diffusers-tiny"].prepare(PARAMS))
    assert "build_tiny_pipeline()" in tiny and "from_pretrained" not in tiny


def test_a_key_typed_into_the_prompt_is_scrubbed(fake_keys):
    leaked = PARAMS.model_copy(update={"prompt": f"oops {fake_keys['RUNPOD_API_KEY']}"})
    curl, code = copy_as_code(PROVIDERS["runpod"].prepare(leaked), secrets=["page-typed-key-99"])
    assert fake_keys["RUNPOD_API_KEY"] not in curl + code
    session = PARAMS.model_copy(update={"prompt": "oops page-typed-key-99"})
    curl, code = copy_as_code(PROVIDERS["evolink"].prepare(session), secrets=["page-typed-key-99"])
    assert "page-typed-key-99" not in curl + code


def test_key_names_can_be_given_and_must_be_variable_names():
    prepared = PROVIDERS["runpod"].prepare(PARAMS)
    curl, code = copy_as_code(prepared, key_names=["MY_RUNPOD_KEY"])
    assert "$MY_RUNPOD_KEY" in curl and 'os.environ["MY_RUNPOD_KEY"]' in code
    with pytest.raises(ValueError, match="not an environment variable name"):
        copy_as_code(prepared, key_names=["X; rm -rf /"])


def test_python_literal_is_python_not_json():
    value = {"a": [True, None, 1.5, {"b": "c'd"}], "e": {}, "f": []}
    assert ast.literal_eval(python_literal(value)) == value
    assert "true" not in python_literal(value) and "null" not in python_literal(value)


def test_huggingface_code_is_the_inference_client_call(fake_keys, monkeypatch):
    import sys
    import types

    prepared = PROVIDERS["huggingface"].prepare(PARAMS)
    curl, code = copy_as_code(prepared)
    assert curl.startswith("#") and "InferenceClient" in curl
    calls: dict[str, Any] = {}

    class FakeImage:
        def save(self, name: str) -> None:
            calls["saved"] = name

    class FakeClient:
        def __init__(self, **kwargs: Any) -> None:
            calls["client"] = kwargs

        def text_to_image(self, **kwargs: Any) -> FakeImage:
            calls["args"] = kwargs
            return FakeImage()

    monkeypatch.setitem(sys.modules, "huggingface_hub", types.SimpleNamespace(InferenceClient=FakeClient))
    exec(compile(code, "<copied>", "exec"), {})
    assert calls["client"] == {"provider": prepared.body["provider"], "api_key": fake_keys["HF_TOKEN"]}
    assert calls["args"] == {k: v for k, v in prepared.body.items() if k != "provider"}
    assert calls["args"]["seed"] == 42 and calls["saved"] == "zimage-42.png"
    assert fake_keys["HF_TOKEN"] not in code


def test_local_lora_refs_are_copied_as_the_run_named_them(tmp_path):
    lora_file = tmp_path / "private" / "ink.safetensors"
    params = PARAMS.model_copy(
        update={
            "inputs": {
                "loras": [
                    {"ref": str(lora_file), "scale": 0.5},
                    {"ref": "someone/watercolour", "scale": 1.0},
                    {"ref": "someone/pens/fine.safetensors", "scale": 0.8},
                ]
            }
        }
    )
    params = GenerationParams.model_validate(params.model_dump())
    _, code = copy_as_code(PROVIDERS["diffusers-tiny"].prepare(params))
    assert "pipe.load_lora_weights('ink.safetensors', adapter_name='lora_0')" in code  # its name only
    assert "pipe.load_lora_weights('someone/watercolour', adapter_name='lora_1')" in code  # a hub repo
    assert "load_lora_weights('someone/pens', weight_name='fine.safetensors', adapter_name='lora_2')" in code
    assert "pipe.set_adapters(['lora_0', 'lora_1', 'lora_2'], [0.5, 1.0, 0.8])" in code
    assert str(tmp_path) not in code
