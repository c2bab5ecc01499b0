"""The launched app's named API endpoint, through gradio_client."""

from pathlib import Path

import pytest
from gradio_client import Client

from tests.serving import api_url
from zimage_ui.metadata import read_text_chunks


@pytest.fixture(scope="module")
def client(plain_app: str) -> Client:
    return Client(api_url(plain_app), verbose=False)


def test_generate_endpoint_returns_png_with_the_seed_used(client: Client):
    gallery, seed_used, status, sent = client.predict(
        prompt="a red fox",
        provider="diffusers-tiny",
        width=256,
        height=256,
        seed=11,
        steps=8,
        api_name="/generate",
    )
    assert seed_used == "11"
    assert "Done" in status
    assert sent["sent"] == {
        "width": 256,
        "height": 256,
        "steps": 8,
        "seed": 11,
        "shift": 3.0,
        "guidance": 0.0,
        "negative_prompt": False,
    }  # the PNG's own record of what was sent
    assert gallery[0]["caption"] == "seed 11"
    image_path = Path(gallery[0]["image"])
    assert image_path.suffix == ".png"
    parameters = read_text_chunks(image_path.read_bytes())["parameters"]
    assert "Seed: 11" in parameters and "Provider: diffusers-tiny" in parameters


def test_invalid_settings_are_a_clear_error(client: Client):
    with pytest.raises(Exception) as caught:
        client.predict(
            prompt="a red fox",
            provider="diffusers-tiny",
            width=1000,
            height=256,
            seed=1,
            steps=8,
            api_name="/generate",
        )
    assert "width" in str(caught.value) and "multiple of 16" in str(caught.value)


def test_page_and_cli_make_the_same_pixels(client: Client, tmp_path: Path):
    import json

    import numpy as np
    from PIL import Image

    from tests.test_cli import cli

    gallery, *_ = client.predict(
        prompt="a red fox",
        provider="diffusers-tiny",
        width=256,
        height=256,
        seed=7,
        steps=8,
        api_name="/generate",
    )
    run = cli(
        "generate",
        "--provider",
        "diffusers-tiny",
        "--prompt",
        "a red fox",
        "--seed",
        "7",
        "--width",
        "256",
        "--height",
        "256",
        "--out",
        str(tmp_path),
        "--json",
    )
    assert run.returncode == 0, run.stderr
    from_page = np.asarray(Image.open(gallery[0]["image"]).convert("RGB"))
    from_cli = np.asarray(Image.open(json.loads(run.stdout)["images"][0]).convert("RGB"))
    assert from_page.shape == (256, 256, 3)
    assert np.array_equal(from_page, from_cli)
