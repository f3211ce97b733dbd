"""Writes docs/cli.md from the click commands themselves: `python -m aiflow.cli.reference > docs/cli.md`.

A test compares the file with what this prints, so the reference never drifts from the code.
"""

from __future__ import annotations

import click

from aiflow.cli.main import cli


def _walk(command: click.Command, path: list[str]) -> list[tuple[list[str], click.Command]]:
    found = [(path, command)]
    if isinstance(command, click.Group):
        for name in sorted(command.commands):
            found += _walk(command.commands[name], [*path, name])
    return found


def render() -> str:
    lines = ["# CLI reference", "", "Generated from the code by `python -m aiflow.cli.reference > docs/cli.md`;",
             "a test keeps it in sync.", ""]
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
