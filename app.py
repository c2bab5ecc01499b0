"""Serve the Z-Image-Turbo playground: `python app.py [--host HOST] [--port PORT] [--mcp]`.

The page at `/`, its API at `/api/`, and with `--mcp` the MCP tools at `/gradio_api/mcp/`.

Also the Hugging Face Space's app_file. Host and port default to Gradio's own
GRADIO_SERVER_NAME / GRADIO_SERVER_PORT variables, then 127.0.0.1:7860.
"""

from __future__ import annotations

import argparse

from zimage_ui import env
from zimage_ui.providers import default_provider_id, get_provider
from zimage_ui.ui import build_demo
from zimage_ui.ui.serve import serve


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Serve the Z-Image-Turbo playground.")
    parser.add_argument("--host", default=env.get("GRADIO_SERVER_NAME"))
    parser.add_argument("--port", type=int, default=env.get("GRADIO_SERVER_PORT"))
    parser.add_argument(
        "--mcp",
        action="store_true",
        help="also serve the MCP tools (generate, compare, sweep, providers) at /gradio_api/mcp/; "
        "GRADIO_MCP_SERVER=true does the same",
    )
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    # Build the default local pipeline in the background so the first click is quick.
    get_provider(default_provider_id()).warm_up()
    serve(build_demo(), host=args.host, port=args.port, mcp=args.mcp or env.get("GRADIO_MCP_SERVER"))


if __name__ == "__main__":
    main()
