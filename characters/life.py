"""A character's daily life: its usual week, a schedule each morning and a diary each night.

Two rules shape this module, both fixes of what AIAvatarKit does:

* Money: every generator looks for the row it would write *before* any LLM call, and calls the
  LLM only while holding the GenerationClaim lease for that row, so concurrent runs and tasks
  delivered twice never duplicate a row nor pay twice. Each paid, validated LLM answer is kept
  on the claim until the row is saved, so a run that takes over after a crash resumes there.
* Time: dates are the character's own (its timezone). Nothing here reads the clock to decide a
  date; callers pass `now` or the date itself.

The LLM is asked for JSON, validated by the pydantic models in life_prompts.py, and asked
again (at most LIFE_LLM_ATTEMPTS times in all) with the validation error when it drifts.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import threading
import uuid
import zoneinfo
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timedelta
from typing import Any, TypeVar

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone
from pydantic import BaseModel, ValidationError

from conversations.llm import ChatMessage, LLMError, LLMRequest, provider_for
from conversations.llm.echo import EchoProvider
from conversations.models import Message

from . import life_prompts as prompts
from .models import (
    Character,
    DailySchedule,
    Diary,
    GenerationClaim,
    GenerationJob,
    NewsDigest,
    NewsStatus,
    Origin,
    WeeklySchedule,
)

logger = logging.getLogger("avatarsite.life")

Schema = TypeVar("Schema", bound=BaseModel)

# The diary sees at most this much of the day's conversations (the most recent part).
CONVERSATION_CHARS = 6000
MAX_BACKOFF = timedelta(hours=6)
# The longest range generated at once (the CLI, the admin's backfill).
MAX_RANGE_DAYS = 366


class LifeError(Exception):
    """A generation that could not be done; `code` is machine-readable."""

    code = "life_error"


class WeeklyScheduleMissing(LifeError):
    code = "weekly_schedule_missing"


class DailyScheduleMissing(LifeError):
    code = "daily_schedule_missing"


class GenerationBusy(LifeError):
    """Another run holds the lease on this work; try again later (it may well be done)."""

    code = "generation_in_progress"


class GenerationFailed(LifeError):
    """The LLM failed, or gave no valid answer within the allowed attempts."""

    code = "generation_failed"


# --- Talking to the LLM -----------------------------------------------------------------------

_thread_state = threading.local()


def _run(coroutine: Any) -> Any:
    """Run a coroutine on this thread's own event loop.

    One loop per thread, kept, rather than a new one per call: the provider keeps its HTTP
    client per loop, so its connections are reused from one LLM call to the next.
    """
    loop = getattr(_thread_state, "loop", None)
    if loop is None or loop.is_closed():
        loop = _thread_state.loop = asyncio.new_event_loop()
    return loop.run_until_complete(coroutine)


async def _complete(character: Character, messages: list[ChatMessage], model: str) -> str:
    request = LLMRequest(messages=messages, model=model, temperature=character.llm_temperature)
    # No tools are offered, so the provider yields text only.
    stream = provider_for(character).stream(request)
    return "".join([delta async for delta in stream if isinstance(delta, str)])


def _strip_fences(text: str) -> str:
    text = text.strip()
    if text.startswith("```"):
        text = text.split("\n", 1)[1] if "\n" in text else ""
        text = text.rsplit("```", 1)[0]
    return text.strip()


def _fingerprint(messages: list[ChatMessage], model: str) -> str:
    body = json.dumps([model, [[m.role, m.content] for m in messages]], ensure_ascii=False)
    return hashlib.sha256(body.encode()).hexdigest()


# --- Claims: one payer per piece of work --------------------------------------------------------


class Claim:
    """The lease this run holds on one key (see GenerationClaim)."""

    def __init__(self, row: GenerationClaim) -> None:
        self.row = row

    def paid(self, step: str, messages: list[ChatMessage], model: str) -> str | None:
        """A validated answer already paid for with exactly these messages, if any."""
        saved = self.row.steps.get(step)
        if saved and saved.get("input") == _fingerprint(messages, model):
            return saved["output"]
        return None

    def keep(self, step: str, messages: list[ChatMessage], model: str, output: str) -> None:
        """Remember a paid answer and extend the lease (this doubles as a heartbeat)."""
        self.row.steps[step] = {"input": _fingerprint(messages, model), "output": output}
        GenerationClaim.objects.filter(pk=self.row.pk, token=self.row.token).update(
            steps=self.row.steps, leased_until=timezone.now() + _lease()
        )

    def release(self) -> None:
        """The work is saved: drop the claim (only if it is still ours)."""
        GenerationClaim.objects.filter(pk=self.row.pk, token=self.row.token).delete()

    def fail(self, exc: Exception) -> None:
        """Free the lease, keep what was paid for, and say when the beat may try again.

        Waiting for other work (GenerationBusy, e.g. the shared news digest) is no failure:
        the lease is freed without an error or a back-off.
        """
        claims = GenerationClaim.objects.filter(pk=self.row.pk, token=self.row.token)
        if isinstance(exc, GenerationBusy):
            claims.update(token=None, leased_until=None, attempts=max(self.row.attempts - 1, 0))
            return
        base = timedelta(seconds=settings.LIFE_RETRY_BASE_SECONDS)
        backoff = min(base * 2 ** max(self.row.attempts - 1, 0), MAX_BACKOFF)
        claims.update(
            token=None,
            leased_until=None,
            last_error=f"{type(exc).__name__}: {exc}"[:2000],
            retry_after=timezone.now() + backoff,
        )


def _lease() -> timedelta:
    return timedelta(seconds=settings.LIFE_LEASE_SECONDS)


@contextmanager
def claimed(key: str, character: Character | None, *, fresh: bool = False) -> Iterator[Claim]:
    """Hold the lease on `key` for the block; raise GenerationBusy if someone else holds it.

    A lease whose holder died (a killed worker) simply expires, and the next run takes over
    with the answers the dead one already paid for, unless `fresh` (overwriting) asks for new
    ones. A failure inside the block frees the lease and records the error.
    """
    with transaction.atomic():
        row = GenerationClaim.objects.select_for_update().filter(key=key).first()
        if row is None:
            try:
                with transaction.atomic():
                    row = GenerationClaim.objects.create(key=key, character=character)
            except IntegrityError:  # created by a concurrent run since we looked
                row = GenerationClaim.objects.select_for_update().get(key=key)
        now = timezone.now()
        if row.token is not None and row.leased_until and row.leased_until > now:
            raise GenerationBusy(f"{key} is being generated by another run")
        row.token = uuid.uuid4()
        row.leased_until = now + _lease()
        row.attempts += 1
        if fresh:
            row.steps = {}
        row.save()
    claim = Claim(row)
    try:
        yield claim
    except Exception as exc:
        claim.fail(exc)
        raise


def ask_json(
    character: Character,
    claim: Claim,
    step: str,
    messages: list[ChatMessage],
    schema: type[Schema],
    *,
    model: str | None = None,
    last: bool = False,
) -> tuple[Schema, str]:
    """Ask for a JSON answer matching `schema`; returns it with the raw reply.

    An answer already paid for with the same messages is reused. An invalid one is shown back
    to the LLM with what was wrong, within LIFE_LLM_ATTEMPTS attempts in all. A valid one is
    kept on the claim, unless it is the `last` step, whose row is saved right after anyway.
    """
    if provider_for(character).name == EchoProvider.name:
        # The echo provider only repeats the prompt: asking it would fail every attempt.
        raise GenerationFailed(f"{step}: {character.slug} has no LLM configured (echo provider)")
    model = model or character.llm_model
    conversation = list(messages)
    reply = claim.paid(step, messages, model)
    error = ""
    for _ in range(settings.LIFE_LLM_ATTEMPTS):
        if reply is None:
            try:
                reply = _run(_complete(character, conversation, model))
            except LLMError as exc:
                raise GenerationFailed(f"{step}: {exc}") from exc
        try:
            value = schema.model_validate_json(_strip_fences(reply))
        except ValidationError as exc:
            error = "; ".join(
                f"{'.'.join(map(str, e['loc'])) or 'reply'}: {e['msg']}" for e in exc.errors()
            )[:1000]
            conversation += [
                ChatMessage(role="assistant", content=reply),
                ChatMessage(role="user", content=prompts.INVALID_REPLY.format(error=error)),
            ]
            reply = None
            continue
        if not last:
            claim.keep(step, messages, model, reply)
        return value, reply
    raise GenerationFailed(
        f"{step}: no valid answer in {settings.LIFE_LLM_ATTEMPTS} attempts ({error})"
    )


# --- Generators -------------------------------------------------------------------------------


def _language(character: Character) -> str:
    return character.language or "the language of the character description"


def _system(template: str, character: Character) -> ChatMessage:
    return ChatMessage(role="system", content=template.format(language=_language(character)))


def _user(content: str) -> ChatMessage:
    return ChatMessage(role="user", content=content)


def _key(character: Character, kind: str, day: date | None = None) -> str:
    return f"character:{character.pk}:{kind}" + (f":{day.isoformat()}" if day else "")


def generate_weekly_schedule(
    character: Character, *, overwrite: bool = False
) -> tuple[WeeklySchedule, bool]:
    """The character's usual week; returns (row, whether it was generated now)."""
    existing = WeeklySchedule.objects.filter(character=character).first()
    if existing and not overwrite:
        return existing, False
    with claimed(_key(character, "weekly"), character, fresh=overwrite) as claim:
        if not overwrite and (done := WeeklySchedule.objects.filter(character=character).first()):
            claim.release()
            return done, False
        messages = [
            _system(prompts.WEEKLY_SYSTEM, character),
            _user(prompts.WEEKLY_USER.format(persona=character.persona)),
        ]
        table, _ = ask_json(character, claim, "weekly", messages, prompts.WeekTable, last=True)
        with transaction.atomic():
            row, _ = WeeklySchedule.objects.update_or_create(
                character=character,
                defaults={"content": table.markdown(), "origin": Origin.GENERATED},
            )
            claim.release()
    return row, True


