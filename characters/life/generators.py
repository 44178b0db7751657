"""The generators: a character's usual week, the schedule of a day and the diary of a day.

Dates are the character's own (its timezone); nothing here reads the clock to decide a date.
"""

from __future__ import annotations

import logging
from datetime import date, datetime, timedelta

from django.conf import settings
from django.db import transaction

from ..models import Character, DailySchedule, Diary, NewsDigest, NewsStatus, Origin, WeeklySchedule
from . import prompts
from .bridge import Prompt, ask_json, connected
from .errors import DailyScheduleMissing, GenerationFailed, WeeklyScheduleMissing
from .lease import claim_key, claimed

logger = logging.getLogger("avatarsite.life")

# The diary sees at most this much of the day's conversations (the most recent part).
CONVERSATION_CHARS = 6000


def _language(character: Character) -> str:
    return character.language or "the language of the character description"


def _system(template: str, character: Character) -> Prompt:
    return Prompt("system", template.format(language=_language(character)))


def _user(content: str) -> Prompt:
    return Prompt("user", content)


def generate_weekly_schedule(
    character: Character, *, overwrite: bool = False
) -> tuple[WeeklySchedule, bool]:
    """The character's usual week; returns (row, whether it was generated now)."""
    existing = WeeklySchedule.objects.filter(character=character).first()
    if existing and not overwrite:
        return existing, False
    with claimed(claim_key(character, "weekly"), character, fresh=overwrite) as claim:
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
    with claimed(claim_key(character, "schedule", day), character, fresh=overwrite) as claim:
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
            Prompt("assistant", plan_reply),
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
        f"{'User' if by_user else character.name}: {' '.join(text.split())}"
        for by_user, text in connected().said(character, start, end)
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
                Prompt("system", prompts.NEWS_SYSTEM.format(language=language)),
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
    with claimed(claim_key(character, "diary", day), character, fresh=overwrite) as claim:
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
            Prompt("assistant", topics_reply),
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
