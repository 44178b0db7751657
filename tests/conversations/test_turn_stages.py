"""The turn's stages one at a time, in process: prepare, listen, admit, guard, generate, speak,
record, and `announce` on the same speak stage. The LLM, STT and TTS are the loopback fakes."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import date
from typing import Any, TypeVar

import pytest
from asgiref.sync import async_to_sync
from django.utils import timezone

from avatarsite.tenants.models import Tenant
from characters.models import Character, DailySchedule
from conversations.admission import Caller, admit, find_character
from conversations.models import Context, Guardrail, McpServer, Message, TurnRecord
from conversations.pipeline import turn as stages
from conversations.pipeline.announcing import announce
from conversations.pipeline.events import (
    TurnChunk,
    TurnDropped,
    TurnEvent,
    TurnFinished,
    TurnRequest,
    TurnStarted,
    TurnToolCall,
)
from conversations.pipeline.shaping import ShapedRequest
from conversations.pipeline.speaking import Events, Voice
from conversations.speech.models import STTProvider, TTSProvider, VoiceSettings
from conversations.speech.stt import STTError
from conversations.tools import ToolResult
from tests.conftest import LLM_KEY_VARIABLE
from tests.conversations import plugins_for_tests  # noqa: F401  (its tools register)
from tests.fakes.openai_server import FakeOpenAI, ScriptedReply
from tests.fakes.voicevox_server import FakeVoicevox
from tests.inprocess import InProcessApp
from tests.speech.audio import silence

pytestmark = pytest.mark.django_db

Item = TypeVar("Item")


def request_for(character: Character, **inputs: Any) -> TurnRequest:
    """A turn request as a transport builds one: through admission."""
    caller = Caller(tenant_id=character.tenant_id)
    loaded = find_character(caller, character.slug)
    session, context = admit(caller, loaded, channel="http", user_id="u1", session_id="s1")
    return session.turn(context, **inputs)


def collect(events: AsyncIterator[Item]) -> list[Item]:
    async def gather() -> list[Item]:
        return [event async for event in events]

    return async_to_sync(gather)()


def begun(character: Character, **inputs: Any) -> stages.Turn:
    return stages.Turn.begin(request_for(character, **inputs))


@pytest.fixture
def ready(app: InProcessApp, character: Character, fake_llm: FakeOpenAI) -> Character:
    """The default character with the in-process app's settings (keys, validators)."""
    return character


def test_prepare_reads_guardrails_prompt_and_tools_of_the_characters_tenant_only(
    ready: Character,
) -> None:
    other = Tenant.named("globex")
    Guardrail.objects.create(name="mine", pattern="x", message="No.")
    Guardrail.objects.create(tenant=other, name="theirs", pattern="x", message="No.")
    McpServer.objects.create(tenant=other, name="crm", transport="http", url="http://x/mcp")
    today = ready.local_now(timezone.now()).date()
    DailySchedule.objects.create(character=ready, schedule_date=today, content="09:00 tea")

    prepared = async_to_sync(stages.prepare)(request_for(ready, text="Hi"))

    assert [g.name for g in prepared.guardrails] == ["mine"]
    assert prepared.system_prompt.startswith("You are Mia.")
    assert "09:00 tea" in prepared.system_prompt
    tools = [t.name for t in async_to_sync(prepared.tools.list)()]
    assert "check_temperature" in tools and "get_diary" in tools
    assert not any(name.startswith("crm__") for name in tools)  # another tenant's server


def test_prepare_leaves_out_the_characters_disabled_tools(ready: Character) -> None:
    ready.disabled_tools = ["check_temperature"]
    ready.save()

    prepared = async_to_sync(stages.prepare)(request_for(ready, text="Hi"))

    assert "check_temperature" not in [t.name for t in async_to_sync(prepared.tools.list)()]


def test_listen_passes_text_through_and_transcribes_audio(
    ready: Character, fake_llm: FakeOpenAI
) -> None:
    VoiceSettings.objects.create(
        character=ready,
        stt_provider=STTProvider.OPENAI,
        stt_base_url=fake_llm.base_url,
        stt_api_key_env=LLM_KEY_VARIABLE,
    )
    fake_llm.script_audio(ScriptedReply(text="Good morning"), ScriptedReply(text=""))

    assert async_to_sync(stages.listen)(begun(ready, text="Typed")) == "Typed"
    spoken = begun(ready, audio=silence(1.0))
    assert async_to_sync(stages.listen)(spoken) == "Good morning"
    assert spoken.record.request_text == "Good morning"
    assert spoken.record.stt_ms is not None
    assert async_to_sync(stages.listen)(begun(ready, audio=silence(1.0))) is None