def generate_daily_schedule(
    character: Character, day: date, *, overwrite: bool = False
) -> tuple[DailySchedule, bool]:
    """The schedule of `day` (the character's local date); returns (row, generated now)."""
    rows = DailySchedule.objects.filter(character=character, schedule_date=day)
    if (existing := rows.first()) and not overwrite:
        return existing, False
    weekly = WeeklySchedule.objects.filter(character=character).first()
    if weekly is None:
        raise WeeklyScheduleMissing(f"{character.slug} has no weekly schedule")
    with claimed(_key(character, "schedule", day), character, fresh=overwrite) as claim:
        if not overwrite and (done := rows.first()):
            claim.release()
            return done, False
        previous = day - timedelta(days=1)
        plan_input = prompts.DAILY_PLAN.format(
            date=prompts.date_label(day),
            persona=character.persona,
            weekly=weekly.content,
            previous_schedule=_content(DailySchedule, character, schedule_date=previous),
            previous_diary=_content(Diary, character, diary_date=previous),
        )
        plan_messages = [_system(prompts.DAILY_SYSTEM, character), _user(plan_input)]
        plan, plan_reply = ask_json(character, claim, "plan", plan_messages, prompts.DayPlan)
        table_messages = [
            *plan_messages,
            ChatMessage(role="assistant", content=plan_reply),
            _user(prompts.DAILY_TABLE.format(date=prompts.date_label(day))),
        ]
        table, _ = ask_json(character, claim, "table", table_messages, prompts.DayTable, last=True)
        with transaction.atomic():
            row, _ = DailySchedule.objects.update_or_create(
                character=character,
                schedule_date=day,
                defaults={
                    "content": table.markdown(),
                    "content_context": {"source": plan_input, "plan": plan.plan},
                    "origin": Origin.GENERATED,
                },
            )
            claim.release()
    return row, True


