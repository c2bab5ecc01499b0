"""The local model's ControlNet: which one (`ZIMAGE_CONTROLNET`), and loading it without the hub.

`ZIMAGE_CONTROLNET` names the Z-Image-Turbo Fun ControlNet Union: its single `.safetensors`
file (as alibaba-pai publishes it), or a diffusers folder or hub repo (`from_pretrained`).
`ZImageControlNetModel.from_single_file` would fetch the model's config from a hub repo; here
the config always comes from this module: the geometry of each published Union version (1.0,
2.0, 2.1, told apart from the file's header as diffusers itself does), written to a temporary
folder and passed as `config=`, with `local_files_only`. `ZIMAGE_CONTROLNET_CONFIG` (a folder
with a `config.json`) overrides it for another geometry. The model is loaded once, on the first
control run, with the device held; `pipeline_variants.pipeline_for` keeps it with the pipeline.
diffusers and torch are imported inside the functions.
"""

from __future__ import annotations

import json
import struct
import tempfile
from pathlib import Path
from typing import Any

from zimage_ui import env
from zimage_ui.errors import JobFailed

CONTROLNET_ENV = "ZIMAGE_CONTROLNET"
CONTROLNET_CONFIG_ENV = "ZIMAGE_CONTROLNET_CONFIG"
UNION = "Z-Image-Turbo-Fun-Controlnet-Union"
TINY_NAME = "tiny-controlnet"

_COMMON = {
    "all_patch_size": [2],
    "all_f_patch_size": [1],
    "dim": 3840,
    "n_refiner_layers": 2,
    "n_heads": 30,
    "n_kv_heads": 30,
    "norm_eps": 1e-05,
    "qk_norm": True,
}
_UNION_2 = {
    **_COMMON,
    "control_in_dim": 33,  # 16 latent channels, a 1-channel mask and 16 inpaint-latent channels
    "control_layers_places": list(range(0, 30, 2)),
    "control_refiner_layers_places": [0, 1],
}
# The published Union versions' configs (diffusers' `scripts/convert_z_image_controlnet_to_diffusers`
# for 1.0; the VideoX-Fun 2.x model definitions), by the name `union_version` gives.
UNION_CONFIGS: dict[str, dict[str, Any]] = {
    UNION: {
        **_COMMON,
        "control_in_dim": 16,
        "control_layers_places": [0, 5, 10, 15, 20, 25],
        "control_refiner_layers_places": None,
        "add_control_noise_refiner": None,
    },
    f"{UNION}-2.0": {**_UNION_2, "add_control_noise_refiner": "control_layers"},
    f"{UNION}-2.1": {**_UNION_2, "add_control_noise_refiner": "control_noise_refiner"},
}
NOT_SET_UP = (
    f"no ControlNet is set up for the local model: set {CONTROLNET_ENV} to the {UNION} .safetensors "
    "file (or a diffusers folder or hub repo of it) and restart"
)
_V1_KEY = "control_all_x_embedder.2-1.weight"
_V2_KEY = "control_layers.14.adaLN_modulation.0.weight"
_V21_KEY = "control_noise_refiner.0.before_proj.weight"


def configured() -> str | None:
    """The ControlNet `ZIMAGE_CONTROLNET` names (a file, folder or hub repo), or None."""
    return env.raw(CONTROLNET_ENV) or None


def display_name(ref: str) -> str:
    """The name the PNG's `ControlNet 0` entry gives: the file's or folder's stem, a repo's name."""
    return Path(ref.rstrip("/")).stem or ref


def _header(path: Path) -> dict[str, Any]:
    with path.open("rb") as file:
        (length,) = struct.unpack("<Q", file.read(8))
        if length > 100 * 2**20:
            raise ValueError("the safetensors header is implausibly large")
        header = json.loads(file.read(length))
    return header if isinstance(header, dict) else {}


def union_version(path: Path) -> str:
    """Which Union version a single file is, from its tensor names as diffusers tells them apart
    (`infer_diffusers_model_type`): 2.x has a 15th control layer with modulation; 2.1 a non-zero
    refiner `before_proj`. ValueError when it is no Z-Image ControlNet."""
    keys = _header(path)
    if _V2_KEY in keys:
        if _V21_KEY not in keys:
            return f"{UNION}-2.0"
        from safetensors import safe_open

        with safe_open(str(path), "pt") as handle:
            zero = bool((handle.get_tensor(_V21_KEY) == 0).all())
        return f"{UNION}-2.0" if zero else f"{UNION}-2.1"
    if _V1_KEY in keys:
        return UNION
    raise ValueError(f"no {_V1_KEY} tensor: not a Z-Image ControlNet")


def _failed(provider_id: str, ref: str, exc: BaseException) -> JobFailed:
    return JobFailed(
        provider_id,
        f"could not load the ControlNet {ref[:200]!r} ({CONTROLNET_ENV}; for one that is not a published "
        f"{UNION}, {CONTROLNET_CONFIG_ENV} names a folder with its config.json): "
        f"{type(exc).__name__}: {exc}"[:600],
    )


def load_controlnet(provider_id: str, ref: str | None, transformer: Any) -> Any:
    """The ControlNet `ref` names, in the transformer's dtype and on its device (JobFailed when
    it can't be read). None: JobFailed saying to set ZIMAGE_CONTROLNET."""
    if ref is None:
        raise JobFailed(provider_id, NOT_SET_UP)
    from diffusers import ZImageControlNetModel

    dtype, device = transformer.dtype, transformer.device
    path = Path(ref).expanduser()
    try:
        if path.is_file():
            override = env.raw(CONTROLNET_CONFIG_ENV)
            with tempfile.TemporaryDirectory(prefix="zimage-controlnet-") as folder:
                if override:
                    config = override
                else:
                    Path(folder, "config.json").write_text(json.dumps(UNION_CONFIGS[union_version(path)]))
                    config = folder
                model = ZImageControlNetModel.from_single_file(
                    str(path), config=config, dtype=dtype, local_files_only=True
                )
        else:
            model = ZImageControlNetModel.from_pretrained(ref, dtype=dtype)
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise _failed(provider_id, ref, exc) from None
    return model.to(device).eval()
