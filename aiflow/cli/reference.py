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
    for path, command in _walk(cli, ["aiflow"]):
        with click.Context(command, info_name=" ".join(path), terminal_width=100, max_content_width=100) as ctx:
            if len(path) > 1:
                lines += [f"## {' '.join(path)}", ""]
            lines += ["```", command.get_help(ctx).rstrip(), "```", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    print(render(), end="")
