"""A session's speech speed, set once (start, config, metadata or a `[speed:x]` tag), holds for
every later sentence: typed and spoken turns on /ws, later requests on /chat. In process:
Channels' communicator and Django's async client."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from pytest_django.fixtures import Settings

from avatarsite.tenants.models import Tenant
from characters.models import Character
from conversations.models import ApiKey
from conversations.speech.audio import read_wav
from conversations.speech.models import TTSProvider, VoiceSettings
from conversations.speech.voices import synthesizer_for
from tests.conftest import LLM_KEY_VARIABLE
from tests.fakes.openai_server import FakeOpenAI, ScriptedReply
from tests.inprocess import InProcessApp
from tests.realtime.inprocess_ws import connect, stream, turn
from tests.speech.audio import require_espeak, require_local_stt, utterance

SENTENCE = "Paris is lovely in the spring sunshine."


def normal_duration(character: Character) -> float:
    """How long the sentence lasts at speed 1 in the character's voice."""
    synthesizer = synthesizer_for(character)
    assert synthesizer is not None
    return read_wav(async_to_sync(synthesizer.synthesize)(SENTENCE, speed=1.0)).duration


def durations(messages: list[dict[str, Any]]) -> list[float]:
    """How long each sentence with audio lasts."""
    return [
        read_wav(base64.b64decode(m["audio_data"])).duration
        for m in messages
        if m["type"] == "chunk" and m["audio_data"]
    ]


def halved(measured: float, normal: float) -> bool:
    return 0.4 < measured / normal < 0.6


@pytest.fixture
def espeaking(character: Character, settings: Settings) -> Character:
    require_espeak()
    settings.TTS_CACHE_DIR = ""
    VoiceSettings.objects.create(character=character, tts_provider=TTSProvider.ESPEAK)
    return Character.objects.select_related("voice").get(pk=character.pk)


@pytest.mark.django_db(transaction=True)
def test_speed_set_once_halves_every_later_sentence_on_ws(
    espeaking: Character, api_key: str, fake_llm: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    require_local_stt()
    monkeypatch.setenv(LLM_KEY_VARIABLE, fake_llm.api_key)
    normal = normal_duration(espeaking)
    fake_llm.script(*[ScriptedReply(text=f"{SENTENCE} {SENTENCE}") for _ in range(3)])

    async def talk() -> list[list[float]]:
        communicator = await connect(api_key, "fast")
        session = {"session_id": "fast"}
        try:
            await communicator.send_json_to({"type": "invoke", **session, "text": "Before"})
            before = durations(await turn(communicator))
            await communicator.send_json_to(
                {"type": "config", **session, "metadata": {"speech_speed": 2.0}}
            )
            await communicator.send_json_to({"type": "invoke", **session, "text": "Typed"})
            typed = durations(await turn(communicator))
            await stream(communicator, "fast", utterance(after=1.0).pcm)
            spoken = durations(await turn(communicator))
            return [before, typed, spoken]
        finally:
            await communicator.disconnect(timeout=30)

    before, typed, spoken = async_to_sync(talk)()

    assert len(before) == len(typed) == len(spoken) == 2
    assert all(0.9 < d / normal < 1.1 for d in before)
    assert all(halved(d, normal) for d in typed + spoken), (normal, typed, spoken)


@pytest.mark.django_db
def test_chat_keeps_the_speed_of_the_session_and_of_a_speed_tag(
    app: InProcessApp, espeaking: Character, api_key: str, fake_llm: FakeOpenAI
) -> None:
    normal = normal_duration(espeaking)
    fake_llm.script(
        ScriptedReply(text=SENTENCE),
        ScriptedReply(text=f"{SENTENCE} [speed:1]{SENTENCE}"),
        ScriptedReply(text=SENTENCE),
    )

    def ask(**fields: Any) -> list[float]:
        result = app.post_sse(
            "/chat", {"type": "start", "session_id": "s1", "text": "Hi", **fields}, key=api_key
        )
        return durations(result.of_type("chunk"))

    [first] = ask(metadata={"tts_speed": 2.0})
    fast, slow = ask()
    [later] = ask()

    assert halved(first, normal) and halved(fast, normal)
    assert 0.9 < slow / normal < 1.1 and 0.9 < later / normal < 1.1


@pytest.mark.django_db
def test_one_tenants_session_speed_never_reaches_another_tenants_same_session(
    app: InProcessApp, espeaking: Character, api_key: str, fake_llm: FakeOpenAI
) -> None:
    globex = Tenant.named("globex")
    other = Character.objects.create(
        tenant=globex,
        slug=espeaking.slug,  # the same slug, session id and user id as the first tenant's
        name="Other",
        llm_model="gpt-4o-mini",
        llm_base_url=espeaking.llm_base_url,
        llm_api_key_env=espeaking.llm_api_key_env,
        is_default=True,
    )
    VoiceSettings.objects.create(character=other, tts_provider=TTSProvider.ESPEAK)
    other_key = ApiKey.issue("globex", globex)[1]
    normal = normal_duration(espeaking)
    fake_llm.script(ScriptedReply(text=SENTENCE), ScriptedReply(text=SENTENCE))
    body = {"type": "start", "session_id": "s1", "user_id": "u1", "text": "Hi"}

    fast = app.post_sse("/chat", {**body, "metadata": {"speech_speed": 2.0}}, key=api_key)
    theirs = app.post_sse("/chat", body, key=other_key)

    assert halved(durations(fast.of_type("chunk"))[0], normal)
    assert 0.9 < durations(theirs.of_type("chunk"))[0] / normal < 1.1
