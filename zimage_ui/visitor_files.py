"""A page or API visitor never makes the server read a file they name.

Image inputs and LoRAs are references (`ImageInputs`): an https URL, a model id, or a local path.
From the CLI a path is the user's own file. From the page, the API or the MCP tools, a path is
taken only where Gradio itself put the file: an upload lives in Gradio's upload folder
(`GRADIO_TEMP_DIR`, else `<temp>/gradio`, as `gradio.utils.get_upload_folder` names it), so a
visitor's `/etc/passwd` or `~/.ssh/id_rsa` (or a symlink to one, or `..` out of the folder) is
refused before anything is opened. Nothing here imports Gradio.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable
from pathlib import Path

from zimage_ui import env
from zimage_ui.errors import InvalidParams
from zimage_ui.params import ImageInputs

NOT_AN_UPLOAD = "is not a file uploaded to this page: upload it, or give an https URL"


def upload_folder() -> Path:
    """Gradio's upload folder, resolved (the same rule as `gradio.utils.get_upload_folder`)."""
    return Path(env.raw("GRADIO_TEMP_DIR") or Path(tempfile.gettempdir()) / "gradio").resolve()


def is_upload(ref: str, folders: Iterable[Path] | None = None) -> bool:
    """A path that really is inside Gradio's upload folder (symlinks and `..` resolved first)."""
    try:
        real = Path(ref).expanduser().resolve()
    except (OSError, RuntimeError, ValueError):
        return False
    return any(real.is_relative_to(folder.resolve()) for folder in (folders or [upload_folder()]))


def _shown(ref: str) -> str:
    """The file's name, as a message shows it (the visitor's own text; its end is what they know)."""
    return (Path(ref).name or ref)[:80]


def visitor_refs_allowed(inputs: ImageInputs | None, folders: Iterable[Path] | None = None) -> None:
    """Refuse (InvalidParams, one message per field) every local file in a visitor's inputs that
    Gradio did not upload: the input image, mask, control image and LoRA files. https URLs and
    model ids pass (they are downloaded by the HTTP engine, never read from disk). `folders`: tests.

    Call it on every page, API and MCP request's params before preparing the run; the CLI doesn't.
    """
    if inputs is None:
        return
    allowed = list(folders) if folders is not None else [upload_folder()]
    problems: dict[str, str] = {}
    named = {"image": inputs.image, "mask": inputs.mask, "control_image": inputs.control_image}
    for name, ref in named.items():
        if ref and not ref.lower().startswith("https://") and not is_upload(ref, allowed):
            problems[name] = f"the {name.replace('_', ' ')} {_shown(ref)!r} {NOT_AN_UPLOAD}"
    for lora in inputs.loras:
        if lora.source == "file" and not is_upload(lora.ref, allowed):
            problems["loras"] = (
                f"the LoRA {_shown(lora.ref)!r} {NOT_AN_UPLOAD} or a Hugging Face repo id ('owner/name')"
            )
            break
    if problems:
        raise InvalidParams(problems)
