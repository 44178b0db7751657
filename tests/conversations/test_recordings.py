"""Conversation audio and the conversation view: a recording character's voice turn is stored
through the storage API and played back to its tenant's staff only; recordings past the
tenant's retention are deleted by the beat task; the conversation view shows a conversation's
turns as a chat with their tool calls, guardrails and timings."""

from __future__ import annotations

import base64
import uuid
from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.test import Client
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from avatarsite.tenants.models import Membership, Tenant
from characters.models import Character
from conversations.models import Context, EndUser, Message, TurnRecord
from conversations.recordings import purge_expired
from conversations.speech.audio import read_wav, wav_bytes
from conversations.speech.models import STTProvider, TTSProvider, VoiceSettings
from conversations.tasks import purge_recordings
from tests.beat_entries import run_data_steps_again
from tests.conftest import LLM_KEY_VARIABLE
from tests.fakes.openai_server import FakeOpenAI, ScriptedReply
from tests.fakes.voicevox_server import FakeVoicevox
from tests.inprocess import InProcessApp
from tests.speech.audio import RATE, silence

pytestmark = pytest.mark.django_db

CONVERSATION = "/admin/conversations/turnrecord/conversation/{}/"


def staff(name: str, tenant: Tenant) -> Client:
    user = User.objects.create_user(name, password="pw", is_staff=True)
    Membership.objects.create(user=user, tenant=tenant, role=Membership.Role.VIEWER)
    client = Client()
    client.force_login(user)
    return client


def voice_turn(app: InProcessApp, character: Character, key: str, fake_llm: FakeOpenAI) -> None:
    fake_llm.script_audio(ScriptedReply(text="Good morning"))
    fake_llm.script(ScriptedReply(text="Hello there. Nice day."))
    audio = base64.b64encode(silence(1.25)).decode()
    body = {"type": "start", "session_id": "s1", "user_id": "u1", "audio_data": audio}
    assert app.post_sse("/chat", body, key=key).types[-1] == "final"


@pytest.fixture
def recording(character: Character, fake_llm: FakeOpenAI, fake_voicevox: FakeVoicevox) -> Character:
    character.record_audio = True
    character.save()
    VoiceSettings.objects.create(
        character=character,
        stt_provider=STTProvider.OPENAI,
        stt_base_url=fake_llm.base_url,
        stt_api_key_env=LLM_KEY_VARIABLE,
        tts_provider=TTSProvider.VOICEVOX,
        tts_base_url=fake_voicevox.url,
    )
    return character


def test_a_recording_characters_voice_turn_is_stored_and_played_to_its_tenant_only(
    app: InProcessApp, recording: Character, api_key: str, fake_llm: FakeOpenAI
) -> None:
    voice_turn(app, recording, api_key, fake_llm)
    record = TurnRecord.objects.get()
    mine = staff("ann", recording.tenant)
    theirs = staff("bob", Tenant.named("globex"))
    heard = f"/admin/conversations/turnrecord/{record.pk}/audio/request/"
    said = f"/admin/conversations/turnrecord/{record.pk}/audio/response/"

    page = mine.get(CONVERSATION.format(record.context_id))
    played = mine.get(heard)
    spoken = mine.get(said)

    # Stored through the storage API, under the tenant's directory and a random name.
    stored = str(record.request_audio.name)
    assert default_storage.exists(stored)
    assert stored.startswith(f"recordings/{recording.tenant_id}/")
    request_wav = read_wav(played.getvalue())
    assert (request_wav.sample_rate, request_wav.pcm) == (RATE, silence(1.25))
    assert played["Content-Type"] == "audio/wav"
    response_wav = read_wav(spoken.getvalue())
    assert response_wav.duration == pytest.approx(record.speech_out_seconds, abs=0.01)
    assert page.status_code == 200
    html = page.content.decode()
    assert heard in html and said in html and "Good morning" in html
    # Another tenant's staff: the page and the files answer like ids that do not exist.
    made_up = uuid.uuid4()
    assert theirs.get(CONVERSATION.format(record.context_id)).status_code == 404
    assert theirs.get(CONVERSATION.format(made_up)).status_code == 404
    assert theirs.get(heard).status_code == 404
    assert theirs.get(f"/admin/conversations/turnrecord/{made_up}/audio/request/").status_code == (
        404
    )
    assert mine.get(f"/admin/conversations/turnrecord/{record.pk}/audio/other/").status_code == 404
    # Byte ranges, as Safari asks for media.
    whole = wav_bytes(silence(1.25), RATE)
    part = mine.get(heard, HTTP_RANGE="bytes=0-43")
    tail = mine.get(heard, HTTP_RANGE="bytes=-100")
    assert (part.status_code, part.content, part["Content-Range"]) == (
        206,
        whole[:44],
        f"bytes 0-43/{len(whole)}",
    )
    assert (tail.status_code, tail.content) == (206, whole[-100:])
    assert played["Accept-Ranges"] == "bytes"
    for unsatisfiable in (f"bytes={len(whole)}-", "bytes=5-2", "bytes=-0", "items=0-1"):
        assert mine.get(heard, HTTP_RANGE=unsatisfiable).status_code == 416