def test_listen_without_a_recognizer_fails_rather_than_hearing_silence(ready: Character) -> None:
    VoiceSettings.objects.create(character=ready, stt_provider=STTProvider.NONE)

    with pytest.raises(STTError, match="not configured"):
        async_to_sync(stages.listen)(begun(ready, audio=silence(1.0)))


def test_admit_refuses_with_the_validators_reason_and_passes_the_rest(ready: Character) -> None:
    turn = begun(ready, text="a secret")

    assert async_to_sync(stages.admit)(turn, "a secret") == "Let's not talk about secrets."
    admitted = async_to_sync(stages.admit)(turn, "Hello")
    assert admitted == ShapedRequest("Hello", [], awake=True)


def test_guard_replaces_the_request_or_blocks_it(ready: Character) -> None:
    Guardrail.objects.create(
        name="swap",
        applies_to="request",
        pattern="ramen",
        action=Guardrail.Action.REPLACE,
        message="Noodles?",
    )
    Guardrail.objects.create(
        name="stop",
        applies_to="request",
        pattern="price",
        action=Guardrail.Action.BLOCK,
        message="No prices.",
    )
    replaced = begun(ready, text="ramen")
    prepared = async_to_sync(stages.prepare)(replaced.request)

    hit = async_to_sync(stages.guard)(replaced, prepared, ShapedRequest("ramen", [], True))

    assert hit is None
    assert [m.content for m in replaced.added] == ["Noodles?"]
    assert replaced.record.request_text == "Noodles?"
    blocked = begun(ready, text="price")
    hit = async_to_sync(stages.guard)(blocked, prepared, ShapedRequest("price", [], True))
    assert hit is not None and hit.name == "stop"
    said = collect(stages.say(blocked, hit))
    assert [(c.text, c.guardrail) for c in said if isinstance(c, TurnChunk)] == [
        ("No prices.", "stop")
    ]


def generated(ready: Character, text: str) -> tuple[stages.Turn, list[TurnChunk | TurnToolCall]]:
    turn = begun(ready, text=text)
    prepared = async_to_sync(stages.prepare)(turn.request)
    async_to_sync(stages.guard)(turn, prepared, ShapedRequest(text, [], True))
    return turn, collect(stages.generate(turn, prepared))


def test_generate_runs_a_tool_round_then_answers(ready: Character, fake_llm: FakeOpenAI) -> None:
    fake_llm.script(
        ScriptedReply(
            tool_calls=[{"id": "c1", "name": "check_temperature", "arguments": {"place": "Oslo"}}]
        ),
        ScriptedReply(text="Cold in Oslo."),
    )

    turn, events = generated(ready, "How warm is Oslo?")

    assert [type(e).__name__ for e in events] == [
        "TurnToolCall",
        "TurnChunk",
        "TurnToolCall",
        "TurnToolCall",
        "TurnChunk",
    ]
    starting, progress, done = (e for e in events if isinstance(e, TurnToolCall))
    assert (starting.name, starting.result) == ("check_temperature", None)
    assert progress.result == ToolResult({"progress": 1}, is_final=False)
    assert done.result == ToolResult({"place": "Oslo", "celsius": 23})
    assert [(m.role, m.content) for m in turn.added] == [
        ("user", "How warm is Oslo?"),
        ("assistant", "Let me check."),
        ("tool", json.dumps({"place": "Oslo", "celsius": 23})),
        ("assistant", "Cold in Oslo."),
    ]
    assert fake_llm.requests[0]["messages"][0]["role"] == "system"
    assert turn.record.tool_ms is not None and turn.record.llm_ms is not None


def test_generate_asks_a_last_time_without_tools_after_eight_rounds(
    ready: Character, fake_llm: FakeOpenAI
) -> None:
    loop = ScriptedReply(tool_calls=[{"id": "c", "name": "check_temperature", "arguments": {}}])
    fake_llm.script(*[loop] * 8, ScriptedReply(text="Fine."))

    turn, _ = generated(ready, "Weather?")

    assert len(fake_llm.requests) == 9
    assert "tools" not in fake_llm.requests[-1]
    assert turn.added[-1].content == "Fine."


