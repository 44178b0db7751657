"""Semantic end of turn (docs/turn.md#semantic-end-of-turn): the detector asks a turn-end hook
whether a pause ends the utterance, the built-in Smart Turn model tells a trailing filler from
a finished sentence, and only built-in or allowed hooks can be chosen."""

from __future__ import annotations

import importlib.util

import pytest
from django.core.exceptions import ValidationError
from pytest_django.fixtures import Settings

from characters.models import Character
from conversations.speech.models import VoiceSettings
from conversations.speech.turn_end import SMART_TURN, smart_turn, smart_turn_probability
from conversations.speech.vad import SpeechSegment, VolumeSpeechDetector
from tests.conftest import require_service
from tests.speech.audio import japanese, silence, tone

WINDOW = 0.032


def require_smart_turn() -> None:
    require_service(
        "Smart Turn (pipecat-ai installed with --no-deps, and faster-whisper)",
        all(importlib.util.find_spec(name) for name in ("pipecat", "faster_whisper")),
    )


async def feed(detector: VolumeSpeechDetector, pcm: bytes) -> list[SpeechSegment]:
    segments = []
    for start in range(0, len(pcm), 1024):
        segments += await detector.process("s1", pcm[start : start + 1024])
    return segments


# Two bursts of speech with a 0.8 s pause between them, then silence.
TWO_PARTS = silence(0.2) + tone(1.0) + silence(0.8) + tone(1.0) + silence(2.5)


async def test_a_pause_the_hook_holds_open_does_not_end_the_utterance() -> None:
    asked: list[float] = []

    async def finished_after_two_seconds(pcm: bytes) -> bool:
        asked.append(len(pcm) / 32000)
        return len(pcm) / 32000 > 2.0

    detector = VolumeSpeechDetector()
    detector.set_turn_end("s1", finished_after_two_seconds)

    [segment] = await feed(detector, TWO_PARTS)

    assert segment.duration == pytest.approx(2.8, abs=2 * WINDOW)
    # Asked once per pause, after the silence threshold: not for every silent window.
    assert len(asked) == 2 and asked[0] < 2.0 < asked[1]


async def test_without_a_hook_the_pause_ends_the_utterance() -> None:
    segments = await feed(VolumeSpeechDetector(), TWO_PARTS)

    assert [round(s.duration, 1) for s in segments] == [1.0, 1.0]


async def test_a_hook_holds_a_pause_open_for_the_wait_at_most() -> None:
    async def never_finished(pcm: bytes) -> bool:
        return False

    async def broken(pcm: bytes) -> bool:
        raise RuntimeError("the hook failed")

    waiting = VolumeSpeechDetector()
    waiting.set_turn_end("s1", never_finished)
    failing = VolumeSpeechDetector()
    failing.set_turn_end("s1", broken)

    [held] = await feed(waiting, silence(0.2) + tone(1.0) + silence(3.0))
    [ended] = await feed(failing, silence(0.2) + tone(1.0) + silence(3.0))

    # 0.5 s of silence, then 1.5 s more of waiting: the utterance ends 2 s after the speech.
    assert held.speech_end == pytest.approx(1.2, abs=WINDOW)
    assert len(held.pcm) / 32000 == pytest.approx(0.16 + 1.0 + 2.0, abs=2 * WINDOW)
    assert len(ended.pcm) / 32000 == pytest.approx(0.16 + 1.0 + 0.5, abs=2 * WINDOW)


async def test_smart_turn_hears_a_trailing_filler_as_unfinished() -> None:
    require_smart_turn()
    filler = japanese("あの、えっと")
    finished = japanese("東京の天気を教えてください。")

    assert smart_turn_probability(filler) < 0.2
    assert smart_turn_probability(finished) > 0.8
    assert not await smart_turn("s1", filler)
    assert await smart_turn("s1", finished)


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("path", "problem"),
    [
        ("os.system", "not one of the STT_HOOK_MODULES. The built-in"),
        ("tests.speech.hooks.not_async", "is not an async function"),
        ("tests.speech.hooks.missing", "cannot be imported"),
    ],
)
def test_only_built_in_or_allowed_async_hooks_can_be_chosen(
    settings: Settings, character: Character, path: str, problem: str
) -> None:
    settings.STT_HOOK_MODULES = ["tests.speech.hooks"]
    voice = VoiceSettings(character=character, turn_end_hook=path)

    with pytest.raises(ValidationError) as refused:
        voice.full_clean()

    assert problem in str(refused.value.message_dict["turn_end_hook"])
    VoiceSettings(character=character, turn_end_hook=SMART_TURN).full_clean()
    VoiceSettings(character=character, turn_end_hook="tests.speech.hooks.speaker_gate").full_clean()
