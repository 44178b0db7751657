"""Speech-to-text pre- and post-processing hooks, named per character by dotted path and
limited to STT_HOOK_MODULES: their results reach the LLM, their metadata the `start` event."""

from __future__ import annotations

import base64

import pytest
from django.core.exceptions import ValidationError
from pytest_django.fixtures import Settings

from characters.models import Character
from conversations.models import Message
from conversations.speech.models import STTProvider, TTSProvider, VoiceSettings
from tests.conftest import LLM_KEY_VARIABLE
from tests.fakes.openai_server import FakeOpenAI, ScriptedReply
from tests.inprocess import InProcessApp
from tests.speech.audio import silence, tone
from tests.sse import SSEResult

pytestmark = pytest.mark.django_db

HOOKS = "tests.speech.hooks"


@pytest.fixture
def hooked(character: Character, settings: Settings, fake_llm: FakeOpenAI) -> Character:
    settings.STT_HOOK_MODULES = [HOOKS]
    VoiceSettings.objects.create(
        character=character,
        stt_provider=STTProvider.OPENAI,
        stt_base_url=fake_llm.base_url,
        stt_api_key_env=LLM_KEY_VARIABLE,
        tts_provider=TTSProvider.NONE,
        stt_preprocess=f"{HOOKS}.speaker_gate",
        stt_postprocess=f"{HOOKS}.normalise",
    )
    return character


def speak(app: InProcessApp, key: str, pcm: bytes) -> SSEResult:
    body = {"type": "start", "session_id": "s1", "audio_data": base64.b64encode(pcm).decode()}
    return app.post_sse("/chat", body, key=key)


def test_hooks_shape_what_the_llm_hears_and_report_on_start(
    app: InProcessApp, hooked: Character, api_key: str, fake_llm: FakeOpenAI
) -> None:
    fake_llm.script_audio(ScriptedReply(text="Is it raining?"))

    result = speak(app, api_key, tone(1.0))

    start = result.events[0]
    assert start["type"] == "start"
    assert start["metadata"]["recognized_text"] == "Is it raining？"
    assert start["metadata"]["preprocess_metadata"] == {"speaker": "owner", "session_id": "s1"}
    assert start["metadata"]["postprocess_metadata"] == {"normalised": True, "speaker": "owner"}
    assert fake_llm.requests[0]["messages"][-1]["content"] == "Is it raining？"


def test_audio_the_preprocessor_empties_is_not_transcribed(
    app: InProcessApp, hooked: Character, api_key: str, fake_llm: FakeOpenAI
) -> None:
    result = speak(app, api_key, silence(1.0))

    assert result.types == ["canceled"], result.events
    assert result.events[0]["metadata"]["reason"] == "No speech recognized."
    assert fake_llm.audio_requests == [] and fake_llm.requests == []
    assert not Message.objects.exists()


def test_only_async_functions_of_allowed_modules_can_be_hooks(
    hooked: Character, settings: Settings
) -> None:
    voice = VoiceSettings.objects.get(character=hooked)
    for path, problem in [
        ("os.system", "not one of the STT_HOOK_MODULES"),
        (f"{HOOKS}.missing", "cannot be imported"),
        (f"{HOOKS}.not_async", "not an async function"),
    ]:
        voice.stt_preprocess = path
        with pytest.raises(ValidationError, match=problem):
            voice.full_clean()


def test_a_hook_whose_module_is_no_longer_allowed_ends_the_turn_with_an_error(
    app: InProcessApp, hooked: Character, api_key: str, fake_llm: FakeOpenAI, settings: Settings
) -> None:
    settings.STT_HOOK_MODULES = []

    result = speak(app, api_key, tone(1.0))

    assert result.types == ["error"]
    assert "not one of the STT_HOOK_MODULES" in result.events[0]["metadata"]["error"]
    assert fake_llm.audio_requests == []
