from datetime import UTC, date, datetime

import pytest
from asgiref.sync import async_to_sync

from characters.models import Character, DailySchedule
from conversations.models import EndUser
from conversations.pipeline.prompt import NO_SCHEDULE, compose_system_prompt, render_persona

compose = async_to_sync(compose_system_prompt)


def test_it_fills_known_placeholders_only() -> None:
    persona = 'Hi {name}, today is {day}. Format: {"a": 1} {{x}} {0}'

    assert render_persona(persona, {"name": "Ada"}) == (
        'Hi Ada, today is {day}. Format: {"a": 1} {{x}} {0}'
    )


def test_it_returns_the_persona_untouched_without_params() -> None:
    assert render_persona("Hi {name}", None) == "Hi {name}"
    assert render_persona("Hi {name}", {}) == "Hi {name}"


@pytest.mark.django_db
def test_it_composes_the_day_on_the_characters_clock() -> None:
    character = Character.objects.create(
        slug="hana",
        name="Hana",
        persona='Hi {username}, I am {charactername}. {"a": 1}',
        timezone="Asia/Tokyo",
    )
    user = EndUser.objects.create(display_name="Taro")
    for day, content in ((date(2026, 1, 16), "| the 16th |"), (date(2026, 1, 17), "| the 17th |")):
        DailySchedule.objects.create(character=character, schedule_date=day, content=content)

    # 23:30 UTC on the 16th is 08:30 on Saturday the 17th in Tokyo.
    prompt = compose(character, user, {}, datetime(2026, 1, 16, 23, 30, tzinfo=UTC))

    persona, intro, schedule, name, now = prompt.split("\n\n")
    assert persona == 'Hi Taro, I am Hana. {"a": 1}'
    assert intro.startswith("Your schedule for today.") and schedule == "| the 17th |"
    assert name == "The user's name is Taro. Follow any request about how to address them."
    assert now == "It is now 2026-01-17 (Saturday) 08:30 (Asia/Tokyo)."


@pytest.mark.django_db
def test_it_says_when_there_is_no_schedule_and_omits_an_unknown_name() -> None:
    character = Character.objects.create(slug="kai", name="Kai", persona="Hi {username}")
    user = EndUser.objects.create()

    prompt = compose(
        character, user, {"username": "from params"}, datetime(2026, 1, 16, 9, 0, tzinfo=UTC)
    )

    assert prompt == (
        f"Hi from params\n\n{NO_SCHEDULE}\n\nIt is now 2026-01-16 (Friday) 09:00 (UTC)."
    )


@pytest.mark.django_db
def test_an_unknown_users_name_is_the_characters_default_never_the_placeholder() -> None:
    character = Character.objects.create(
        slug="yui", name="Yui", persona="{username}さん、{charactername}です。", language="ja-JP"
    )
    character.default_user_name = "あなた"
    user = EndUser.objects.create()

    prompt = compose(character, user, {}, datetime(2026, 1, 16, 9, 0, tzinfo=UTC))

    assert prompt.startswith("あなたさん、Yuiです。")
    assert "{username}" not in prompt
