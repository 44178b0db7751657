"""A session's speech speed, set once (start, config, metadata or a `[speed:x]` tag), holds for
every later sentence: typed and spoken turns on /ws, later requests on /chat. In process:
Channels' communicator and Django's async client."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from channels.testing import WebsocketCommunicator
from pytest_django.fixtures import Settings

from avatarsite.asgi import application
from characters.models import Character
from conversations.speech.audio import read_wav
from conversations.speech.models import TTSProvider, VoiceSettings
from conversations.speech.voices import synthesizer_for
from tests.conftest import LLM_KEY_VARIABLE
from tests.fakes.openai_server import FakeOpenAI, ScriptedReply
from tests.inprocess import InProcessApp
from tests.realtime.ws import FRAME_BYTES
from tests.speech.audio import require_espeak, require_local_stt, utterance

SENTENCE = "Paris is lovely in the spring sunshine."


def normal_duration(character: Character) -> float:
    """How long the sentence lasts at speed 1 in the character's voice."""
    synthesizer = synthesizer_for(character)
    assert synthesizer is not None
    return read_wav(async_to_sync(synthesizer.synthesize)(SENTENCE, speed=1.0)).duration


def durations(chunks: list[dict[str, Any]]) -> list[float]:
    return [read_wav(base64.b64decode(c["audio_data"])).duration for c in chunks]


def halved(measured: float, normal: float) -> bool:
    return 0.4 < measured / normal < 0.6


@pytest.fixture
def espeaking(character: Character, settings: Settings) -> Character:
    require_espeak()
    settings.TTS_CACHE_DIR = ""
    VoiceSettings.objects.create(character=character, tts_provider=TTSProvider.ESPEAK)
    return Character.objects.select_related("voice").get(pk=character.pk)


async def _turn(communicator: WebsocketCommunicator) -> list[dict[str, Any]]:
    """The chunks of the next turn accepted, up to its `final` (a `final{interrupted}` closing
    the previous turn comes before `accepted`)."""
    while (await communicator.receive_json_from(timeout=120))["type"] != "accepted":
        pass
    chunks = []
    while (message := await communicator.receive_json_from(timeout=120))["type"] != "final":
        assert message["type"] != "error", message
        if message["type"] == "chunk" and message["audio_data"]:
            chunks.append(message)
    return chunks


@pytest.mark.django_db(transaction=True)
def test_speed_set_once_halves_every_later_sentence_on_ws(
    espeaking: Character, api_key: str, fake_llm: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    require_local_stt()
    monkeypatch.setenv(LLM_KEY_VARIABLE, fake_llm.api_key)
    normal = normal_duration(espeaking)
    fake_llm.script(*[ScriptedReply(text=f"{SENTENCE} {SENTENCE}") for _ in range(3)])

    async def talk() -> list[list[float]]:
        communicator = WebsocketCommunicator(
            application, "/ws", headers=[(b"authorization", f"Bearer {api_key}".encode())]
        )
        assert (await communicator.connect())[0]
        session = {"session_id": "fast"}
        try:
            await communicator.send_json_to({"type": "start", **session, "user_id": "u"})
            assert (await communicator.receive_json_from(timeout=30))["type"] == "connected"
            await communicator.send_json_to({"type": "invoke", **session, "text": "Before"})
            before = durations(await _turn(communicator))
            await communicator.send_json_to(
                {"type": "config", **session, "metadata": {"speech_speed": 2.0}}
            )
            await communicator.send_json_to({"type": "invoke", **session, "text": "Typed"})
            typed = durations(await _turn(communicator))
            speech = utterance(after=1.0).pcm
            for start in range(0, len(speech), FRAME_BYTES):
                frame = base64.b64encode(speech[start : start + FRAME_BYTES]).decode()
                await communicator.send_json_to({"type": "data", **session, "audio_data": frame})
            spoken = durations(await _turn(communicator))
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
        return durations([c for c in result.of_type("chunk") if c["audio_data"]])

    [first] = ask(metadata={"tts_speed": 2.0})
    fast, slow = ask()
    [later] = ask()

    assert halved(first, normal) and halved(fast, normal)
    assert 0.9 < slow / normal < 1.1 and 0.9 < later / normal < 1.1
