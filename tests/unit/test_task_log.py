"""Reading a try's output from this machine's log file (no broker: the store is SQLite)."""

from __future__ import annotations

from pathlib import Path

import pytest

from aiflow import ops
from aiflow.config import Config
from aiflow.ops.executions import _utf8_prefix
from tests.unit.web.test_log_stream import _store_with_a_finished_try


@pytest.mark.parametrize(("data", "whole"), [
    (b"abc", 3), (b"ab\xc3", 2), (b"ab\xc3\xa9", 4), (b"\xe2\x82", 0), (b"\xe2\x82\xac", 3),
    (b"x\xf0\x9f\x98", 1), (b"x\xf0\x9f\x98\x80", 5), (b"\xff", 1), (b"", 0),
])
def test_text_is_cut_before_an_incomplete_utf8_sequence(data: bytes, whole: int) -> None:
    assert _utf8_prefix(data) == whole


def test_a_finished_tries_output_is_read_from_the_local_file(tmp_path: Path) -> None:
    config = Config.load(home=tmp_path, environ={})
    log = _store_with_a_finished_try(config)
    piece = ops.read_task_log("e1", "t", config=config)
    assert (piece.text, piece.start, piece.position, piece.ended, piece.source) == (
        "first line\nsecond line\n", 0, 23, True, str(log))
    assert ops.read_task_log("e1", "t", 1, start=11, config=config).text == "second line\n"
    assert ops.read_task_log("e1", "t", tail=5, config=config).text == "line\n"
    pieces = list(ops.follow_task_log("e1", "t", config=config))
    assert "".join(p.text for p in pieces) == "first line\nsecond line\n" and pieces[-1].ended
