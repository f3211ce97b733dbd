#!/usr/bin/env bash
# The main job: installs aiflow, starts the local Kafka broker of $AIFLOW_HOME (default ~/aiflow)
# in the background, and runs the event sample against it. Stop the broker with
#   .venv/bin/aiflow broker stop
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh dev,ml
export AIFLOW_BROKER_CACHE_DIR="${AIFLOW_BROKER_CACHE_DIR:-$PWD/.cache/kafka}"
.venv/bin/aiflow broker start --daemon
.venv/bin/aiflow topics list
.venv/bin/python samples/events/hello_events.py
echo
echo "The broker keeps running for you: try '.venv/bin/aiflow event send my_key hello' and"
echo "'.venv/bin/aiflow event list --key my_key'. Stop it with '.venv/bin/aiflow broker stop'."
