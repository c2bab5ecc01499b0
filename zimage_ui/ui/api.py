"""The public API (`/generate`, `/compare`, `/sweep`, `/providers`) as a small Blocks of its own.

Served at `/api/` beside the page (`ui.serve`): `Client("http://host:7860/api/")`. Gradio builds
state for every component of a Blocks in each new session; the page has hundreds, this has a
couple of dozen, so an API client's first call costs what an API call needs, not a page load.
The endpoints themselves (their signatures from the settings table, their checks) live with the
tab whose work they do; this module only hands them inputs and outputs.
"""

from __future__ import annotations

import gradio as gr

from zimage_ui.params import DEFAULT_STRENGTH
from zimage_ui.runs import cache_schedule
from zimage_ui.ui.compare_tab import compare
from zimage_ui.ui.endpoints import api_components
from zimage_ui.ui.generate_tab import generate, providers
from zimage_ui.ui.sweep_tab import sweep

API_PATH = "/api"
API_TITLE = "Z-Image-Turbo playground API"
SESSION_CAPACITY = 1000  # API sessions kept at once (Gradio's default is 10,000); each is small
API_INTRO = f"""# {API_TITLE}
This address serves the playground's API: `/generate`, `/compare`, `/sweep` and `/providers`.
Call it with `gradio_client` (`Client("<this page's URL>")`); "Use via API" at the bottom of
this page lists every argument, its type and its range. The playground itself is one level up."""


def build_api() -> gr.Blocks:
    with gr.Blocks(title=API_TITLE, delete_cache=cache_schedule()) as api:
        api.state_session_capacity = SESSION_CAPACITY
        gr.Markdown(API_INTRO)
        with gr.Group(visible=False):
            image_inputs = [
                gr.Image(value=None, label="Input image", type="filepath"),
                gr.Textbox(value="", label="Input image URL"),
                gr.Number(label="Strength", value=DEFAULT_STRENGTH),
                gr.Textbox(value="", label="LoRAs"),
            ]
            images = gr.Gallery(label="Images", format="png")
            seed_used = gr.Textbox(label="Seed used")
            status = gr.Textbox(label="Status")
            sent = gr.JSON(label="Prepared request (keys redacted)")
            report = gr.JSON(label="Report")
            grid = gr.Image(label="Grid", type="filepath", format="png")
            cells = gr.Gallery(label="Cells", format="png")
            trigger = gr.Button()
        for endpoint, outputs in (
            (generate, [images, seed_used, status, sent]),
            (compare, [images, report]),
            (sweep, [status, grid, cells]),
        ):
            trigger.click(
                endpoint,
                [*api_components(endpoint), *image_inputs],
                outputs,
                api_name=endpoint.__name__,
                concurrency_limit=None,
                show_progress="hidden",
            )
        gr.api(providers, api_name="providers")
    return api
