"""Characters: validation, the demo character, and the admin pages operators use."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.db import IntegrityError
from django.test import Client
from django.urls import reverse

from characters.models import Character
from conversations.models import ApiKey, EndUser, TurnRecord
from conversations.speech.models import VoiceSettings

pytestmark = pytest.mark.django_db


def test_it_rejects_an_unknown_timezone_and_a_key_in_place_of_a_variable() -> None:
    character = Character(slug="x", name="X", timezone="Mars/Olympus", llm_api_key_env="sk-123")

    with pytest.raises(ValidationError) as excinfo:
        character.full_clean()

    assert set(excinfo.value.message_dict) == {"timezone", "llm_api_key_env"}


def test_it_allows_only_one_default_character() -> None:
    Character.objects.create(slug="a", name="A", is_default=True)

    with pytest.raises(IntegrityError):
        Character.objects.create(slug="b", name="B", is_default=True)


def test_ensure_demo_character_is_idempotent() -> None:
    for _ in range(2):
        call_command("ensure_demo_character", stdout=StringIO())

    demos = Character.objects.order_by("slug")
    assert [(c.slug, c.language, c.is_default) for c in demos] == [
        ("demo", "en-US", True),
        ("demo-ja", "ja-JP", False),
    ]


def test_the_admin_requires_a_login(client: Client) -> None:
    response = client.get(reverse("admin:characters_character_changelist"))

    assert response.status_code == 302
    assert response["Location"].startswith(reverse("admin:login"))


@pytest.mark.parametrize(
    "model",
    [
        "characters/character",
        "conversations/enduser",
        "conversations/channelidentity",
        "conversations/context",
        "conversations/message",
        "conversations/turnrecord",
        "conversations/apikey",
        "speech/kanareading",
    ],
)
def test_staff_can_list_and_search_every_model(admin_client: Client, model: str) -> None:
    Character.objects.create(slug="mia", name="Mia")
    url = f"/admin/{model}/"

    assert admin_client.get(url).status_code == 200
    assert admin_client.get(url, {"q": "mia"}).status_code == 200


def test_the_admin_shows_a_new_api_key_once(admin_client: Client) -> None:
    response = admin_client.post(
        reverse("admin:conversations_apikey_add"), {"name": "kiosk"}, follow=True
    )

    [message] = [str(m) for m in response.context["messages"] if "shown only once" in str(m)]
    raw = message.rsplit(" ", 1)[-1]
    assert ApiKey.authenticate(raw).name == "kiosk"


def test_turn_records_are_read_only_in_the_admin(admin_client: Client) -> None:
    character = Character.objects.create(slug="mia", name="Mia")
    record = TurnRecord.objects.create(
        character=character,
        end_user=EndUser.objects.create(),
        context_id="9b2f6a9e-4a4e-4f61-9b0a-3f1f7c1f2a10",
        channel="http",
        status=TurnRecord.Status.FAILED,
        error="LLM provider returned HTTP 500",
    )
    url = reverse("admin:conversations_turnrecord_change", args=[record.pk])

    assert admin_client.get(url).status_code == 200
    admin_client.post(url, {"status": "completed"})
    record.refresh_from_db()
    assert record.status == TurnRecord.Status.FAILED


def _character_form(**voice: str) -> dict[str, str]:
    return {
        "name": "Kai",
        "slug": "kai",
        "persona": "",
        "language": "ja-JP",
        "timezone": "Asia/Tokyo",
        "llm_provider": "openai",
        "llm_model": "gpt-4.1-mini",
        "llm_api_key_env": "OPENAI_API_KEY",
        "llm_max_tokens": "4096",
        "default_user_name": "あなた",
        "context_timeout_seconds": "3600",
        "artifact_catalog": "{}",
        "is_active": "on",
        "schedule_hour": "6",
        "apology": "Sorry, something went wrong.",
        "openai_history": "server",
        "diary_hour": "23",
        "shared_context_size": "20",
        "shared_context_max_age_hours": "0",
        # The character-life and shared-context inlines, left empty.
        **{
            f"{prefix}-{field}": value
            for prefix in ("weekly_schedule", "schedules", "diaries", "shared_messages")
            for field, value in (("TOTAL_FORMS", "0"), ("INITIAL_FORMS", "0"))
        },
        "voice-TOTAL_FORMS": "1",
        "voice-INITIAL_FORMS": "0",
        "voice-MIN_NUM_FORMS": "0",
        "voice-MAX_NUM_FORMS": "1",
        "voice-0-tts_provider": "voicevox",
        "voice-0-tts_voice": "888753764",
        "voice-0-tts_http_request": "{}",
        "voice-0-tts_speed": "1.1",
        "voice-0-style_map": '{"[face:joy]": "3"}',
        "voice-0-replacements": '[["AI", "エーアイ"]]',
        "voice-0-stt_provider": "auto",
        **voice,
    }


def test_the_admin_edits_a_characters_voice_inline(admin_client: Client) -> None:
    response = admin_client.post("/admin/characters/character/add/", _character_form())

    assert response.status_code == 302, response.context["errors"]
    voice = VoiceSettings.objects.get(character__slug="kai")
    assert (voice.tts_provider, voice.tts_voice, voice.tts_speed) == ("voicevox", "888753764", 1.1)
    assert voice.style_map == {"[face:joy]": "3"}


def test_the_admin_refuses_a_broken_replacement_pattern(admin_client: Client) -> None:
    form = _character_form(**{"voice-0-replacements": '[["(unclosed", "x"]]'})

    response = admin_client.post("/admin/characters/character/add/", form)

    assert response.status_code == 200
    assert "Bad regex" in response.content.decode()
    assert not Character.objects.filter(slug="kai").exists()
