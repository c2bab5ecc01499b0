"""Serve the Z-Image-Turbo playground: `python app.py [--host HOST] [--port PORT] [--mcp]`.

Also the Hugging Face Space's app_file. Host and port default to Gradio's own
GRADIO_SERVER_NAME / GRADIO_SERVER_PORT variables, then 127.0.0.1:7860.
"""

from __future__ import annotations

import argparse

from zimage_ui import env
from zimage_ui.providers import default_provider_id, get_provider
from zimage_ui.runs import max_active_runs
from zimage_ui.ui import build_demo

MAX_UPLOAD = "50mb"  # PNG info reads images up to 50 MB; presets are far smaller


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Serve the Z-Image-Turbo playground.")
    parser.add_argument("--host", default=env.get("GRADIO_SERVER_NAME"))
    parser.add_argument("--port", type=int, default=env.get("GRADIO_SERVER_PORT"))
    parser.add_argument(
        "--mcp",
        action="store_true",
        help="also serve an MCP server (tools: generate, compare, sweep, providers); "
        "GRADIO_MCP_SERVER=true does the same",
    )
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    # Build the default local pipeline in the background so the first click is quick.
    get_provider(default_provider_id()).warm_up()
    # No allowed_paths: the page serves only what it hands to Gradio's cache, never a folder.
    build_demo().queue(default_concurrency_limit=None, max_size=max_active_runs()).launch(
        server_name=args.host,
        server_port=args.port,
        max_file_size=MAX_UPLOAD,
        mcp_server=True if args.mcp else None,  # None: Gradio reads GRADIO_MCP_SERVER
    )


if __name__ == "__main__":
    main()
