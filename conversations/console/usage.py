"""Usage roll-ups: turns, tokens in and out and seconds of speech heard and spoken, per day on
a chosen clock, in total or per character, API key or end user, summed by the database."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from django.db.models import Count, QuerySet, Sum
from django.db.models.functions import TruncDate

from conversations.models import EVALUATION_CHANNEL, TurnRecord

# What a roll-up may be split by, and the column it groups on.
GROUPS = {"character": "character_id", "api_key": "api_key_id", "end_user": "end_user_id"}
MEASURES = ("tokens_in", "tokens_out", "speech_in_seconds", "speech_out_seconds")


def daily_usage(
    turns: QuerySet[TurnRecord],
    start: datetime,
    end: datetime,
    zone: ZoneInfo,
    group: str | None = None,
) -> list[dict[str, Any]]:
    """One row per day of `zone` (and per `group` value) with turns started in [start, end):
    {"day", group?, "turns", "tokens_in", "tokens_out", "speech_in_seconds",
    "speech_out_seconds"}; a sum over turns that reported nothing is 0."""
    keys = ["day"] + ([GROUPS[group]] if group else [])
    rows = (
        turns.filter(started_at__gte=start, started_at__lt=end)
        .exclude(channel=EVALUATION_CHANNEL)  # evaluation runs are no one's usage
        .annotate(day=TruncDate("started_at", tzinfo=zone))
        .values(*keys)
        .annotate(turns=Count("pk"), **{name: Sum(name) for name in MEASURES})
        .order_by(*keys)
    )
    found: list[dict[str, Any]] = []
    for row in rows:
        day: date = row["day"]
        item: dict[str, Any] = {"day": day.isoformat(), "turns": row["turns"]}
        if group:
            value = row[GROUPS[group]]
            item[group] = str(value) if value is not None else None
        item.update({name: row[name] or 0 for name in MEASURES})
        found.append(item)
    return found


def totals(rows: list[dict[str, Any]]) -> dict[str, Any]:
    return {name: sum(row[name] for row in rows) for name in ("turns", *MEASURES)}
