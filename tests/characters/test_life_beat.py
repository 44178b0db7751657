"""The beat tick and its jobs: each character's own clock, catch-up, retries, no double pay."""

from __future__ import annotations

import threading
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from django.db import connection
from django.test import TestCase
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from characters.life import days
from characters.models import Character, DailySchedule, Diary, GenerationClaim, GenerationJob
from characters.tasks import enqueue_due, enqueue_job, run_generation_job
from tests.beat_entries import run_data_steps_again
from tests.characters.conftest import GARBLED, answers, make_character
from tests.fakes.life_replies import life_reply
from tests.fakes.openai_server import FakeOpenAI, ScriptedReply
from tests.waiting import wait_until

DAY = date(2026, 1, 16)


def local(zone: str, day: date, hour: int, minute: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=ZoneInfo(zone))


def born_on(character: Character, day: date) -> None:
    """The character came to life at local midnight of `day`."""
    Character.objects.filter(pk=character.pk).update(created_at=local(character.timezone, day, 0))
    character.refresh_from_db()


def tick(now: datetime) -> list[GenerationJob]:
    """A beat tick, with the jobs it enqueues run at once (eager Celery) as it commits."""
    with TestCase.captureOnCommitCallbacks(execute=True):
        return enqueue_due(now)


def enqueue(character: Character, kind: str, day: date) -> GenerationJob:
    with TestCase.captureOnCommitCallbacks(execute=True):
        return enqueue_job(character, kind, day)


def schedules() -> set[tuple[str, date]]:
    return set(DailySchedule.objects.values_list("character__slug", "schedule_date"))


@pytest.mark.django_db
def test_the_beat_entry_exists_and_is_editable_in_the_admin() -> None:
    run_data_steps_again("characters.migrations.0010_life_tick_beat_entry")
    entry = PeriodicTask.objects.get(task="characters.tasks.life_tick")

    assert entry.enabled and (entry.interval.every, entry.interval.period) == (5, "minutes")


@pytest.mark.django_db
def test_a_tick_at_0605_local_writes_one_schedule_per_character_in_three_timezones(
    fake_llm: FakeOpenAI, eager_celery: None
) -> None:
    zones = {"tokyo": "Asia/Tokyo", "london": "Europe/London", "newyork": "America/New_York"}
    for slug, zone in zones.items():
        born_on(make_character(fake_llm, slug, zone), DAY)
    fake_llm.script(answers(life_reply(), repeat=100))
    created: set[tuple[str, date]] = set()

    # In UTC order: 06:05 in Tokyo, then London, then New York, each on the 16th.
    for slug, zone in zones.items():
        at = local(zone, DAY, 6, 5)
        assert not tick(local(zone, DAY, 5, 55)), f"nothing is due before 06:00 ({slug})"
        before = len(fake_llm.requests)

        jobs = tick(at)

        created.add((slug, DAY))
        assert [(job.character.slug, job.date_from) for job in jobs] == [(slug, DAY)]
        assert schedules() == created
        assert len(fake_llm.requests) - before == 2  # the day plan and the table
        assert not tick(at) and schedules() == created
        assert len(fake_llm.requests) - before == 2

    assert set(GenerationJob.objects.values_list("status", flat=True)) == {"succeeded"}
    assert not Diary.objects.exists()


@pytest.mark.django_db
def test_hours_are_per_character(fake_llm: FakeOpenAI, eager_celery: None) -> None:
    early = make_character(fake_llm, "early", "Asia/Tokyo", schedule_hour=4, diary_hour=20)
    born_on(early, DAY)
    fake_llm.script(answers(life_reply(), repeat=100))

    tick(local("Asia/Tokyo", DAY, 4, 1))
    assert schedules() == {("early", DAY)} and not Diary.objects.exists()
    tick(local("Asia/Tokyo", DAY, 20, 1))

    assert list(Diary.objects.values_list("diary_date", flat=True)) == [DAY]


