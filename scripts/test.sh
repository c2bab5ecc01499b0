#!/usr/bin/env bash
# Install what the tests need (Python packages, and Debian's Chromium for the browser
# tests), lint, check formatting and types, then run the whole suite. Browser tests fail,
# not skip, without Chromium.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    echo "Chromium is missing: run 'sudo apt-get install -y chromium' (browser tests need it)" >&2
  fi
fi
python -m pip install -q -r requirements-test.txt
# axe-core (npm), injected into the page by tests/test_browser_a11y.py. Outside the checkout.
axe_dir="${TEST_AXE_DIR:-/tmp/zimage-ui-axe}"
if [ ! -f "$axe_dir/node_modules/axe-core/axe.min.js" ]; then
  if ! command -v npm >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq npm >/dev/null
  fi
  npm install --silent --no-audit --no-fund --prefix "$axe_dir" axe-core@4.14.1 >/dev/null
fi
# SD Prompt Reader's parser, for tests/test_png_readers.py: its package also pins a GUI stack and
# Pillow 10.3, so it comes without dependencies; its parser needs only Pillow and piexif.
python -m pip install -q --no-deps sd-prompt-reader==1.3.5 piexif==1.1.3
# A venv holding only gradio_client (the version gradio pins), for tests/test_client_contract.py:
# the API as a client with nothing of this project sees it. Outside the checkout.
client_venv="${TEST_CLIENT_VENV:-/tmp/zimage-ui-client-venv}"
[ -x "$client_venv/bin/python" ] || python -m venv "$client_venv"
"$client_venv/bin/python" -m pip install -q \
  "gradio_client==$(python -c 'import gradio_client; print(gradio_client.__version__)')"
python -m ruff check .
python -m ruff format --check .
python -m mypy
# One process by default. `bash scripts/test.sh -n 2 --dist loadfile` runs two pytest-xdist workers
# (a file per worker), a little faster on two cores; under that load the painted-mask browser test
# has lost its stroke (the editor's value not yet sent when Generate is clicked), so CI keeps one.
python -m pytest "$@"
