"""Copy as code: the request a provider was sent, as curl and as Python, with keys as env references.

The prepared request holds no key (its headers are the redacted display copy), so the
code is built from it plus the provider's key variable names: the key is read from the
environment when the code runs, never written into it. Local providers have no HTTP
request; for them the Python is the equivalent `diffusers.ZImagePipeline` call.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from zimage_ui import env
from zimage_ui.keyguard import known_secrets, scrub
from zimage_ui.params import image_seed, shareable_ref
from zimage_ui.providers import PROVIDERS
from zimage_ui.providers.base import REDACTED, PreparedRequest
from zimage_ui.providers.hosted.base import display_safe
from zimage_ui.providers.local.controlnet import CONTROLNET_ENV
from zimage_ui.providers.local.diffusers_local import DEFAULT_MODEL_ID, model_id
from zimage_ui.providers.local.generation import DISPLAY_ONLY
from zimage_ui.providers.local.pipeline_variants import MASK_BLUR_PX
from zimage_ui.redaction import safe_url

LOCAL_METHOD = "CALL"
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True)
class AuthCode:
    """How one auth scheme is written: curl arguments and Python, both reading the environment."""

    curl_args: list[str]
    python_headers: dict[str, str] = field(default_factory=dict)  # header -> Python expression
    python_auth: str | None = None  # expression for httpx's `auth=`


def _env(name: str) -> str:
    if not _ENV_NAME.fullmatch(name):
        raise ValueError(f"{name!r} is not an environment variable name")
    return name


def bearer_auth(names: Sequence[str]) -> AuthCode:
    """`Authorization: Bearer <key>` from one variable."""
    var = _env(names[0])
    return AuthCode(
        curl_args=[f'-H "Authorization: Bearer ${var}"'],
        python_headers={"Authorization": f'"Bearer " + os.environ["{var}"]'},
    )


def basic_auth(names: Sequence[str]) -> AuthCode:
    """HTTP Basic auth from a key variable and a secret variable (Scenario)."""
    user, secret = _env(names[0]), _env(names[1])
    return AuthCode(
        curl_args=[f'-u "${user}:${secret}"'],
        python_auth=f'(os.environ["{user}"], os.environ["{secret}"])',
    )


# the scheme word of the redacted Authorization header -> how to write it
AUTH_SCHEMES: dict[str, Callable[[Sequence[str]], AuthCode]] = {"Bearer": bearer_auth, "Basic": basic_auth}


def _auth(prepared: PreparedRequest, names: Sequence[str]) -> tuple[AuthCode, dict[str, str]]:
    """The auth code for the request, and the other headers to send as they are."""
    plain: dict[str, str] = {}
    auth = AuthCode(curl_args=[])
    for header, value in prepared.headers.items():
        if header.lower() == "authorization":
            scheme = value.split(" ", 1)[0]
            if scheme not in AUTH_SCHEMES:
                raise ValueError(f"no code template for {scheme!r} auth")
            auth = AUTH_SCHEMES[scheme](names)
        elif REDACTED not in value:
            plain[header] = value
    return auth, plain


def python_literal(value: object, indent: int = 0) -> str:
    """A JSON-like value as an indented Python literal (True/False/None, not JSON's words)."""
    pad, inner = " " * indent, " " * (indent + 4)
    if isinstance(value, dict) and value:
        items = [f"{inner}{key!r}: {python_literal(item, indent + 4)}," for key, item in value.items()]
        return "{\n" + "\n".join(items) + f"\n{pad}}}"
    if isinstance(value, list) and value:
        items = [f"{inner}{python_literal(item, indent + 4)}," for item in value]
        return "[\n" + "\n".join(items) + f"\n{pad}]"
    return repr(value)


def curl_code(prepared: PreparedRequest, names: Sequence[str]) -> str:
    auth, headers = _auth(prepared, names)
    lines = [f"curl -X {prepared.method} {shlex.quote(safe_url(prepared.url))}", *auth.curl_args]
    lines += [f"-H {shlex.quote(f'{name}: {value}')}" for name, value in headers.items()]
    body = display_safe(prepared.body)  # a signed URL's query stays out of copied code
    lines.append(f"--data-raw {shlex.quote(json.dumps(body, ensure_ascii=False))}")
    return " \\\n  ".join(lines) + "\n"


def httpx_code(prepared: PreparedRequest, names: Sequence[str]) -> str:
    auth, headers = _auth(prepared, names)
    header_lines = [f"    {name!r}: {expression}," for name, expression in auth.python_headers.items()]
    header_lines += [f"    {name!r}: {value!r}," for name, value in headers.items()]
    auth_arg = [f"    auth={auth.python_auth},"] if auth.python_auth else []
    needs = " and ".join(names)
    return "\n".join(
        [
            f'"""The request zimage-ui sent to {prepared.provider}.',
            "",
            f"Set {needs} in the environment first; needs httpx.",
            '"""',
            "",
            "import os",
            "",
            "import httpx",
            "",
            f"URL = {safe_url(prepared.url)!r}",
            "HEADERS = {",
            *header_lines,
            "}",
            f"BODY = {python_literal(display_safe(prepared.body))}",
            "",
            "response = httpx.request(",
            f"    {prepared.method!r},",
            "    URL,",
            "    headers=HEADERS,",
            "    json=BODY,",
            *auth_arg,
            "    timeout=120,",
            ")",
            "response.raise_for_status()",
            "print(response.json())  # a finished image, or a job to poll, depending on the API",
            "",
        ]
    )


def _per_seed(call_args: list[str], seeds: list[int], after: Sequence[str] = ()) -> list[str]:
    """The pipeline call for one seed, or a loop of one call per seed (each image alone); `after`:
    lines run on each `image` before it is saved."""
    seed = "seed" if len(seeds) > 1 else str(seeds[0])
    call = [
        "image = pipe(",
        *call_args,
        f'    generator=torch.Generator("cpu").manual_seed({seed}),',
        ").images[0]",
        *after,
        f'image.save(f"zimage-{{{seed}}}.png")' if len(seeds) > 1 else f'image.save("zimage-{seed}.png")',
    ]
    if len(seeds) == 1:
        return call
    intro = "# one call per image, each with its own seed: any image can be made again alone"
    return [intro, f"for seed in {seeds!r}:", *(f"    {line}" for line in call)]


UNION_FILE = "Z-Image-Turbo-Fun-Controlnet-Union.safetensors"


@dataclass
class _Inputs:
    """The lines a local run's image inputs and LoRAs add to the copied code."""

    modules: list[str] = field(default_factory=list)  # `import x`
    imports: list[str] = field(default_factory=list)  # `from x import y`
    setup: list[str] = field(default_factory=list)
    call: list[str] = field(default_factory=list)
    after: list[str] = field(default_factory=list)


def _input_code(prepared: PreparedRequest) -> _Inputs:
    params, code = prepared.params, _Inputs()
    size = f"({params.width}, {params.height})"
    if params.image or params.control_image:
        code.imports += ["from diffusers.utils import load_image", "from PIL import Image"]
    for index, lora in enumerate(params.loras):
        name, source = f"lora_{index}", lora.source
        if source == "url":
            local = Path(urlsplit(lora.ref).path).name or f"{name}.safetensors"
            code.setup.append(f"urllib.request.urlretrieve({shareable_ref(lora.ref)!r}, {local!r})")
            code.setup.append(f"pipe.load_lora_weights({local!r}, adapter_name={name!r})")
        elif source == "id" and lora.ref.count("/") == 2:
            repo, weight = lora.ref.rsplit("/", 1)
            code.setup.append(
                f"pipe.load_lora_weights({repo!r}, weight_name={weight!r}, adapter_name={name!r})"
            )
        else:  # a file by its name (the reader's copy beside the script), or a hub repo as it is
            ref = shareable_ref(lora.ref) if source == "file" else lora.ref
            code.setup.append(f"pipe.load_lora_weights({ref!r}, adapter_name={name!r})")
    if params.loras:
        code.modules += ["import urllib.request"] * any(lora.source == "url" for lora in params.loras)
        names = [f"lora_{index}" for index in range(len(params.loras))]
        code.setup.append(f"pipe.set_adapters({names!r}, {[lora.scale for lora in params.loras]!r})")
    if params.image:
        image = shareable_ref(params.image)
        code.setup.append(f"init_image = load_image({image!r}).convert('RGB').resize({size}, Image.LANCZOS)")
        code.call.append("    image=init_image,")
        kind = "ZImageImg2ImgPipeline"
        if params.mask:
            kind = "ZImageInpaintPipeline"
            mask = shareable_ref(params.mask)
            code.setup.append(f"mask = load_image({mask!r}).convert('L').resize({size}, Image.NEAREST)")
            code.call.append("    mask_image=mask,")
            code.imports.append("from PIL import ImageFilter")
            code.after += [
                "# outside the mask the input's own pixels, the edge blurred (as the app does)",
                f"image = Image.composite(image.convert('RGB'), init_image, "
                f"mask.filter(ImageFilter.GaussianBlur({MASK_BLUR_PX})))",
            ]
        code.imports.append(f"from diffusers import {kind}")
        code.setup.append(f"pipe = {kind}.from_pipe(pipe)")
    if params.control_image:
        code.setup.append(
            f"control_image = load_image({shareable_ref(params.control_image)!r})"
            f".convert('RGB').resize({size}, Image.LANCZOS)  # {params.control_kind}"
        )
        if prepared.provider == "diffusers-tiny":
            code.imports.append("from zimage_ui.providers.local.tiny_model import build_tiny_controlnet")
            code.setup.append("controlnet = build_tiny_controlnet(pipe.transformer)")
        else:
            code.imports.append("from diffusers import ZImageControlNetModel")
            weights = env.raw(CONTROLNET_ENV) or UNION_FILE
            code.setup.append(
                f"controlnet = ZImageControlNetModel.from_single_file({weights!r}, "
                "torch_dtype=torch.bfloat16)  # a folder or hub repo: from_pretrained"
            )
        code.imports.append("from diffusers import ZImageControlNetPipeline")
        code.setup.append("pipe = ZImageControlNetPipeline.from_pipe(pipe, controlnet=controlnet)")
        code.call.append("    control_image=control_image,")
    return code


def pipeline_code(prepared: PreparedRequest) -> str:
    """The in-process equivalent: build the pipeline, set Turbo's scheduler shift, apply the run's
    LoRAs and image inputs, call it."""
    params = prepared.params
    assert params.seed is not None
    seeds = [image_seed(params.seed, index) for index in range(params.num_images)]
    kwargs = {key: value for key, value in prepared.body.items() if key not in DISPLAY_ONLY}
    inputs = _input_code(prepared)
    call_args = [f"    {key}={value!r}," for key, value in kwargs.items()] + inputs.call
    if prepared.provider == "diffusers-tiny":
        load = [
            "from zimage_ui.providers.local.tiny_model import build_tiny_pipeline",
            "pipe = build_tiny_pipeline()  # tiny random weights: the images are noise",
        ]
    else:
        source = model_id() if prepared.provider == "diffusers" else DEFAULT_MODEL_ID
        load = [
            f"pipe = ZImagePipeline.from_pretrained({source!r}, torch_dtype=torch.bfloat16)\n"
            'pipe.to("cuda" if torch.cuda.is_available() else "cpu")',
        ]
    return "\n".join(
        [
            '"""Z-Image-Turbo in-process with the settings zimage-ui used; needs torch and diffusers."""',
            "",
            *dict.fromkeys(
                inputs.imports[:1] and [line for line in inputs.imports if line.startswith("import ")]
            ),
            "import torch",
            "from diffusers import FlowMatchEulerDiscreteScheduler, ZImagePipeline",
            *dict.fromkeys(line for line in inputs.imports if not line.startswith("import ")),
            *load[:-1],
            "",
            load[-1],
            "pipe.scheduler = FlowMatchEulerDiscreteScheduler.from_config(",
            f"    pipe.scheduler.config, shift={params.shift!r}, use_dynamic_shifting=False",
            ")",
            *inputs.setup,
            *_per_seed(call_args, seeds, inputs.after),
            "",
        ]
    )


CLIENT_PROVIDERS = {"huggingface"}  # the HTTP is huggingface_hub's: the code is its client call


def inference_client_code(prepared: PreparedRequest, names: Sequence[str]) -> str:
    """The `huggingface_hub.InferenceClient.text_to_image` call the provider made."""
    args = {key: value for key, value in prepared.body.items() if key != "provider"}
    provider = prepared.body.get("provider", "auto")
    var = _env(names[0])
    return "\n".join(
        [
            '"""The call zimage-ui made to Hugging Face Inference Providers; needs huggingface_hub."""',
            "",
            "import os",
            "",
            "from huggingface_hub import InferenceClient",
            "",
            f'client = InferenceClient(provider={provider!r}, api_key=os.environ["{var}"])',
            "image = client.text_to_image(",
            *(f"    {key}={value!r}," for key, value in args.items()),
            ")",
            f"image.save({f'zimage-{prepared.params.seed}.png'!r})",
            "",
        ]
    )


def copy_as_code(
    prepared: PreparedRequest, *, key_names: Sequence[str] | None = None, secrets: Iterable[str] = ()
) -> tuple[str, str]:
    """(curl, Python) for what was sent; keys appear only as environment variable references.

    `key_names` defaults to the registered provider's; `secrets` (keys entered on the page)
    are scrubbed from the output too, like every key set in the environment.
    """
    if prepared.method == LOCAL_METHOD:
        curl = f"# {prepared.provider} runs in-process (ZImagePipeline): there is no HTTP request.\n"
        code = pipeline_code(prepared)
    else:
        provider = PROVIDERS.get(prepared.provider)
        names = list(key_names if key_names is not None else (provider.key_names if provider else ()))
        if prepared.provider in CLIENT_PROVIDERS:
            curl = (
                f"# {prepared.provider} goes through huggingface_hub's InferenceClient, which picks the "
                "routed provider's own request: see the Python.\n"
            )
            code = inference_client_code(prepared, names)
        else:
            curl, code = curl_code(prepared, names), httpx_code(prepared, names)
    known = known_secrets(secrets)
    return scrub(curl, known), scrub(code, known)
