#!/usr/bin/env bash
# Creates .venv and installs aiflow (editable) with the given extras (default: dev,ml). Idempotent and
# quick when nothing changed: a stamp records pyproject.toml's hash and the extras installed, and a
# stamp with more extras (dev,ml) covers a request for fewer (ml). Usage: scripts/setup.sh [extras]
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
hash=$(sha256sum pyproject.toml | cut -c1-16)
covered() {  # whether a stamp of this pyproject.toml lists every extra asked for
  local stamp have extra
  for stamp in .venv/.installed-"$hash"-*; do
    [ -f "$stamp" ] || continue
    have="_${stamp#.venv/.installed-"$hash"-}_"
    for extra in ${extras//,/ }; do
      [[ "$have" == *"_${extra}_"* ]] || continue 2
    done
    return 0
  done
  return 1
}
if ! covered; then
  echo "Installing aiflow[${extras}] into .venv (a minute or two the first time) ..." >&2
  # pip's output is shown only when it fails: the build backend's notes on editable installs are noise here.
  if ! out=$( { .venv/bin/python -m pip install -q --upgrade pip && \
                .venv/bin/python -m pip install -q -e ".[${extras}]"; } 2>&1); then
    echo "$out" >&2; exit 1
  fi
  rm -f .venv/.installed-*
  touch ".venv/.installed-${hash}-${extras//,/_}"
fi
