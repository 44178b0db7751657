"""Generating a character's life: what the LLM is asked, what is saved, and what is never paid."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from django.test import override_settings

from characters.life import days, errors, generators
from characters.life.prompts import NO_RECORD
from characters.models import (
    Character,
    DailySchedule,
    Diary,
    GenerationClaim,
    NewsDigest,
    NewsStatus,
    Origin,
    WeeklySchedule,
)
from conversations.models import Context, EndUser, Message
from conversations.tools import registry
from tests.characters.conftest import GARBLED, answers, make_character, sent_text
from tests.fakes.life_replies import life_reply
from tests.fakes.openai_server import FakeOpenAI, ScriptedReply

pytestmark = pytest.mark.django_db

DAY = date(2026, 1, 16)


def test_it_initializes_a_character_with_its_week_and_today_on_its_own_clock(
    fake_llm: FakeOpenAI, living: Character
) -> None:
    WeeklySchedule.objects.all().delete()
    fake_llm.script(answers(life_reply("init"), repeat=3))
    # 23:30 UTC on the 15th is 08:30 on the 16th in Tokyo.
    today = living.local_now(datetime(2026, 1, 15, 23, 30, tzinfo=UTC)).date()
    # What the admin's "Generate today's schedule" does for a new character.
    result = days.generate_day(living, today, diary=False)

    assert (result.date, result.schedule_generated, result.error) == (DAY, True, "")
    weekly = WeeklySchedule.objects.get(character=living)
    assert weekly.origin == Origin.GENERATED and "| 0:00-1:00 | init monday 0 |" in weekly.content
    schedule = DailySchedule.objects.get(character=living)
    assert schedule.schedule_date == DAY
    assert schedule.content.count("\n") == 25  # header, rule, 24 slots
    assert schedule.content_context["plan"] == "init plan"
    weekly_call, plan_call, table_call = fake_llm.requests
    assert weekly_call["messages"][1]["content"].endswith(living.persona)
    assert "2026-01-16 (Friday)" in plan_call["messages"][1]["content"]
    assert table_call["messages"][:2] == plan_call["messages"]
    assert table_call["messages"][2] == {"role": "assistant", "content": life_reply("init")}


def test_it_pays_nothing_for_a_row_that_exists_or_a_diary_without_its_schedule(
    fake_llm: FakeOpenAI, living: Character
) -> None:
    DailySchedule.objects.create(character=living, schedule_date=DAY, content="by hand")

    row, generated = generators.generate_daily_schedule(living, DAY)
    with pytest.raises(errors.DailyScheduleMissing) as missing:
        generators.generate_diary(living, DAY + timedelta(days=1))

    assert (row.content, generated) == ("by hand", False)
    assert missing.value.code == "daily_schedule_missing"
    assert fake_llm.requests == []
    assert not GenerationClaim.objects.exists()


def test_it_refuses_a_schedule_without_a_weekly_plan(
    fake_llm: FakeOpenAI, living: Character
) -> None:
    WeeklySchedule.objects.all().delete()

    with pytest.raises(errors.WeeklyScheduleMissing):
        generators.generate_daily_schedule(living, DAY)

    assert fake_llm.requests == [] and not DailySchedule.objects.exists()


def test_it_builds_the_next_day_on_the_previous_schedule_and_diary(
    fake_llm: FakeOpenAI, living: Character
) -> None:
    fake_llm.script(answers(life_reply(), repeat=6))
    generators.generate_daily_schedule(living, DAY)
    next_day = DAY + timedelta(days=1)
    DailySchedule.objects.create(character=living, schedule_date=next_day, content="x")
    Diary.objects.create(character=living, diary_date=DAY, content="I baked melon bread.")
    generators.generate_daily_schedule(living, DAY + timedelta(days=2))  # the 17th has no diary

    first_plan = fake_llm.requests[0]["messages"][1]["content"]
    third_plan = fake_llm.requests[2]["messages"][1]["content"]
    assert first_plan.count(NO_RECORD) == 2
    assert "| week of hana |" in first_plan
    generators.generate_daily_schedule(living, DAY + timedelta(days=1), overwrite=True)
    second_plan = fake_llm.requests[4]["messages"][1]["content"]
    assert "I baked melon bread." in second_plan and "activity 23" in second_plan
    assert third_plan.count(NO_RECORD) == 1


def test_it_overwrites_only_when_asked(fake_llm: FakeOpenAI, living: Character) -> None:
    DailySchedule.objects.create(character=living, schedule_date=DAY, content="by hand")
    fake_llm.script(answers(life_reply("new"), repeat=2))

    row, generated = generators.generate_daily_schedule(living, DAY, overwrite=True)

    assert generated and row.origin == Origin.GENERATED and "new activity 0" in row.content
    assert DailySchedule.objects.get().content == row.content


def test_it_asks_again_with_the_validation_error_and_saves_only_valid_answers(
    fake_llm: FakeOpenAI, living: Character
) -> None:
    fake_llm.script(answers(life_reply()), answers('{"slots": []}'), answers(life_reply()))

    row, _ = generators.generate_daily_schedule(living, DAY)

    assert len(fake_llm.requests) == 3
    retry = fake_llm.requests[2]["messages"]
    assert retry[-2] == {"role": "assistant", "content": '{"slots": []}'}
    assert "expected exactly 24 one-hour slots, got 0" in retry[-1]["content"]
    assert row.content.count("| ") >= 24
    assert not GenerationClaim.objects.exists()


def test_it_gives_up_after_the_allowed_attempts_and_keeps_what_was_paid_for(
    fake_llm: FakeOpenAI, living: Character
) -> None:
    fake_llm.script(answers(life_reply("paid")), answers(GARBLED, repeat=3))

    with pytest.raises(errors.GenerationFailed, match="table: no valid answer in 3 attempts"):
        generators.generate_daily_schedule(living, DAY)

    assert not DailySchedule.objects.exists()
    claim = GenerationClaim.objects.get()
    assert claim.token is None and claim.retry_after is not None
    assert "GenerationFailed" in claim.last_error
    # The retry pays only for the step that failed: the day plan was kept.
    fake_llm.reset()
    fake_llm.script(answers(life_reply("paid")))
    row, generated = generators.generate_daily_schedule(living, DAY)
    assert generated and row.content_context["plan"] == "paid plan"
    assert len(fake_llm.requests) == 1
    assert not GenerationClaim.objects.exists()


def test_it_reports_a_failing_llm_without_writing(fake_llm: FakeOpenAI, living: Character) -> None:
    fake_llm.script(ScriptedReply(status=500, repeat=10))

    with pytest.raises(errors.GenerationFailed, match="plan: LLM provider returned HTTP 500"):
        generators.generate_daily_schedule(living, DAY)

    assert not DailySchedule.objects.exists()


def test_it_never_pays_while_another_run_holds_the_lease(
    fake_llm: FakeOpenAI, living: Character
) -> None:
    from django.utils import timezone

    GenerationClaim.objects.create(
        key=f"character:{living.pk}:schedule:{DAY}",
        character=living,
        token="00000000-0000-4000-8000-000000000000",
        leased_until=timezone.now() + timedelta(minutes=5),
    )

    with pytest.raises(errors.GenerationBusy):
        generators.generate_daily_schedule(living, DAY)

    assert fake_llm.requests == []
    # Its holder died (a killed worker): once the lease expires, the next run takes over.
    GenerationClaim.objects.update(leased_until=timezone.now() - timedelta(seconds=1))
    fake_llm.script(answers(life_reply(), repeat=2))
    assert generators.generate_daily_schedule(living, DAY)[1] is True


def test_it_writes_the_diary_from_the_days_schedule_and_conversations_without_news(
    fake_llm: FakeOpenAI, living: Character
) -> None:
    DailySchedule.objects.create(character=living, schedule_date=DAY, content="| 9:00 | bakery |")
    Diary.objects.create(character=living, diary_date=DAY - timedelta(days=1), content="Rainy.")
    user = EndUser.objects.create(display_name="Ada")
    context = Context.objects.create(character=living, end_user=user, channel="http")
    # 23:50 JST on the 16th is inside the day; 00:10 JST on the 17th is not.
    for position, (role, text, at) in enumerate(
        [
            ("user", "Do you like the sea?", datetime(2026, 1, 16, 14, 50, tzinfo=UTC)),
            ("assistant", "I love it!", datetime(2026, 1, 16, 14, 51, tzinfo=UTC)),
            ("user", "Tomorrow's question", datetime(2026, 1, 16, 15, 10, tzinfo=UTC)),
        ]
    ):
        saved = Message.objects.create(context=context, position=position, role=role, content=text)
        Message.objects.filter(pk=saved.pk).update(created_at=at)
    fake_llm.script(answers(life_reply("d"), repeat=2))

    diary, generated = generators.generate_diary(living, DAY)

    assert generated
    assert diary.content == "d diary: a quiet day, and I liked it."
    assert diary.topics == ["d topic"]
    assert diary.news_status == NewsStatus.NOT_CONFIGURED and diary.news_digest is None
    topics_call, write_call = fake_llm.requests
    asked = topics_call["messages"][1]["content"]
    assert "| 9:00 | bakery |" in asked
    assert "User: Do you like the sea?\nHana: I love it!" in asked
    assert "Tomorrow's question" not in asked and "news" not in asked.lower()
    assert "Rainy." in write_call["messages"][-1]["content"]


@override_settings(LIFE_NEWS_MODEL="gpt-4o-mini-search-preview")
def test_it_fetches_the_news_once_per_country_language_and_date(fake_llm: FakeOpenAI) -> None:
    first = make_character(fake_llm, "aoi", news_country="JP", language="ja-JP")
    second = make_character(fake_llm, "ren", news_country="JP", language="ja-JP")
    for character in (first, second):
        DailySchedule.objects.create(character=character, schedule_date=DAY, content="day")
    fake_llm.script(answers(life_reply("n"), repeat=5))

    for character in (first, second):
        generators.generate_diary(character, DAY)

    models = [request["model"] for request in fake_llm.requests]
    assert models == ["gpt-4o-mini-search-preview", *["gpt-4o-mini"] * 4]
    digest = NewsDigest.objects.get()
    assert (digest.country, digest.language, digest.items) == ("JP", "ja", ["n news"])
    assert set(Diary.objects.values_list("news_status", flat=True)) == {NewsStatus.USED}
    assert "# Today's main news\n- n news" in fake_llm.requests[1]["messages"][1]["content"]
    assert "2026-01-16" in sent_text(fake_llm.requests[0])


@override_settings(LIFE_NEWS_MODEL="gpt-4o-mini-search-preview")
def test_it_writes_the_diary_without_news_when_fetching_them_fails(
    fake_llm: FakeOpenAI,
) -> None:
    character = make_character(fake_llm, "aoi", news_country="JP")
    DailySchedule.objects.create(character=character, schedule_date=DAY, content="day")
    fake_llm.script(answers(GARBLED, repeat=3), answers(life_reply(), repeat=2))

    diary, generated = generators.generate_diary(character, DAY)

    assert generated and diary.news_status == NewsStatus.FAILED
    assert not NewsDigest.objects.exists()


def test_a_diary_says_when_its_character_has_no_news_country(
    fake_llm: FakeOpenAI, living: Character
) -> None:
    DailySchedule.objects.create(character=living, schedule_date=DAY, content="day")
    fake_llm.script(answers(life_reply(), repeat=2))

    with override_settings(LIFE_NEWS_MODEL="gpt-4o-mini-search-preview"):
        diary, _ = generators.generate_diary(living, DAY)

    assert diary.news_status == NewsStatus.NO_COUNTRY
    assert len(fake_llm.requests) == 2


def test_it_goes_on_past_a_failed_day(fake_llm: FakeOpenAI, living: Character) -> None:
    good = answers(life_reply(), repeat=4)
    fake_llm.script(good, answers(life_reply()), answers(GARBLED, repeat=3), good)

    results = days.generate_dates(living, days.date_range(DAY, DAY + timedelta(days=2)))

    assert [(r.schedule_generated, r.diary_generated, r.code) for r in results] == [
        (True, True, ""),
        (False, False, "generation_failed"),
        (True, True, ""),
    ]
    assert sorted(DailySchedule.objects.values_list("schedule_date", flat=True)) == [
        DAY,
        DAY + timedelta(days=2),
    ]


def test_it_refuses_a_backwards_range() -> None:
    with pytest.raises(ValueError, match="starts"):
        days.date_range(DAY, DAY - timedelta(days=1))


@pytest.mark.parametrize("name", ["get_diary", "update_username"])
def test_the_tool_schemas_require_what_they_need_and_describe_every_parameter(name: str) -> None:
    spec = registry.get(name)
    assert spec is not None

    parameters = spec.parameters
    assert parameters["type"] == "object"
    assert set(parameters["required"]) <= set(parameters["properties"])
    assert all(
        p["type"] == "string" and p["description"] for p in parameters["properties"].values()
    )


def test_it_does_not_ask_the_echo_provider(fake_llm: FakeOpenAI, living: Character) -> None:
    living.llm_api_key_env = "NO_SUCH_KEY_VARIABLE"

    with pytest.raises(errors.GenerationFailed, match="has no LLM configured"):
        generators.generate_daily_schedule(living, DAY)

    assert not DailySchedule.objects.exists() and fake_llm.requests == []