def _content(model: type[DailySchedule] | type[Diary], character: Character, **date: date) -> str:
    content = model.objects.filter(character=character, **date).values_list("content", flat=True)
    return content.first() or prompts.NO_RECORD


def local_day_bounds(character: Character, day: date) -> tuple[datetime, datetime]:
    """The instants where `day` begins and ends on the character's clock (DST-aware)."""
    zone = character.zone
    return (
        datetime.combine(day, datetime.min.time(), tzinfo=zone),
        datetime.combine(day + timedelta(days=1), datetime.min.time(), tzinfo=zone),
    )


def conversations_of(character: Character, day: date) -> str:
    """What was said with the character on its local `day`, most recent part first to go."""
    start, end = local_day_bounds(character, day)
    lines = [
        f"{'User' if role == Message.Role.USER else character.name}: {' '.join(content.split())}"
        for role, content in Message.objects.filter(
            context__character=character,
            created_at__gte=start,
            created_at__lt=end,
            role__in=(Message.Role.USER, Message.Role.ASSISTANT),
        )
        .order_by("created_at", "position")
        .values_list("role", "content")
    ]
    text = "\n".join(lines)
    if len(text) > CONVERSATION_CHARS:
        text = "…" + text[-CONVERSATION_CHARS:]
    return text or "(no conversations)"


