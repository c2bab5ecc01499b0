"""The public endpoints' image inputs: an upload (FileData) or an https URL, never a server path."""

from __future__ import annotations

from pathlib import Path

import httpx
import numpy as np
import pytest
from gradio_client import Client, handle_file
from PIL import Image

from tests.serving import api_url


@pytest.fixture(scope="module")
def url(plain_app: str) -> str:
    return plain_app


SETTINGS = {"provider": "diffusers-tiny", "prompt": "a heron", "width": 256, "height": 256, "seed": "7"}


def test_generate_takes_an_uploaded_image_and_its_strength(url: str, photo: Path):
    client = Client(api_url(url), verbose=False)
    _, seed, status, sent = client.predict(
        **SETTINGS, image=handle_file(str(photo)), strength=0.5, api_name="/generate"
    )
    assert seed == "7" and "strength 0.5: 4 of 8 steps run" in status
    assert "strength 0.5: 4 of 8 steps run" in sent["notes"]


def test_typed_server_paths_are_refused(url: str):
    client = Client(api_url(url), verbose=False)
    with pytest.raises(Exception, match="give an https URL or upload the file"):
        client.predict(**SETTINGS, image_url="/etc/passwd", api_name="/generate")
    with pytest.raises(Exception, match=r"LoRA 1.*give an https URL or upload the file"):
        client.predict(**SETTINGS, loras="/models/ink.safetensors 0.8", api_name="/generate")


def test_a_filedata_naming_a_server_file_is_refused(url: str):
    """A hand-made request whose FileData names a server path instead of an upload: refused
    (by Gradio, which takes only files it was sent, or by the page's upload check)."""
    settings = ["a heron", "diffusers-tiny", "", 256, 256, 7, 8, 0.0, 3.0, 1]
    server_file = {"path": "/etc/hostname", "meta": {"_type": "gradio.FileData"}}
    call = httpx.post(
        f"{url}gradio_api/call/generate", json={"data": [*settings, server_file, "", 0.5, ""]}, timeout=30
    )
    if call.status_code >= 400:  # refused at the door
        return
    stream = httpx.get(f"{url}gradio_api/call/generate/{call.json()['event_id']}", timeout=60).text
    assert "event: error" in stream and "event: complete" not in stream, stream[:500]


def test_sessions_at_once_with_one_seed_each_get_their_own_input_images_result(url: str, tmp_path: Path):
    """Six sessions at once, one seed, each its own input image: every session's image is the one
    its own input makes alone, and different inputs give different images."""
    from concurrent.futures import ThreadPoolExecutor

    photos = []
    ramp = (np.indices((256, 256)).sum(0) % 256).astype(np.uint8)
    for index in range(6):
        channels = [ramp, ramp[::-1], 255 - ramp]
        picture = np.rot90(np.stack(channels[index % 3 :] + channels[: index % 3], -1), index // 3 + 1)
        path = tmp_path / f"photo-{index}.png"
        Image.fromarray(np.ascontiguousarray(picture)).save(path)
        photos.append(path)

    def run(path: Path) -> bytes:
        gallery, _seed, status, _sent = Client(api_url(url), verbose=False).predict(
            **SETTINGS, image=handle_file(str(path)), strength=0.3, api_name="/generate"
        )
        assert "Done" in status, status
        return Path(gallery[0]["image"]).read_bytes()

    def pixels(png: bytes) -> np.ndarray:
        import io

        return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.int16)

    with ThreadPoolExecutor(len(photos)) as pool:
        together = [pixels(png) for png in pool.map(run, photos)]
    alone = [pixels(run(path)) for path in photos[:2]]
    assert np.array_equal(together[0], alone[0]) and np.array_equal(together[1], alone[1])
    for first in range(len(together)):
        for second in range(first + 1, len(together)):
            assert np.abs(together[first] - together[second]).mean() > 1, (first, second)
