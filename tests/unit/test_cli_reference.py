from pathlib import Path

from aiflow.cli.reference import render

REPO = Path(__file__).resolve().parents[2]


def test_the_cli_reference_is_in_sync_with_the_code() -> None:
    assert (REPO / "docs" / "cli.md").read_text() == render(), \
        "docs/cli.md is stale: run `python -m aiflow.cli.reference > docs/cli.md`"
