"""A visitor's params never make the server read a path they name: only Gradio's own uploads pass."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from zimage_ui.errors import InvalidParams
from zimage_ui.params import ImageInputs
from zimage_ui.visitor_files import is_upload, upload_folder, visitor_refs_allowed


@pytest.fixture
def uploads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "gradio"
    (folder / "abc123").mkdir(parents=True)
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(folder))
    return folder


def test_the_upload_folder_is_gradios_own(uploads: Path, monkeypatch: pytest.MonkeyPatch):
    import gradio.utils

    assert upload_folder() == Path(gradio.utils.get_upload_folder()).resolve() == uploads.resolve()
    monkeypatch.delenv("GRADIO_TEMP_DIR")
    assert upload_folder() == Path(gradio.utils.get_upload_folder()).resolve()


def test_uploaded_files_urls_and_model_ids_pass(uploads: Path):
    image = uploads / "abc123" / "in.png"
    lora = uploads / "abc123" / "style.safetensors"
    visitor_refs_allowed(
        ImageInputs(
            image=str(image),
            mask="https://images.example.test/m.png",
            loras=({"ref": str(lora)}, {"ref": "https://x.test/a.safetensors"}, {"ref": "owner/name"}),
        )
    )
    visitor_refs_allowed(ImageInputs(control_image=str(image)))
    visitor_refs_allowed(None)


@pytest.mark.parametrize(
    ("inputs", "field"),
    [
        ({"image": "/etc/passwd"}, "image"),
        ({"image": "in.png"}, "image"),  # relative to the server's working folder
        ({"image": "https://images.test/a.png", "mask": "~/mask.png"}, "mask"),
        ({"control_image": "/srv/data/edges.png"}, "control_image"),
        ({"loras": [{"ref": "/models/secret.safetensors"}]}, "loras"),
        ({"loras": [{"ref": "owner/name"}, {"ref": "../x.safetensors"}]}, "loras"),
    ],
)
def test_any_other_local_path_is_refused_naming_the_field(uploads: Path, inputs: dict, field: str):
    with pytest.raises(InvalidParams) as caught:
        visitor_refs_allowed(ImageInputs.model_validate(inputs))
    assert list(caught.value.fields) == [field]
    assert "is not a file uploaded to this page" in caught.value.fields[field]


def test_dot_dot_and_symlinks_out_of_the_upload_folder_are_refused(uploads: Path, tmp_path: Path):
    secret = tmp_path / "secret.safetensors"
    secret.write_bytes(b"x")
    escape = uploads / "abc123" / ".." / ".." / "secret.safetensors"
    assert not is_upload(str(escape))
    link = uploads / "abc123" / "link.safetensors"
    os.symlink(secret, link)
    assert not is_upload(str(link))
    with pytest.raises(InvalidParams, match=r"'link\.safetensors'"):
        visitor_refs_allowed(ImageInputs(loras=({"ref": str(link)},)))
    sibling = tmp_path / "gradio-other" / "in.png"  # a folder whose name only starts the same
    assert not is_upload(str(sibling))
