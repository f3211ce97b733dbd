#!/usr/bin/env bash
# Creates .venv and installs aiflow with the given extras (default: dev,ml). Idempotent and quick
# when nothing changed. Usage: scripts/setup.sh [extras]
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-dev,ml}"
python=${PYTHON:-python3}
if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null; then
  echo "aiflow needs Python 3.10 or newer ($python is older or missing)" >&2; exit 1
fi
if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv
fi
stamp=".venv/.installed-$(cat pyproject.toml | sha256sum | cut -c1-16)-${extras//,/_}"
if [ ! -f "$stamp" ]; then
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e ".[${extras}]"
  rm -f .venv/.installed-*
  touch "$stamp"
fi