def test_recordings_past_the_tenants_retention_are_deleted(character: Character) -> None:
    globex = Tenant.objects.create(name="Globex", slug="globex", audio_retention_days=2)
    kai = Character.objects.create(tenant=globex, slug="kai", name="Kai")
    now = timezone.now()

    def recorded(who: Character, days_ago: float) -> TurnRecord:
        record = TurnRecord(
            character=who,
            context_id=uuid.uuid4(),
            channel="http",
            status="completed",
            started_at=now - timedelta(days=days_ago),
        )
        record.request_audio.save("r.wav", ContentFile(wav_bytes(silence(0.1), RATE)), save=False)
        record.response_audio.save("a.wav", ContentFile(wav_bytes(silence(0.1), RATE)), save=False)
        record.save()
        return record

    kept = [recorded(character, 29), recorded(kai, 1)]  # default tenant: 30 days
    expired = [recorded(character, 31), recorded(kai, 3)]
    names = {r.pk: [str(r.request_audio.name), str(r.response_audio.name)] for r in kept + expired}

    assert purge_expired(now) == 2
    assert purge_expired(now) == 0

    for record in kept:
        record.refresh_from_db()
        assert all(default_storage.exists(n) for n in names[record.pk])
    for record in expired:
        record.refresh_from_db()
        assert not record.request_audio and not record.response_audio
        assert not any(default_storage.exists(n) for n in names[record.pk])
    # Deleting a turn record (its character, say) deletes its files.
    kai.delete()
    assert not any(default_storage.exists(n) for n in names[kept[1].pk])
    # Beat runs the task; the task purges.
    run_data_steps_again("conversations.migrations.0020_recordings_purge_beat_entry")
    entry = PeriodicTask.objects.get(task="conversations.tasks.purge_recordings")
    assert entry.enabled and entry.interval is not None
    assert purge_recordings.apply().get() == 0


def test_the_conversation_view_shows_bubbles_tools_guardrails_and_timings(
    character: Character,
) -> None:
    end_user = EndUser.objects.create(display_name="Ken")
    context = Context.objects.create(character=character, end_user=end_user, channel="http")
    asked = TurnRecord.objects.create(
        character=character,
        end_user=end_user,
        context_id=context.id,
        channel="http",
        status="completed",
        request_text="東京の天気は?",
        response_text="晴れです。",
        llm_first_token_ms=120.4,
        total_ms=980.0,
        guardrails=[{"name": "no-medicine", "on": "response", "action": "replace"}],
        feedback_rating="dislike",
        feedback_content="too short",
    )
    call = {"id": "call_1", "name": "get_weather", "arguments": '{"city": "Tokyo"}'}
    for position, (role, content, calls, call_id) in enumerate(
        [
            ("user", "東京の天気は?", [], ""),
            ("assistant", "", [call], ""),
            ("tool", "sunny, 21 °C", [], "call_1"),
            ("assistant", "晴れです。", [], ""),
        ]
    ):
        Message.objects.create(
            context=context,
            position=position,
            role=role,
            content=content,
            tool_calls=calls,
            tool_call_id=call_id,
            turn=asked,
        )
    failed = TurnRecord.objects.create(
        character=character,
        context_id=context.id,
        channel="http",
        status="failed",
        request_text="And tomorrow?",
        error="The language model did not answer in time.",
        started_at=asked.started_at + timedelta(minutes=1),
    )

    html = staff("ann", character.tenant).get(CONVERSATION.format(context.id)).content.decode()

    assert html.index("東京の天気は?") < html.index("晴れです。") < html.index("And tomorrow?")
    assert "get_weather" in html and "{&quot;city&quot;: &quot;Tokyo&quot;}" in html
    assert "sunny, 21 °C" in html
    assert "no-medicine" in html and "replace on the response" in html
    assert "first token 120 ms" in html and "total 980 ms" in html
    assert "dislike" in html and "too short" in html
    assert failed.error in html
    assert "UTC" in html  # every time with its zone (the character's)
    # The conversation's turn records, listed.
    listed = staff("amy", character.tenant).get(
        f"/admin/conversations/turnrecord/?context_id={context.id}"
    )
    assert listed.context["cl"].result_count == 2
