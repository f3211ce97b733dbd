#!/usr/bin/env bash
# The main job: the tutorial's online machine-learning workflow, end to end, on this machine.
# Installs aiflow, starts `aiflow standalone` in the background (a local Kafka broker, the database,
# a scheduler and a worker, all under $AIFLOW_HOME, default ~/aiflow), writes the dataset, uploads
# the workflow, starts an execution and shows its predictions as they are written.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh dev,ml
export AIFLOW_BROKER_CACHE_DIR="${AIFLOW_BROKER_CACHE_DIR:-$PWD/.cache/kafka}"
export PATH="$PWD/.venv/bin:$PATH"
home="${AIFLOW_HOME:-$HOME/aiflow}"
watch_seconds="${MAIN_WATCH_SECONDS:-180}"

aiflow standalone -d
cd samples/online_machine_learning
python make_dataset.py dataset
aiflow workflow upload online_ml_workflow.py --files dataset
execution=$(aiflow workflow-execution start online_machine_learning | sed -n 's/^Workflow execution: \(.*\) submitted\.$/\1/p')
echo "Workflow execution: $execution submitted."
result="$home/working_dir/online_machine_learning/$execution/online_ml_workflow/tmp/predict_result"
echo
echo "Waiting for predictions in $result ..."
deadline=$((SECONDS + watch_seconds))
shown=0
while [ $SECONDS -lt $deadline ]; do
  if [ -f "$result" ]; then
    lines=$(wc -l < "$result")
    if [ "$lines" -gt "$shown" ]; then
      tail -n +"$((shown + 1))" "$result" | head -n "$((lines - shown))"
      shown=$lines
    fi
    if grep -q 'predict result:' "$result"; then break; fi
  fi
  sleep 2
done
echo
aiflow task-execution list "$execution"
if ! grep -q 'predict result:' "$result" 2>/dev/null; then
  echo "No prediction within ${watch_seconds} s: see the task logs under $home/logs/online_machine_learning/$execution/" >&2
  exit 1
fi
cat <<TXT

The workflow keeps running: a new model is trained every 30 s and predictions keep coming.
  watch:  tail -f $result
  status: .venv/bin/aiflow workflow-execution show $execution --watch
  stop:   .venv/bin/aiflow workflow-execution stop-all online_machine_learning && .venv/bin/aiflow standalone stop
TXT
