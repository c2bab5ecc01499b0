"""The floor for `benchmarks.load`: a bare Gradio page doing the same I/O shape as /generate.

One event with the same inputs and outputs as the real page's `/generate`, whose handler
writes a ready-made PNG (the prompt spliced in) to a new file and returns it: everything
Gradio itself costs per request (queue, SSE, postprocess, the copy into its cache, the
download), none of ours.

    python benchmarks/bare_app.py --host 127.0.0.1 --port 7870
"""

from __future__ import annotations

import argparse
import io
import tempfile
import uuid
from pathlib import Path

import gradio as gr
from PIL import Image

from zimage_ui.metadata import splice_text_chunks

FOLDER = Path(tempfile.mkdtemp(prefix="zimage-bare-"))
_buffer = io.BytesIO()
Image.new("RGB", (512, 512), (200, 120, 40)).save(_buffer, format="PNG")
PNG = _buffer.getvalue()


def generate(
    prompt: str, provider: str, negative: str, width: int, height: int, seed: int | str | None,
    steps: int, guidance: float, shift: float, images: int,
) -> tuple[list[str], str, str, dict]:  # fmt: skip
    path = FOLDER / uuid.uuid4().hex / f"{provider}-{seed}-0.png"
    path.parent.mkdir()
    path.write_bytes(splice_text_chunks(PNG, {"parameters": f"{prompt}\nSteps: 8, Seed: {seed}"}))
    return [str(path)], str(seed), "Done", {"provider": provider}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=7870)
    args = parser.parse_args()
    with gr.Blocks() as demo:
        inputs = [
            gr.Textbox(), gr.Textbox(), gr.Textbox(), gr.Number(), gr.Number(), gr.Textbox(),
            gr.Number(), gr.Number(), gr.Number(), gr.Number(),
        ]  # fmt: skip
        outputs = [gr.Gallery(format="png"), gr.Textbox(), gr.Markdown(), gr.JSON()]
        gr.Button().click(generate, inputs, outputs, api_name="generate", concurrency_limit=None)
    demo.queue(default_concurrency_limit=None).launch(server_name=args.host, server_port=args.port)


if __name__ == "__main__":
    main()
