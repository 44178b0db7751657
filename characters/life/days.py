"""Days, ranges and the beat tick: which dates of which characters are due, and generating
them in order (the schedule before the diary of the same date).

Nothing here reads the clock to decide a date; callers pass `now` or the dates themselves.
"""

from __future__ import annotations

import logging
import zoneinfo
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from django.conf import settings
from django.utils import timezone

from ..models import Character, DailySchedule, Diary, GenerationClaim, GenerationJob
from .errors import GenerationBusy, LifeError
from .generators import generate_daily_schedule, generate_diary, generate_weekly_schedule
from .lease import claim_key

logger = logging.getLogger("avatarsite.life")

# The longest range generated at once (the CLI, the admin's backfill).
MAX_RANGE_DAYS = 366

SCHEDULE, DIARY = "schedule", "diary"


@dataclass
class DayResult:
    """What happened to one date: what was generated now, and the error that stopped it."""

    date: date
    schedule_generated: bool = False
    diary_generated: bool = False
    error: str = ""
    code: str = ""

    @property
    def busy(self) -> bool:
        return self.code == GenerationBusy.code

    def as_json(self) -> dict[str, Any]:
        return {**asdict(self), "date": self.date.isoformat()}


def generate_day(
    character: Character,
    day: date,
    *,
    diary: bool = True,
    overwrite: frozenset[str] = frozenset(),
) -> DayResult:
    """Whatever of `day` is missing (or named in `overwrite`): weekly plan, schedule, diary.

    The schedule always comes before the diary of the same date, so the diary is written from
    it, and the next day's schedule sees both.
    """
    result = DayResult(day)
    try:
        generate_weekly_schedule(character)
        _, result.schedule_generated = generate_daily_schedule(
            character, day, overwrite=SCHEDULE in overwrite
        )
        if diary:
            _, result.diary_generated = generate_diary(character, day, overwrite=DIARY in overwrite)
    except LifeError as exc:
        result.error, result.code = str(exc), exc.code
        logger.warning("life %s %s: %s", character.slug, day, exc)
    return result


def date_range(start: date, end: date) -> list[date]:
    """Every date from `start` to `end` inclusive."""
    if start > end:
        raise ValueError(f"the range starts ({start}) after it ends ({end})")
    return [start + timedelta(days=offset) for offset in range((end - start).days + 1)]


def generate_dates(
    character: Character,
    dates: Iterable[date],
    *,
    diary: bool = True,
    overwrite: frozenset[str] = frozenset(),
    on_day: Callable[[DayResult], None] | None = None,
) -> list[DayResult]:
    """Each date in order (pass them ascending), going on past a failed one."""
    results = []
    for day in dates:
        result = generate_day(character, day, diary=diary, overwrite=overwrite)
        results.append(result)
        if on_day:
            on_day(result)
    return results


@dataclass
class DueDay:
    character: Character
    date: date
    diary: bool  # whether the diary is due too, or only the schedule


@dataclass
class _Known:
    schedules: set[tuple[int, date]] = field(default_factory=set)
    diaries: set[tuple[int, date]] = field(default_factory=set)
    queued: set[tuple[int, date]] = field(default_factory=set)
    backing_off: set[str] = field(default_factory=set)


def due_days(now: datetime) -> list[DueDay]:
    """The (character, local date) pairs that lack a schedule or diary that is due by `now`.

    A schedule is due once the character's local clock passes its schedule hour, a diary once
    it passes its diary hour; past dates are due entirely, back to LIFE_BACKFILL_DAYS days ago
    (never before the character was created), so a stopped beat catches up and no day is
    skipped. Dates already queued, and work whose last attempt failed recently (see
    Claim.fail), are left out. Five queries whatever the number of characters.

    `now` decides which dates are due; back-offs and queued jobs are judged on the real clock,
    the one they were recorded with.
    """
    characters = list(Character.objects.filter(is_active=True))
    if not characters:
        return []
    window = timedelta(days=settings.LIFE_BACKFILL_DAYS)
    wall = timezone.now()
    # Local dates run up to a day behind UTC's.
    earliest = (now - window - timedelta(days=1)).date()
    known = _Known(
        schedules=set(
            DailySchedule.objects.filter(schedule_date__gte=earliest).values_list(
                "character_id", "schedule_date"
            )
        ),
        diaries=set(
            Diary.objects.filter(diary_date__gte=earliest).values_list("character_id", "diary_date")
        ),
        queued=set(
            GenerationJob.objects.filter(
                status__in=GenerationJob.UNFINISHED,
                date_from__gte=earliest,
                created_at__gt=wall - timedelta(seconds=settings.LIFE_JOB_STALE_SECONDS),
                kind__in=(GenerationJob.Kind.DAY, GenerationJob.Kind.SCHEDULE),
            ).values_list("character_id", "date_from")
        ),
        backing_off=set(
            GenerationClaim.objects.filter(retry_after__gt=wall, token__isnull=True).values_list(
                "key", flat=True
            )
        ),
    )
    due = []
    for character in characters:
        try:
            local = character.local_now(now)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            # Saved around the model's validation: one bad row must not stop everyone's life.
            logger.error("life: %s has an unknown time zone %r", character.slug, character.timezone)
            continue
        today = local.date()
        first = max(today - window, character.created_at.astimezone(character.zone).date())
        for offset in range((today - first).days + 1):
            day = first + timedelta(days=offset)
            past = day < today
            schedule_due = past or local.hour >= character.schedule_hour
            diary_due = past or local.hour >= character.diary_hour
            pair = (character.pk, day)
            missing_schedule = schedule_due and pair not in known.schedules
            missing_diary = diary_due and pair not in known.diaries
            if not (missing_schedule or missing_diary) or pair in known.queued:
                continue
            blocking = claim_key(character, SCHEDULE if missing_schedule else DIARY, day)
            if blocking in known.backing_off:
                continue
            due.append(DueDay(character, day, diary_due))
    return due