@pytest.mark.django_db
def test_a_stopped_beat_catches_up_within_the_window_and_never_before_birth(
    fake_llm: FakeOpenAI, eager_celery: None, settings: Any
) -> None:
    settings.LIFE_BACKFILL_DAYS = 3
    old = make_character(fake_llm, "old", "Asia/Tokyo")  # created long ago
    young = make_character(fake_llm, "young", "Asia/Tokyo")
    born_on(young, DAY - timedelta(days=1))
    fake_llm.script(answers(life_reply(), repeat=200))

    jobs = tick(local("Asia/Tokyo", DAY, 7))

    assert sorted((j.character.slug, j.date_from, j.kind) for j in jobs) == [
        ("old", DAY - timedelta(days=3), "day"),
        ("old", DAY - timedelta(days=2), "day"),
        ("old", DAY - timedelta(days=1), "day"),
        ("old", DAY, "schedule"),
        ("young", DAY - timedelta(days=1), "day"),
        ("young", DAY, "schedule"),
    ]
    assert sorted(Diary.objects.values_list("character__slug", "diary_date")) == [
        ("old", DAY - timedelta(days=3)),
        ("old", DAY - timedelta(days=2)),
        ("old", DAY - timedelta(days=1)),
        ("young", DAY - timedelta(days=1)),
    ]
    assert len(schedules()) == 6
    assert old.pk and not tick(local("Asia/Tokyo", DAY, 7, 5))


@pytest.mark.django_db
def test_a_failed_day_backs_off_then_is_retried_and_never_skipped(
    fake_llm: FakeOpenAI, eager_celery: None
) -> None:
    born_on(make_character(fake_llm, "hana"), DAY)
    fake_llm.script(answers(GARBLED, repeat=3))
    at = local("Asia/Tokyo", DAY, 6, 5)

    (job,) = tick(at)

    job.refresh_from_db()
    assert job.status == "failed" and "plan: no valid answer" in job.error
    assert not tick(at), "a failed day waits for its back-off"
    GenerationClaim.objects.update(retry_after=timezone.now() - timedelta(seconds=1))
    fake_llm.script(answers(life_reply(), repeat=2))
    assert len(tick(at)) == 1
    assert schedules() == {("hana", DAY)}


@pytest.mark.django_db
def test_a_job_delivered_twice_does_its_work_once(
    fake_llm: FakeOpenAI, living: Character, eager_celery: None
) -> None:
    fake_llm.script(answers(life_reply(), repeat=4))
    job = enqueue(living, GenerationJob.Kind.DAY, DAY)
    paid = len(fake_llm.requests)

    run_generation_job.apply(args=[job.pk])
    # Even if the first delivery's worker died before marking the job, only missing work runs.
    GenerationJob.objects.filter(pk=job.pk).update(status=GenerationJob.Status.RUNNING)
    run_generation_job.apply(args=[job.pk])

    assert paid == 4 and len(fake_llm.requests) == 4
    job.refresh_from_db()
    assert job.status == "succeeded"
    assert job.result == [
        {
            "date": "2026-01-16",
            "schedule_generated": True,
            "diary_generated": True,
            "error": "",
            "code": "",
        }
    ]
    assert DailySchedule.objects.count() == Diary.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_two_concurrent_runs_for_the_same_day_write_one_row_and_pay_once(
    fake_llm: FakeOpenAI, living: Character
) -> None:
    # The first run's answers wait until the second run, started while the first holds the
    # lease and is asking the LLM, has come back.
    answered = threading.Event()
    fake_llm.script(ScriptedReply(chunks=[life_reply()], repeat=4, gate=answered))
    results: list[days.DayResult] = []

    def run() -> None:
        try:
            results.append(days.generate_day(Character.objects.get(pk=living.pk), DAY))
        finally:
            connection.close()

    first = threading.Thread(target=run)
    first.start()
    try:
        wait_until(lambda: fake_llm.requests, "the first run to ask the LLM")
        second = days.generate_day(Character.objects.get(pk=living.pk), DAY)
    finally:
        answered.set()
        first.join()

    assert DailySchedule.objects.count() == Diary.objects.count() == 1
    assert len(fake_llm.requests) == 4  # one day plan, one table, one topic list, one diary
    assert (second.code, second.schedule_generated) == ("generation_in_progress", False)
    assert [(r.code, r.schedule_generated) for r in results] == [("", True)]
    assert not GenerationClaim.objects.exists()


@pytest.mark.django_db
def test_a_busy_job_looks_again_later(
    fake_llm: FakeOpenAI, living: Character, eager_celery: None, settings: Any
) -> None:
    settings.LIFE_BUSY_RETRIES = 2
    GenerationClaim.objects.create(
        key=f"character:{living.pk}:schedule:{DAY}",
        character=living,
        token="00000000-0000-4000-8000-000000000000",
        leased_until=timezone.now() + timedelta(minutes=5),
    )

    job = enqueue(living, GenerationJob.Kind.SCHEDULE, DAY)

    job.refresh_from_db()
    assert job.status == "failed" and "being generated by another run" in job.error
    assert fake_llm.requests == []
