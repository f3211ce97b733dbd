"""Writes docs/cli.md from the click commands themselves: `python -m aiflow.cli.reference > docs/cli.md`.

A test compares the file with what this prints, so the reference never drifts from the code.
"""

from __future__ import annotations

import click

from aiflow.cli.main import cli

SCRIPTING = """
## In scripts

- **`-o json` / `-o yaml`** on every command. Commands that list or show print rows or an object;
  commands that act (start, stop, delete, pause, ...) print one sentence by default and, as json or
  yaml, an object saying what they did: `aiflow workflow-execution start train -o json` prints the new
  execution with its `id`. `-o plain` prints tab-separated rows without a header. A service started
  with `-d` prints its pid and log file; a service in the foreground writes its log, and `-o json`
  (or `--log-format json`, or `AIFLOW_LOG_FORMAT=json`) makes each log line a JSON object.
- **Exit codes.** 0: done. 1: an error (its one line is on stderr), or the execution waited for
  ended FAILED or STOPPED. 2: a mistake in the command line. 3: `--timeout` passed before the
  execution ended. `workflow-execution start --wait [--timeout S]` and `workflow-execution show
  --watch [--timeout S]` wait for the end and exit with these codes, so a CI job can branch on the
  result. The end is that of the execution and of its tries: an execution ends as soon as one of its
  tasks fails or is stopped, and its other tries are stopped after that, so these commands return
  once none of them is still queued, running or stopping, and what they print is final:

  ```bash
  id=$(aiflow workflow-execution start nightly -o json | jq -r .id)
  aiflow workflow-execution show "$id" --watch --timeout 3600 -o json > result.json
  case $? in 0) echo succeeded;; 1) echo failed or stopped;; 3) echo still running;; esac
  ```
- **Shell completion** (click's): add one line to your shell's start-up file.

  ```bash
  eval "$(_AIFLOW_COMPLETE=bash_source aiflow)"      # ~/.bashrc
  eval "$(_AIFLOW_COMPLETE=zsh_source aiflow)"       # ~/.zshrc
  _AIFLOW_COMPLETE=fish_source aiflow | source       # ~/.config/fish/completions/aiflow.fish
  ```
- **Service logs** carry a timestamp, the level and the logger on each line; `--log-format json` on
  `scheduler|worker|webserver start`, `standalone` and `connector run ...` writes JSON lines (time in
  UTC, level, logger, message, pid) for log shippers.
"""


def _walk(command: click.Command, path: list[str]) -> list[tuple[list[str], click.Command]]:
    found = [(path, command)]
    if isinstance(command, click.Group):
        ctx = click.Context(command, info_name=path[-1])  # the root loads its commands' modules on asking
        for name in command.list_commands(ctx):
            sub = command.get_command(ctx, name)
            assert sub is not None, name
            found += _walk(sub, [*path, name])
    return found


def render() -> str:
    lines = ["# CLI reference", "", "Generated from the code by `python -m aiflow.cli.reference > docs/cli.md`;",
             "a test keeps it in sync.", "", SCRIPTING.strip(), ""]
    # Every command takes the root's help options (-h, --help), as when it runs under `aiflow`. click
    # caches a command's help option from whichever context asked first (a test that invoked it,
    # say), so the cache is cleared: the reference must not depend on what ran before.
    help_options = cli.context_settings.get("help_option_names", ["--help"])
    for path, command in _walk(cli, ["aiflow"]):
        command._help_option = None
        with click.Context(command, info_name=" ".join(path), terminal_width=100, max_content_width=100,
                           help_option_names=help_options) as ctx:
            if len(path) > 1:
                lines += [f"## {' '.join(path)}", ""]
            lines += ["```", command.get_help(ctx).rstrip(), "```", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    print(render(), end="")
