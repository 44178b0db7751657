"""The operator dashboard's figures: turns per hour, failure rate and the p50/p95 of every turn
phase per channel, over a window of time, computed by the database.

PostgreSQL has `percentile_cont`, so one grouped query gives every percentile. SQLite has no
such aggregate; there a window-function query per phase returns only the (at most four) rows
around each percentile's rank, and the same linear interpolation `percentile_cont` does is
applied to them. The figures are the same on both (tests/conversations/test_dashboard.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from django.db import connection
from django.db.models import Aggregate, Count, F, FloatField, IntegerField, Q, QuerySet, Window
from django.db.models.functions import Cast, RowNumber, TruncHour

from conversations.models import EVALUATION_CHANNEL, TurnRecord

# Each phase's column and its label, in the order a turn goes through them.
PHASES: tuple[tuple[str, str], ...] = (
    ("stt_ms", "STT"),
    ("llm_first_token_ms", "first token"),
    ("first_chunk_ms", "first sentence"),
    ("first_audio_ms", "first audio"),
    ("tool_ms", "tools"),
    ("llm_ms", "LLM"),
    ("tts_ms", "TTS"),
    ("total_ms", "total"),
)
QUANTILES = (0.5, 0.95)
HOUR = timedelta(hours=1)


class PercentileCont(Aggregate):
    """PostgreSQL's continuous percentile (nulls left out), `fraction` in [0, 1]."""

    function = "percentile_cont"
    template = "%(function)s(%(fraction)s) WITHIN GROUP (ORDER BY %(expressions)s)"
    output_field = FloatField()

    def __init__(self, expression: str, fraction: float, **extra: Any) -> None:
        super().__init__(expression, fraction=repr(float(fraction)), **extra)


@dataclass(frozen=True)
class HourFigures:
    start: datetime  # in the dashboard's zone
    turns: int
    failed: int


@dataclass
class Counted:
    turns: int
    failed: int

    @property
    def failure_percent(self) -> float:
        return 100 * self.failed / self.turns if self.turns else 0.0


@dataclass
class ChannelFigures(Counted):
    channel: str
    # phase column -> quantile -> milliseconds (None: no turn of the channel had that phase)
    percentiles: dict[str, dict[float, float | None]] = field(default_factory=dict)


@dataclass
class Figures(Counted):
    start: datetime
    end: datetime
    zone: ZoneInfo
    hours: list[HourFigures]
    channels: list[ChannelFigures]


def figures(turns: QuerySet[TurnRecord], start: datetime, end: datetime, zone: ZoneInfo) -> Figures:
    """The figures of `turns` (already scoped to what the viewer may see) started in
    [start, end), hours counted on the clock of `zone`."""
    in_window = (
        turns.filter(started_at__gte=start, started_at__lt=end)
        .exclude(channel=EVALUATION_CHANNEL)  # evaluation runs are not the character's traffic
        .order_by()
    )
    failed = Count("pk", filter=Q(status=TurnRecord.Status.FAILED))
    percentile_columns: dict[str, Aggregate] = {}
    if connection.vendor == "postgresql":
        percentile_columns = {
            f"{column}__{q}": PercentileCont(column, q) for column, _ in PHASES for q in QUANTILES
        }
    rows = (
        in_window.values("channel")
        .annotate(turns=Count("pk"), failed=failed, **percentile_columns)
        .order_by("channel")
    )
    found: list[Any] = list(rows)  # rows with the percentile columns added above
    channels = [
        ChannelFigures(
            channel=row["channel"],
            turns=row["turns"],
            failed=row["failed"],
            percentiles={
                column: {q: row.get(f"{column}__{q}") for q in QUANTILES} for column, _ in PHASES
            },
        )
        for row in found
    ]
    if not percentile_columns:
        _percentiles_by_ranks(in_window, channels)
    return Figures(
        turns=sum(channel.turns for channel in channels),
        failed=sum(channel.failed for channel in channels),
        start=start,
        end=end,
        zone=zone,
        hours=_hours(in_window, start, end, zone, failed),
        channels=channels,
    )


def _hours(
    in_window: QuerySet[TurnRecord], start: datetime, end: datetime, zone: ZoneInfo, failed: Count
) -> list[HourFigures]:
    """Every hour of the window on `zone`'s clock, those without turns included."""
    counted = {
        row["hour"].timestamp(): row
        for row in in_window.annotate(hour=TruncHour("started_at", tzinfo=zone))
        .values("hour")
        .annotate(turns=Count("pk"), failed=failed)
        .order_by("hour")
    }
    # Step in UTC: adding an hour to a local time goes wrong where the clock changes.
    hour = start.astimezone(zone).replace(minute=0, second=0, microsecond=0)
    hours = []
    while hour < end:
        row = counted.get(hour.timestamp(), {"turns": 0, "failed": 0})
        hours.append(HourFigures(hour.astimezone(zone), row["turns"], row["failed"]))
        hour = (hour.astimezone(ZoneInfo("UTC")) + HOUR).astimezone(zone)
    return hours


def _percentiles_by_ranks(in_window: QuerySet[TurnRecord], channels: list[ChannelFigures]) -> None:
    """`percentile_cont` without the aggregate: per phase, the database numbers each channel's
    values in order and returns the two around each percentile's rank."""
    by_channel = {channel.channel: channel for channel in channels}
    for column, _ in PHASES:
        ranked = in_window.filter(**{f"{column}__isnull": False}).annotate(
            rank=Window(RowNumber(), partition_by=F("channel"), order_by=F(column).asc()),
            count=Window(Count("pk"), partition_by=F("channel")),
        )
        near = Q()
        for q in QUANTILES:
            # CAST truncates, so this is floor((n - 1) * q) + 1: the 1-based rank below.
            below = Cast((F("count") - 1) * q, IntegerField()) + 1
            near |= Q(rank__gte=below, rank__lte=below + 1)
        values: dict[str, dict[int, float]] = {}
        counts: dict[str, int] = {}
        for channel, rank, count, value in ranked.filter(near).values_list(
            "channel", "rank", "count", column
        ):
            values.setdefault(channel, {})[rank - 1] = value
            counts[channel] = count
        for name, figures_ in by_channel.items():
            figures_.percentiles[column] = {
                q: _interpolate(values.get(name, {}), counts.get(name, 0), q) for q in QUANTILES
            }


def _interpolate(by_rank: dict[int, float], count: int, q: float) -> float | None:
    """The value at fraction `q` of `count` sorted values, given those around its rank."""
    if count == 0:
        return None
    position = (count - 1) * q
    low = int(position)
    if low + 1 >= count:
        return by_rank[low]
    return by_rank[low] + (by_rank[low + 1] - by_rank[low]) * (position - low)
