"""The docs stand alone and keep up with the code: every configuration key of `aiflow.config.KEYS` is in
docs/configuration.md's table with its environment variable and default (and nothing else is), and
nothing the project ships points at files outside the repository."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from aiflow.config import KEYS, KEYS_BY_NAME, Key

REPO = Path(__file__).resolve().parents[2]
CONFIGURATION = REPO / "docs" / "configuration.md"
# A row of the key table: | `key` | `ENV` | default | meaning |
ROW = re.compile(r"^\|\s*`(?P<key>[a-z][a-z0-9_.]*)`\s*\|\s*`(?P<env>[A-Z0-9_]+)`\s*\|(?P<default>[^|]*)\|.*\|\s*$")
# What only a file outside this repository could resolve: a shared folder or a section of a design
# document that is not here.
OUTSIDE = re.compile(r"shared/|DESIGN\s*§|DESIGN\.md|STYLE\.md|aiflow-features\.md")
# Where the project's own words are: its docs, README, samples, deployment files and the package.
SCANNED = ("README.md", "docs", "samples", "deploy", "aiflow")
TEXT_SUFFIXES = {".md", ".py", ".sh", ".yml", ".yaml", ".toml", ".cfg", ".ini", ".txt", ".json", ".properties",
                 ".html", ".js", ".css", ".avsc", ".xml", ".mako", ".example", ""}


def documented_rows() -> dict[str, tuple[str, str]]:
    """key -> (environment variable, default cell) of every row of docs/configuration.md's key table."""
    rows: dict[str, tuple[str, str]] = {}
    for line in CONFIGURATION.read_text().splitlines():
        match = ROW.match(line)
        if match:
            assert match["key"] not in rows, f"{match['key']} is documented twice in {CONFIGURATION.name}"
            rows[match["key"]] = (match["env"], match["default"].strip())
    return rows


def test_the_key_table_is_read() -> None:
    rows = documented_rows()
    assert len(rows) >= 10, f"no key table found in {CONFIGURATION}"
    assert len(KEYS) == len(KEYS_BY_NAME)


@pytest.mark.parametrize("key", KEYS, ids=lambda k: k.name)
def test_every_config_key_is_documented(key: Key) -> None:
    rows = documented_rows()
    assert key.name in rows, f"{key.name} ({key.env}) is missing from the table in docs/configuration.md"
    env, default = rows[key.name]
    assert env == key.env, f"{key.name}: docs/configuration.md says {env}, the code reads {key.env}"
    cell = default.replace("`", "")
    if key.default == "":
        assert cell.startswith("empty"), f"{key.name}: the default is empty, docs/configuration.md says {default!r}"
    elif isinstance(key.default, bool):
        assert cell.lower().startswith(str(key.default).lower()), \
            f"{key.name}: the default is {key.default}, docs/configuration.md says {default!r}"
    else:
        assert re.match(rf"{re.escape(str(key.default))}(\s|$)", cell), \
            f"{key.name}: the default is {key.default!r}, docs/configuration.md says {default!r}"


def test_every_documented_key_exists() -> None:
    stale = sorted(set(documented_rows()) - set(KEYS_BY_NAME))
    assert not stale, f"docs/configuration.md documents keys the configuration does not have: {stale}"


def test_every_environment_variable_the_package_reads_is_documented() -> None:
    text = CONFIGURATION.read_text()
    names: set[str] = set()
    for path in (REPO / "aiflow").rglob("*.py"):
        names.update(re.findall(r"\bAIFLOW_[A-Z0-9_]*[A-Z0-9]_?", path.read_text()))
    missing = sorted(name for name in names if name not in text)
    assert not missing, f"environment variables of aiflow/ missing from docs/configuration.md: {missing}"


def shipped_files() -> list[Path]:
    files: list[Path] = []
    for name in SCANNED:
        root = REPO / name
        candidates = [root] if root.is_file() else sorted(root.rglob("*"))
        for path in candidates:
            if (path.is_file() and not path.is_symlink() and "__pycache__" not in path.parts
                    and path.suffix in TEXT_SUFFIXES):
                files.append(path)
    return files


def test_the_docs_stand_alone() -> None:
    found = []
    for path in shipped_files():
        try:
            text = path.read_text()
        except UnicodeDecodeError:
            continue
        for number, line in enumerate(text.splitlines(), 1):
            if OUTSIDE.search(line):
                found.append(f"{path.relative_to(REPO)}:{number}: {line.strip()[:120]}")
    assert not found, "references to files outside the repository:\n" + "\n".join(found)


def test_links_between_docs_resolve() -> None:
    """A path the docs name as docs/x.md, deploy/..., benchmarks/... or samples/... is in the repository."""
    broken = []
    pattern = re.compile(r"(?<![\w/.-])((?:docs|deploy|benchmarks|samples|scripts)/[\w./-]*[\w/])")
    for path in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]:
        for number, line in enumerate(path.read_text().splitlines(), 1):
            for target in pattern.findall(line):
                if not (REPO / target).exists() and not (path.parent / target).exists():
                    broken.append(f"{path.relative_to(REPO)}:{number}: {target}")
    assert not broken, "paths in the docs that do not exist:\n" + "\n".join(broken)
