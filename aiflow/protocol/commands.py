"""What a COMMAND inbox message asks of the scheduler: a module of its own, so that ops can name a
command without loading the codec."""

from __future__ import annotations

from enum import Enum


class Command(str, Enum):
    """What a COMMAND inbox message asks of the scheduler."""

    START_EXECUTION = "START_EXECUTION"
    STOP_EXECUTION = "STOP_EXECUTION"
    START_TASK = "START_TASK"
    STOP_TASK = "STOP_TASK"
    RESTART_TASK = "RESTART_TASK"
