"""Serve the page at `/`, the API at `/api/` and (when asked) the MCP tools at `/gradio_api/mcp/`.

The page is launched the usual way (`Blocks.launch`: on a ZeroGPU Space the `spaces` package
hooks exactly that). The API's small Blocks and the MCP endpoint are mounted on the page's own
server as it starts (a lifespan handed to `launch`), ahead of the page's routes, and started and
stopped with it. Each Blocks keeps its own queue and its own sessions: an API or MCP call never
builds the page's session state.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from typing import Any

import gradio as gr
from fastapi import FastAPI
from starlette.routing import Mount

from zimage_ui.runs import max_active_runs
from zimage_ui.ui.api import API_PATH, build_api
from zimage_ui.ui.mcp_tools import MCP_PATH, McpEndpoint

MAX_UPLOAD = "50mb"  # PNG info reads images up to 50 MB; presets are far smaller
# Page sessions kept at once (Gradio's default: 10,000). Each holds the state of every component
# of the page (about 0.6 MB for 368 blocks; `benchmarks.overhead` measures it); the least
# recently used goes first, closed tabs after an hour.
PAGE_SESSION_CAPACITY = 1000
# The page has no API of its own (Gradio's "Use via API" would show an empty one): its header
# links to the API's page instead (`ui.API_LINK`).
FOOTER = ["gradio", "settings"]
# Gradio 6.31 records every call's inputs and outputs in the browser by default (`/gradio_api/runs`):
# a key typed on the page, or an arena battle's hidden sides, would be kept there. Off, which also
# deletes what an earlier version recorded.
RUN_HISTORY = False
# Gradio's default theme is under WCAG's 4.5:1 in places (axe-core: color-contrast): hints, info
# lines and the footer in neutral-400 (#BBBBC2 on white, 1.9:1), now neutral-500 (#71717A, 4.8:1);
# white on the orange Generate (primary-500, 2.8:1) and the red Stop (#EF4444, 3.8:1), now
# primary-700 (#C2410C, 5.2:1) and red-700 (#B91C1C, 6.5:1), as the dark theme's already are; and
# the accent (the selected tab's name, checked boxes, slider fills) primary-700 too.
THEME = gr.themes.Default().set(
    color_accent="*primary_700",
    body_text_color_subdued="*neutral_500",
    body_text_color_subdued_dark="*neutral_400",
    button_primary_background_fill="*primary_700",
    button_primary_background_fill_hover="*primary_800",
    button_primary_background_fill_dark="*primary_700",
    button_primary_background_fill_hover_dark="*primary_800",
    button_cancel_background_fill="#b91c1c",
    button_cancel_background_fill_hover="#991b1b",
)
# The theme has no dark accent of its own: primary-700 on the dark background is 3.7:1, so the
# dark theme keeps primary-500.
CSS = """
.dark { --color-accent: var(--primary-500); }
/* A tab's Run and Stop keep a button's height beside a taller provider box. */
.run-row { align-items: flex-end; }
.run-row > button { flex-grow: 0; min-height: 42px; }
.enhance-row { align-items: center; }
/* The chip that says a run starts from an input image (and clears it) looks like a chip. */
.run-row > button.input-chip { border: 1px solid var(--color-accent); border-radius: 999px; }
/* A result smaller than the preview keeps its natural size: a 256x256 image is not blown up 3x and
   blurred (Gradio's preview would "contain" it). */
#gallery .preview img { object-fit: scale-down; }
/* Every control shows where the keyboard is: Gradio draws no focus ring on checkboxes, radios,
   sliders and dropdowns. */
input[type=checkbox]:focus-visible, input[type=radio]:focus-visible, input[type=range]:focus-visible,
input[role=combobox]:focus-visible { outline: 2px solid var(--color-accent); outline-offset: 2px; }
/* A setting that can't be used now (the negative prompt at guidance 0, the seed while Random seed
   is ticked, what a provider doesn't take) looks it: greyed, and the pointer says so. */
:is(#settings, #image-input) :is(textarea, input):disabled {
    background: var(--background-fill-secondary); color: var(--body-text-color-subdued);
    cursor: not-allowed;
}
:is(#settings, #image-input) input[type=range]:disabled { opacity: 0.5; cursor: not-allowed; }
/* On a phone a result is as wide as the screen: the gallery is no taller than it needs. */
@media (max-width: 640px) {
    #gallery { max-height: calc(100vw + 80px); }
    /* ...and the title is smaller, so the prompt, Generate and the result share the first screen. */
    #header h1 { font-size: 1.35rem !important; margin: 0 0 0.25rem !important; }
    #header p { font-size: 0.85rem; }
    /* Hints a phone does without: no keyboard shortcut; the entries say why one can't be used. */
    #prompt .info-text, #provider .info-text { display: none; }
}
"""


def _mount_first(app: FastAPI, path: str, asgi: Any) -> Mount:
    """Mount `asgi` at `path` ahead of every route already there (the page's own)."""
    mount = Mount(path, app=asgi)
    app.router.routes.insert(0, mount)
    return mount


Lifespan = Callable[[Any], AbstractAsyncContextManager[None]]


def beside_the_page(api: gr.Blocks, mcp: McpEndpoint | None) -> Lifespan:
    """The lifespan that mounts the API (and MCP) on the page's server and runs them with it."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        page_lifespan = app.router.lifespan_context
        gr.mount_gradio_app(
            app,
            api,
            path=API_PATH,
            max_file_size=MAX_UPLOAD,
            footer_links=["api"],
            mcp_server=False,
            run_history=False,  # as on the page (`RUN_HISTORY`)
            theme=THEME,
            css=CSS,
        )
        app.router.lifespan_context = page_lifespan  # already running: only the API's part is new
        mounted = app.router.routes.pop()
        app.router.routes.insert(0, mounted)
        async with AsyncExitStack() as stack:
            api_app = mounted.app  # type: ignore[attr-defined]
            await stack.enter_async_context(api_app.router.lifespan_context(api_app))
            api.run_startup_events()
            await api.run_extra_startup_events()
            if mcp is not None:
                _mount_first(app, MCP_PATH, mcp)
                await stack.enter_async_context(mcp.running())
            yield

    return lifespan


def queued(blocks: gr.Blocks) -> gr.Blocks:
    """No per-event limit (our runs module bounds the work); the line is as long as the run limit."""
    return blocks.queue(default_concurrency_limit=None, max_size=max_active_runs())


def serve(page: gr.Blocks, *, host: str, port: int, mcp: bool) -> None:
    """Launch the page with the API beside it; blocks until the server stops."""
    api = queued(build_api())
    # No allowed_paths: the page serves only what it hands to Gradio's cache, never a folder.
    queued(page).launch(
        server_name=host,
        server_port=port,
        max_file_size=MAX_UPLOAD,
        mcp_server=False,  # ours (`ui.mcp_tools`), not Gradio's, serves MCP_PATH
        state_session_capacity=PAGE_SESSION_CAPACITY,
        footer_links=FOOTER,  # type: ignore[arg-type]
        run_history=RUN_HISTORY,
        theme=THEME,
        css=CSS,
        app_kwargs={"lifespan": beside_the_page(api, McpEndpoint() if mcp else None)},
    )