def news_for(character: Character, day: date) -> tuple[NewsDigest | None, str]:
    """The day's news digest for the character's country and language, and a NewsStatus.

    Fetched once per (country, language, date) and shared by every character. No search
    model configured, or no country: no news, said so. A failed fetch only costs the news.
    """
    if not settings.LIFE_NEWS_MODEL:
        return None, NewsStatus.NOT_CONFIGURED
    if not character.news_country:
        return None, NewsStatus.NO_COUNTRY
    country, language = character.news_country, (character.language or "en").split("-")[0]
    digests = NewsDigest.objects.filter(country=country, language=language, news_date=day)
    if existing := digests.first():
        return existing, NewsStatus.USED
    try:
        with claimed(f"news:{country}:{language}:{day.isoformat()}", None) as claim:
            if done := digests.first():
                claim.release()
                return done, NewsStatus.USED
            messages = [
                ChatMessage(role="system", content=prompts.NEWS_SYSTEM.format(language=language)),
                _user(prompts.NEWS_USER.format(date=day.isoformat(), country=country)),
            ]
            model = settings.LIFE_NEWS_MODEL
            news, _ = ask_json(
                character, claim, "news", messages, prompts.NewsItems, model=model, last=True
            )
            with transaction.atomic():
                digest = NewsDigest.objects.create(
                    country=country, language=language, news_date=day, items=news.items, model=model
                )
                claim.release()
            return digest, NewsStatus.USED
    except GenerationFailed as exc:
        logger.warning("news %s/%s %s unavailable: %s", country, language, day, exc)
        return None, NewsStatus.FAILED


def generate_diary(
    character: Character, day: date, *, overwrite: bool = False
) -> tuple[Diary, bool]:
    """The diary of `day`, written from that day's schedule; returns (row, generated now)."""
    rows = Diary.objects.filter(character=character, diary_date=day)
    if (existing := rows.first()) and not overwrite:
        return existing, False
    schedule = DailySchedule.objects.filter(character=character, schedule_date=day).first()
    if schedule is None:
        raise DailyScheduleMissing(f"{character.slug} has no schedule for {day}")
    with claimed(_key(character, "diary", day), character, fresh=overwrite) as claim:
        if not overwrite and (done := rows.first()):
            claim.release()
            return done, False
        digest, news_status = news_for(character, day)
        topics_input = prompts.DIARY_TOPICS.format(
            persona=character.persona,
            date=prompts.date_label(day),
            schedule=schedule.content,
            conversations=conversations_of(character, day),
            news=prompts.DIARY_NEWS.format(news=digest.content) if digest else "",
        )
        topic_messages = [_system(prompts.DIARY_SYSTEM, character), _user(topics_input)]
        topics, topics_reply = ask_json(
            character, claim, "topics", topic_messages, prompts.DiaryTopics
        )
        write_messages = [
            *topic_messages,
            ChatMessage(role="assistant", content=topics_reply),
            _user(
                prompts.DIARY_WRITE.format(
                    date=prompts.date_label(day),
                    length=settings.LIFE_DIARY_LENGTH,
                    previous_diary=_content(Diary, character, diary_date=day - timedelta(days=1)),
                )
            ),
        ]
        diary, _ = ask_json(character, claim, "diary", write_messages, prompts.DiaryText, last=True)
        with transaction.atomic():
            row, _ = Diary.objects.update_or_create(
                character=character,
                diary_date=day,
                defaults={
                    "content": diary.diary.strip(),
                    "topics": topics.topics,
                    "news_status": news_status,
                    "news_digest": digest,
                    "content_context": {"source": topics_input},
                    "origin": Origin.GENERATED,
                },
            )
            claim.release()
    return row, True


# --- Days, ranges and the beat tick -------------------------------------------------------------

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
            blocking = _key(character, SCHEDULE if missing_schedule else DIARY, day)
            if blocking in known.backing_off:
                continue
            due.append(DueDay(character, day, diary_due))
    return due
