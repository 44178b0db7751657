"""Operators and life: inlines, enqueued generation, prompt preview, manual edits, the signal."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from datetime import date
from typing import Any

import pytest
from django.db import transaction
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from characters.life import generators
from characters.models import Character, DailySchedule, Diary, GenerationJob, Origin
from characters.signals import diary_saved
from conversations.models import EndUser
from tests.characters.conftest import answers
from tests.fakes.life_replies import life_reply
from tests.fakes.openai_server import FakeOpenAI

pytestmark = pytest.mark.django_db

CHANGELIST = "admin:characters_character_changelist"


def today_of(character: Character) -> date:
    return character.local_now(timezone.now()).date()


@pytest.mark.parametrize(
    "model",
    ["weeklyschedule", "dailyschedule", "diary", "newsdigest", "generationjob", "generationclaim"],
)
def test_staff_can_list_every_life_model(
    admin_client: Client, living: Character, model: str
) -> None:
    url = f"/admin/characters/{model}/"

    assert admin_client.get(url).status_code == 200
    assert admin_client.get(url, {"q": "hana"}).status_code == 200


def test_the_character_page_shows_its_week_recent_days_and_tools(
    admin_client: Client, living: Character
) -> None:
    DailySchedule.objects.create(character=living, schedule_date=today_of(living), content="| x |")

    page = admin_client.get(reverse("admin:characters_character_change", args=[living.pk]))

    html = page.content.decode()
    assert page.status_code == 200
    assert "| week of hana |" in html and "| x |" in html
    assert "daily schedules (last 14 days)" in html.lower()
    assert reverse("admin:characters_character_preview_prompt", args=[living.pk]) in html


def test_write_todays_diary_is_enqueued_and_its_status_visible(
    admin_client: Client,
    living: Character,
    fake_llm: FakeOpenAI,
    eager_celery: None,
    django_capture_on_commit_callbacks: Callable[..., Any],
) -> None:
    fake_llm.script(answers(life_reply(), 4))

    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(
            reverse(CHANGELIST), {"action": "write_todays_diary", "_selected_action": [living.pk]}
        )

    assert response.status_code == 302
    job = GenerationJob.objects.get()
    assert (job.kind, job.date_from, job.status) == ("diary", today_of(living), "succeeded")
    assert Diary.objects.get().diary_date == today_of(living)
    jobs_page = admin_client.get(reverse("admin:characters_generationjob_changelist"))
    assert "succeeded" in jobs_page.content.decode()


def test_backfill_asks_for_a_valid_range_then_enqueues_one_job(
    admin_client: Client,
    living: Character,
    fake_llm: FakeOpenAI,
    eager_celery: None,
    django_capture_on_commit_callbacks: Callable[..., Any],
) -> None:
    action = {"action": "backfill_range", "_selected_action": [living.pk]}

    form = admin_client.post(reverse(CHANGELIST), action)
    backwards = admin_client.post(
        reverse(CHANGELIST), {**action, "apply": "1", "start": "2026-01-05", "end": "2026-01-01"}
    )
    assert form.status_code == backwards.status_code == 200
    future = admin_client.post(
        reverse(CHANGELIST), {**action, "apply": "1", "start": "2998-12-31", "end": "2999-01-01"}
    )
    assert form.status_code == backwards.status_code == future.status_code == 200
    assert "The range starts after it ends." in backwards.content.decode()
    assert "After the character&#x27;s today: Hana (today " in future.content.decode()
    assert not GenerationJob.objects.exists()

    fake_llm.script(answers(life_reply(), 8))
    with django_capture_on_commit_callbacks(execute=True):
        admin_client.post(
            reverse(CHANGELIST),
            {**action, "apply": "1", "start": "2026-01-01", "end": "2026-01-02"},
        )

    job = GenerationJob.objects.get()
    assert (job.kind, job.status, len(job.result)) == ("range", "succeeded", 2)
    assert Diary.objects.count() == 2


def test_the_prompt_preview_shows_what_a_user_would_get(
    admin_client: Client, living: Character
) -> None:
    DailySchedule.objects.create(
        character=living, schedule_date=date(2026, 1, 17), content="| bake bread |"
    )
    user = EndUser.objects.create(display_name="Taro")
    url = reverse("admin:characters_character_preview_prompt", args=[living.pk])

    page = admin_client.get(url, {"user": str(user.pk), "at": "2026-01-16 23:30"})

    html = page.content.decode()
    assert "| bake bread |" in html and "The user&#x27;s name is Taro." in html
    assert "2026-01-17 (Saturday) 08:30 (Asia/Tokyo)" in html


def test_an_operator_edit_is_marked_manual_and_announced(
    admin_client: Client,
    living: Character,
    fake_llm: FakeOpenAI,
    django_capture_on_commit_callbacks: Callable[..., Any],
) -> None:
    DailySchedule.objects.create(character=living, schedule_date=date(2026, 1, 16), content="s")
    fake_llm.script(answers(life_reply(), 2))
    received: list[dict[str, Any]] = []

    def receiver(sender: type, **payload: Any) -> None:
        received.append(payload)

    diary_saved.connect(receiver)
    try:
        with django_capture_on_commit_callbacks(execute=True):
            diary, _ = generators.generate_diary(living, date(2026, 1, 16))
        assert received == [
            {
                "signal": diary_saved,
                "diary_id": diary.pk,
                "character_id": living.pk,
                "character_slug": "hana",
                "diary_date": "2026-01-16",
                "content": diary.content,
                "topics": ["m topic"],
                "origin": "generated",
                "created": True,
            }
        ]
        with django_capture_on_commit_callbacks(execute=True):
            admin_client.post(
                reverse("admin:characters_diary_change", args=[diary.pk]),
                {"character": living.pk, "diary_date": "2026-01-16", "content": "Edited."},
            )
    finally:
        diary_saved.disconnect(receiver)

    diary.refresh_from_db()
    assert (diary.content, diary.origin) == ("Edited.", Origin.MANUAL)
    assert received[-1]["content"] == "Edited." and received[-1]["origin"] == "manual"
    assert received[-1]["created"] is False


def test_a_rolled_back_diary_is_never_announced(
    living: Character, django_capture_on_commit_callbacks: Callable[..., Any]
) -> None:
    received: list[dict[str, Any]] = []

    def receiver(sender: type, **payload: Any) -> None:
        received.append(payload)

    diary_saved.connect(receiver)
    try:
        with (
            django_capture_on_commit_callbacks(execute=True),
            contextlib.suppress(RuntimeError),
            transaction.atomic(),
        ):
            Diary.objects.create(character=living, diary_date=date(2026, 1, 16), content="x")
            raise RuntimeError("rolled back")
    finally:
        diary_saved.disconnect(receiver)

    assert received == [] and not Diary.objects.exists()


def test_generation_jobs_show_progress_times_on_the_characters_clock_and_errors(
    admin_client: Client, living: Character
) -> None:
    started = timezone.now().replace(year=2026, month=3, day=1, hour=15, minute=30, second=0)
    GenerationJob.objects.create(
        tenant=living.tenant,
        character=living,
        kind=GenerationJob.Kind.RANGE,
        date_from=date(2026, 2, 20),
        date_to=date(2026, 2, 23),
        status=GenerationJob.Status.FAILED,
        result=[{"date": "2026-02-20"}, {"date": "2026-02-21"}, {"date": "2026-02-22"}],
        error="The LLM answered 500 three times. " + "x" * 500,
        started_at=started,
        finished_at=started.replace(minute=45),
    )

    page = admin_client.get(reverse("admin:characters_generationjob_changelist")).content.decode()

    assert "3 / 4 days (75 %)" in page
    # 15:30 UTC is half past midnight the next day in Tokyo.
    assert '<span title="Asia/Tokyo">2026-03-02 00:30 JST</span>' in page
    assert '<span title="Asia/Tokyo">2026-03-02 00:45 JST</span>' in page
    assert "The LLM answered 500 three times." in page and "x" * 200 not in page