def test_speak_gives_each_spoken_chunk_its_audio(
    ready: Character, fake_voicevox: FakeVoicevox
) -> None:
    VoiceSettings.objects.create(
        character=ready, tts_provider=TTSProvider.VOICEVOX, tts_base_url=fake_voicevox.url
    )
    character = find_character(Caller(tenant_id=ready.tenant_id), ready.slug)
    voice = Voice.of(character)
    assert voice is not None
    composer = stages.ChunkComposer(character, None)
    composer.speed = 1.5  # the session's

    async def chunks() -> Events:
        for sentence in ["One.", "Two."]:
            chunk = composer.compose(sentence)
            assert chunk is not None
            yield chunk

    spoken = collect(stages.speak(voice, chunks()))

    assert all(isinstance(c, TurnChunk) and c.audio for c in spoken)
    assert voice.ms is not None
    synthesised = [r for r in fake_voicevox.requests if r["path"] == "/synthesis"]
    assert [r["json"]["speedScale"] for r in synthesised] == [1.5, 1.5]


def test_record_writes_history_only_for_a_completed_turn(ready: Character) -> None:
    failed = begun(ready, text="Hi")
    async_to_sync(stages.record)(failed, TurnRecord.Status.FAILED, error="broken")
    completed = begun(ready, text="Hi")
    completed.added.append(stages.ChatMessage(role="user", content="Hi"))
    async_to_sync(stages.record)(completed, TurnRecord.Status.COMPLETED, messages=completed.added)

    assert sorted(TurnRecord.objects.values_list("status", "error")) == [
        ("completed", ""),
        ("failed", "broken"),
    ]
    assert list(Message.objects.values_list("content", flat=True)) == ["Hi"]
    assert Context.objects.get().id == completed.context_id


def test_run_turn_goes_through_the_stages_in_order(ready: Character, fake_llm: FakeOpenAI) -> None:
    fake_llm.script(ScriptedReply(text="Hello there. Nice day."))

    events: list[TurnEvent] = collect(stages.run_turn(request_for(ready, text="Hi")))

    assert isinstance(events[0], TurnStarted)
    assert [c.text for c in events if isinstance(c, TurnChunk)] == ["Hello there. ", "Nice day."]
    assert isinstance(events[-1], TurnFinished) and events[-1].text == "Hello there. Nice day."
    assert TurnRecord.objects.get().status == "completed"


def test_run_turn_drops_audio_without_speech(ready: Character, fake_llm: FakeOpenAI) -> None:
    VoiceSettings.objects.create(
        character=ready,
        stt_provider=STTProvider.OPENAI,
        stt_base_url=fake_llm.base_url,
        stt_api_key_env=LLM_KEY_VARIABLE,
    )
    fake_llm.script_audio(ScriptedReply(text=""))

    events = collect(stages.run_turn(request_for(ready, audio=silence(1.0))))

    assert [type(e) for e in events] == [TurnDropped]
    assert TurnRecord.objects.get().error == "No speech recognized."
    assert fake_llm.requests == []


def test_announce_speaks_and_records_nothing(ready: Character) -> None:
    character = find_character(Caller(tenant_id=ready.tenant_id), ready.slug)

    events = collect(announce(character, "[face:joy]Hello everyone. Welcome!"))

    assert [e.text for e in events if isinstance(e, TurnChunk)] == [
        "[face:joy]Hello everyone. ",
        "Welcome!",
    ]
    assert isinstance(events[-1], TurnFinished)
    assert events[-1].voice_text == "Hello everyone. Welcome!"
    assert not TurnRecord.objects.exists()


def test_schedules_are_read_on_the_characters_own_date(ready: Character) -> None:
    ready.timezone = "Pacific/Kiritimati"  # UTC+14: often a day ahead of the server
    ready.save()
    local_today = ready.local_now(timezone.now()).date()
    DailySchedule.objects.create(character=ready, schedule_date=local_today, content="surf")
    DailySchedule.objects.create(character=ready, schedule_date=date(2000, 1, 1), content="old")

    prepared = async_to_sync(stages.prepare)(request_for(ready, text="Hi"))

    assert "surf" in prepared.system_prompt and "old" not in prepared.system_prompt
