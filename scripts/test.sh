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
python -m ruff check .
python -m ruff format --check .
python -m mypy
python -m pytest "$@"
