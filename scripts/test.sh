#!/usr/bin/env bash
# The test command: installs what it needs (virtualenv, packages, kcat, the Kafka jars on first use,
# into ~/.cache/aiflow/kafka as every start of the local broker does), then runs lint, type checks
# and the whole test suite against one real Kafka broker.
# Extra arguments go to pytest, e.g. scripts/test.sh tests/unit -x
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh dev,ml
# Debian packages the tests use: kcat (a plain Kafka producer), postgresql (the metadata tests
# also run on PostgreSQL; the tests start a throw-away cluster of their own) and chromium.
need=()
command -v kcat >/dev/null || need+=(kcat)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null || need+=(postgresql)
# chromium: the browser test drives the pages in it (Playwright cannot download a browser of its own here).
command -v chromium >/dev/null || [ -x /usr/lib/chromium/chromium ] || need+=(chromium)
if [ ${#need[@]} -gt 0 ] && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
  echo "Installing ${need[*]} (Debian packages) for the tests ..."
  (apt-get install -y -qq "${need[@]}" >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq "${need[@]}"; }) >/dev/null
fi
echo "== ruff"; .venv/bin/ruff check .
echo "== mypy"; .venv/bin/mypy
echo "== pytest"
set +e
.venv/bin/python -m pytest "$@"
code=$?
set -e
if [ "$code" = 5 ]; then echo "pytest collected no tests" >&2; exit 1; fi
exit "$code"
