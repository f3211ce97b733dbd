"""Schedule expressions: `cron@<5-field crontab>` and `interval@<days> <hours> <minutes> <seconds>`.

croniter is imported where a cron expression is parsed or computed, not with this module: every workflow file
imports the SDK, and croniter's import runs `file` on the interpreter (platform.architecture), about 25 ms that
an upload's load of the file and a task process without a fork server would pay for nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from aiflow.errors import WorkflowDefinitionError


@dataclass(frozen=True)
class Cron:
    expression: str

    def next_after(self, moment: datetime) -> datetime:
        from croniter import croniter

        return croniter(self.expression, moment).get_next(datetime)

    def __str__(self) -> str:
        return f"cron@{self.expression}"


@dataclass(frozen=True)
class Interval:
    every: timedelta

    def next_after(self, moment: datetime) -> datetime:
        return moment + self.every

    def __str__(self) -> str:
        seconds = int(self.every.total_seconds())
        days, rest = divmod(seconds, 86400)
        hours, rest = divmod(rest, 3600)
        minutes, secs = divmod(rest, 60)
        return f"interval@{days} {hours} {minutes} {secs}"


Expression = Cron | Interval


def parse_expression(text: str) -> Expression:
    """Parse a schedule expression; a malformed one raises WorkflowDefinitionError saying what is wrong."""
    if not isinstance(text, str):
        raise WorkflowDefinitionError(f"a schedule expression must be a string, got {type(text).__name__}")
    kind, sep, body = text.partition("@")
    if not sep or kind not in ("cron", "interval"):
        raise WorkflowDefinitionError(
            f"{text!r} is not a schedule expression: use 'cron@<minute hour day month weekday>' "
            "or 'interval@<days> <hours> <minutes> <seconds>'")
    if kind == "cron":
        from croniter import croniter

        fields = body.split()
        if len(fields) != 5 or not croniter.is_valid(body):
            raise WorkflowDefinitionError(f"{text!r}: a cron expression has 5 valid fields "
                                          "(minute hour day month weekday), e.g. 'cron@*/5 * * * *'")
        return Cron(" ".join(fields))
    items = body.split(" ")
    if len(items) != 4:
        raise WorkflowDefinitionError(f"{text!r}: an interval has 4 numbers, days hours minutes seconds, "
                                      "e.g. 'interval@0 0 10 0' for ten minutes")
    try:
        days, hours, minutes, seconds = (float(i) if i.strip() else 0.0 for i in items)
    except ValueError:
        raise WorkflowDefinitionError(f"{text!r}: interval items must be numbers") from None
    if min(days, hours, minutes, seconds) < 0:
        raise WorkflowDefinitionError(f"{text!r}: interval items must not be negative")
    every = timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds)
    if every.total_seconds() <= 0:
        raise WorkflowDefinitionError(f"{text!r}: an interval must be longer than zero")
    return Interval(every)
