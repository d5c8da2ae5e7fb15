#!/usr/bin/env bash
# Installs what the report's browser test needs: Debian's chromium, and Python Playwright to drive
# it (pip wheel; it drives the system browser, so `playwright install` is never run: browser
# downloads are not possible here). Idempotent; safe to call before `make test`.
# Usage: bash .ci/install-browser.sh [path/to/venv]   (default: .venv)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${1:-.venv}"

if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" -ne 0 ] && ! command -v sudo >/dev/null 2>&1; then
    echo "install-browser: chromium is missing and this is not root; the browser test will skip" >&2
  else
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -q
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends chromium
  fi
fi

if [ -x "$VENV/bin/python" ] && ! "$VENV/bin/python" -c "import playwright" 2>/dev/null; then
  "$VENV/bin/python" -m pip install -q -c constraints.txt "playwright>=1.40"
fi

command -v chromium >/dev/null 2>&1 && chromium --version || true
