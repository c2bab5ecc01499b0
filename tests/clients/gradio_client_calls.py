"""Run by a Python that has `gradio_client` and nothing of this project (tests/test_client_contract.py):
the README's calls, as such a client makes them. Prints one JSON object of what came back."""

import json
import sys

from gradio_client import Client

url = sys.argv[1]
client = Client(url, verbose=False)
out = {}

images, seed, status, sent = client.predict("a red fox", api_name="/generate")  # positional prompt
out["positional"] = {"images": len(images), "seed": seed, "status": status, "sent": sent["sent"]}

for given in (7, "7"):
    images, seed, status, sent = client.predict(
        prompt="a red fox", seed=given, width=256, height=256, steps=2, api_name="/generate"
    )
    with open(images[0]["image"], "rb") as png:
        size = len(png.read())
    out[f"seed {given!r}"] = {"seed": seed, "sent": sent["sent"], "png_bytes": size}

images, report = client.predict(
    "a red fox",
    "diffusers-tiny:steps=2; diffusers-tiny:steps=4",
    width=256,
    height=256,
    seed=5,
    api_name="/compare",
)
out["compare"] = {"images": [image["caption"] for image in images], "report": report}

status, grid, cells = client.predict(
    "a red fox", "diffusers-tiny", "steps", "1, 2", width=256, height=256, seed=3, api_name="/sweep"
)
out["sweep"] = {"status": status, "cells": [cell["caption"] for cell in cells]}

try:
    client.predict("a red fox", steps=2.5, width=256, height=256, api_name="/generate")
    out["steps 2.5"] = "accepted"
except Exception as exc:  # gradio_client raises AppError with the app's message
    out["steps 2.5"] = str(exc)

print(json.dumps(out))
