"""The beat tick's jobs on a real Celery worker, through the configured broker (Redis in CI)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from characters.models import Character, DailySchedule, Diary, GenerationJob
from characters.tasks import enqueue_due, enqueue_job
from tests.characters.conftest import answers, make_character
from tests.fakes.life_replies import life_reply
from tests.fakes.openai_server import FakeOpenAI
from tests.waiting import wait_until

pytestmark = pytest.mark.django_db(transaction=True)

DAY = date(2026, 1, 16)
# How long to wait for the worker before calling the test failed (not a speed limit).


def wait_for_jobs(count: int) -> list[GenerationJob]:
    def finished() -> bool:
        jobs = GenerationJob.objects.all()
        return len(jobs) == count and all(j.status not in GenerationJob.UNFINISHED for j in jobs)

    wait_until(finished, f"{count} generation jobs to finish")
    return list(GenerationJob.objects.order_by("date_from"))


def test_a_worker_runs_the_jobs_a_tick_enqueues(fake_llm: FakeOpenAI, worker: None) -> None:
    character = make_character(fake_llm, "hana")
    Character.objects.filter(pk=character.pk).update(
        created_at=datetime(2026, 1, 15, tzinfo=ZoneInfo("Asia/Tokyo"))
    )
    fake_llm.script(answers(life_reply(), repeat=6))

    enqueue_due(datetime(2026, 1, 16, 6, 5, tzinfo=ZoneInfo("Asia/Tokyo")))
    jobs = wait_for_jobs(2)

    assert [(j.kind, j.date_from, j.status) for j in jobs] == [
        ("day", date(2026, 1, 15), "succeeded"),
        ("schedule", DAY, "succeeded"),
    ]
    assert DailySchedule.objects.count() == 2 and Diary.objects.count() == 1
    assert len(fake_llm.requests) == 6


def test_the_same_day_enqueued_twice_is_paid_once(
    fake_llm: FakeOpenAI, worker: None, settings: Any
) -> None:
    settings.LIFE_BUSY_RETRY_SECONDS = 0.2  # the job that found the day leased looks again soon
    character = make_character(fake_llm, "hana")
    fake_llm.script(answers(life_reply(), repeat=4))

    for _ in range(2):
        enqueue_job(character, GenerationJob.Kind.DAY, DAY)
    jobs = wait_for_jobs(2)

    assert {j.status for j in jobs} == {"succeeded"}
    assert DailySchedule.objects.count() == Diary.objects.count() == 1
    assert len(fake_llm.requests) == 4
