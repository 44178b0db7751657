"""Turn-taking on /ws (docs/turn.md#turn-taking), in process with the real Silero VAD and
espeak-ng or Kokoro speech: barge-in stops a reply after the configured speech (counted in
32 ms frames of audio, not wall-clock time), a monologue longer than the detector's maximum
reaches the LLM as one request, no partial transcript arrives for an utterance already
accepted, and Smart Turn keeps a pause after a filler from ending the turn."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from characters.models import Character
from conversations.speech.models import TTSProvider
from conversations.speech.turn_end import SMART_TURN
from conversations.speech.vad import SAMPLE_RATE, WINDOW_SAMPLES
from tests.fakes.openai_server import FakeOpenAI, ScriptedReply
from tests.inprocess import InProcessApp
from tests.realtime.turns import SLOW, heard_by_fake_stt, talk_over_a_reply, turns
from tests.realtime.ws import FRAME_BYTES, Socket, types
from tests.speech.audio import japanese, require_local_stt, silence, utterance
from tests.speech.test_turn_end import require_smart_turn

pytestmark = pytest.mark.django_db(transaction=True)

WINDOW = WINDOW_SAMPLES / SAMPLE_RATE  # one `data` frame of FRAME_BYTES is one VAD window
assert FRAME_BYTES == 2 * WINDOW_SAMPLES


def user_text(request: dict[str, Any]) -> str:
    return str(request["messages"][-1]["content"])


@pytest.mark.parametrize("after", [0.3, 1.0])
async def test_barge_in_stops_the_answer_after_the_configured_speech(
    app: InProcessApp,
    character: Character,
    api_key: str,
    fake_llm: FakeOpenAI,
    after: float,
) -> None:
    await heard_by_fake_stt(character, fake_llm)
    fake_llm.script(SLOW, ScriptedReply(text="Paris."))
    fake_llm.script_audio(ScriptedReply(text="What is the capital of France?"))

    _, rest = await talk_over_a_reply(
        app.url, api_key, {"send_voiced": True, "barge_in_seconds": after}
    )

    kinds = types(rest)
    stop = kinds.index("stop")
    # Each frame is one 32 ms window and each voiced one is reported before the frame's
    # barge-in: the reply stopped once `after` seconds had been spoken, not sooner or later.
    voiced_before_stop = kinds[:stop].count("voiced")
    assert voiced_before_stop <= math.ceil(after / WINDOW - 1e-6)
    assert voiced_before_stop >= 0.6 * after / WINDOW
    # ... while the user was still talking: the utterance had not ended yet.
    assert stop < kinds.index("accepted")
    # Nothing more of the reply is spoken; it ends interrupted, then the user's turn runs.
    cut = rest[stop:]
    first_final = types(cut).index("final")
    assert "chunk" not in types(cut)[:first_final]
    assert cut[first_final]["metadata"]["interrupted"] is True
    assert "Four." not in cut[first_final]["text"]
    assert rest[-1]["type"] == "final" and rest[-1]["text"] == "Paris."
    assert [status for status, _ in await turns()] == ["interrupted", "completed"]


async def test_with_barge_in_off_speech_does_not_stop_the_answer_early(
    app: InProcessApp, character: Character, api_key: str, fake_llm: FakeOpenAI
) -> None:
    await heard_by_fake_stt(character, fake_llm)
    fake_llm.script(SLOW, ScriptedReply(text="Paris."))
    fake_llm.script_audio(ScriptedReply(text="What is the capital of France?"))

    _, rest = await talk_over_a_reply(
        app.url, api_key, {"send_voiced": True, "barge_in_enabled": False}
    )

    # Only the finished utterance, a new request, cuts the reply short (AIAvatarKit's
    # behaviour with barge_in_enabled false): no `stop` while the user speaks.
    kinds = types(rest)
    assert kinds.index("stop") > kinds.index("accepted")
    assert rest[-1]["text"] == "Paris."


async def test_it_refuses_a_barge_in_time_out_of_range(
    app: InProcessApp, character: Character, api_key: str
) -> None:
    socket = await Socket.open(app.url, api_key)
    try:
        await socket.send("start", user_id="u1", metadata={"barge_in_seconds": 1e300})
        error = await socket.expect("error")
        await socket.send("start", user_id="u1", metadata={"barge_in_seconds": "soon"})
        again = await socket.expect("error")
        connected = await socket.start(user_id="u1", metadata={"barge_in_seconds": 0.5})
    finally:
        await socket.close()

    assert "barge_in_seconds must be a number of seconds from 0 to 10" in error["metadata"]["error"]
    assert again["metadata"] == error["metadata"]
    assert connected["type"] == "connected"


MONOLOGUE = (
    "Yesterday morning I walked along the river to the old market, and I bought apples, "
    "bread, cheese and a small jar of honey, and then I met my friend Anna near the bridge, "
    "and we talked for a long time about her new job at the museum, where she looks after "
    "paintings, maps and letters from sailors, and in the afternoon we took the train to the "
    "seaside and watched the boats until sunset"
)


def longest_pause(pcm: bytes) -> float:
    """The longest run of windows below the silence level, in seconds."""
    samples = np.abs(np.frombuffer(pcm, dtype="<i2").astype(np.int32))
    windows = samples[: len(samples) // WINDOW_SAMPLES * WINDOW_SAMPLES].reshape(-1, WINDOW_SAMPLES)
    quiet = windows.max(axis=1) < 300
    longest = run = 0
    for is_quiet in quiet:
        run = run + 1 if is_quiet else 0
        longest = max(longest, run)
    return longest * WINDOW


async def test_a_20_second_monologue_reaches_the_llm_whole(
    app: InProcessApp, character: Character, api_key: str, fake_llm: FakeOpenAI
) -> None:
    require_local_stt()
    spoken = utterance(MONOLOGUE, before=0.3, after=1.0)
    speech = spoken.pcm[int(spoken.start * SAMPLE_RATE) * 2 : int(spoken.end * SAMPLE_RATE) * 2]
    assert spoken.end - spoken.start > 19.0 and longest_pause(speech) < 0.4
    fake_llm.script(ScriptedReply(text="What a day."))

    socket = await Socket.open(app.url, api_key)
    try:
        await socket.start(user_id="u1")
        await socket.stream(spoken.pcm + silence(0.5))
        messages = await socket.turn()
    finally:
        await socket.close()

    # The detector cuts recordings at 10 s; the pieces became one turn and one LLM request.
    assert types(messages)[-1] == "final" and messages[-1]["text"] == "What a day."
    assert len(fake_llm.requests) == 1
    heard = user_text(fake_llm.requests[0]).lower()
    assert "river" in heard and "market" in heard  # the first seconds
    assert "seaside" in heard and "sunset" in heard  # the last ones
    [(status, seconds)] = await turns()
    assert status == "completed" and seconds is not None and seconds > 19.0


async def test_no_partial_arrives_for_an_utterance_already_accepted(
    app: InProcessApp, character: Character, api_key: str, fake_llm: FakeOpenAI
) -> None:
    await heard_by_fake_stt(character, fake_llm, tts_provider=TTSProvider.NONE)
    # Every transcription takes 2 s: the partial asked for after 1 s of speech is still being
    # made when the utterance ends (the audio is streamed faster than real time).
    fake_llm.script_audio(ScriptedReply(text="What is", delay=2.0, repeat=10))
    fake_llm.script(ScriptedReply(text="Paris."))
    socket = await Socket.open(app.url, api_key)
    try:
        await socket.start(user_id="u1", metadata={"send_partial_text": True})
        await socket.stream(utterance("What is the capital of France and why", after=1.0).pcm)
        messages = await socket.turn()
        # A partial finishing late would come after the turn; `invoke` then `final` bounds it.
        await socket.send("invoke", text="And Spain?")
        later = await socket.turn()
    finally:
        await socket.close()

    assert len(fake_llm.audio_requests) >= 2  # a partial was asked for, then the turn's own
    assert "info" not in types(messages)[types(messages).index("accepted") :]
    assert "info" not in types(later)


@pytest.mark.parametrize("hook", [SMART_TURN, ""])
async def test_smart_turn_keeps_a_pause_after_a_filler_from_ending_the_turn(
    app: InProcessApp, character: Character, api_key: str, fake_llm: FakeOpenAI, hook: str
) -> None:
    require_smart_turn()
    await heard_by_fake_stt(character, fake_llm, tts_provider=TTSProvider.NONE, turn_end_hook=hook)
    fake_llm.script_audio(
        ScriptedReply(text="あの、えっと、東京の天気を教えてください。", repeat=2)
    )
    # "Um, well..." then a 0.8 s pause (0.5 s of Kokoro's own silence and 0.3 s more), then
    # "Tell me the weather in Tokyo."
    spoken = japanese("あの、えっと") + japanese("東京の天気を教えてください。") + silence(1.0)

    socket = await Socket.open(app.url, api_key)
    try:
        await socket.start(user_id="u1")
        await socket.stream(spoken)
        await socket.turn()
        if not hook:  # the pause ended the first turn; the rest is a second one
            await socket.turn()
    finally:
        await socket.close()

    heard = [seconds for _, seconds in await turns()]
    if hook:
        [seconds] = heard
        assert seconds is not None and seconds > 3.0  # both parts, and the pause
        assert len(fake_llm.audio_requests) == 1
    else:  # two turns (the second may cut the first short while it is being transcribed)
        assert len(heard) == 2


async def test_no_partial_arrives_for_speech_dropped_when_a_turn_is_accepted(
    app: InProcessApp, character: Character, api_key: str, fake_llm: FakeOpenAI
) -> None:
    await heard_by_fake_stt(character, fake_llm, tts_provider=TTSProvider.NONE)
    fake_llm.script_audio(ScriptedReply(text="What is", delay=2.0, repeat=10))
    fake_llm.script(ScriptedReply(chunks=["One. ", "Two. ", "Three."], chunk_delay=1.5))
    spoken = utterance("What is the capital of France and why", after=0.0)
    socket = await Socket.open(app.url, api_key)
    try:
        await socket.start(
            user_id="u1", metadata={"send_partial_text": True, "barge_in_enabled": False}
        )
        # The user is still talking (a partial is being made) when a typed request arrives:
        # with barge-in off, that speech is dropped, and so is its partial text.
        await socket.stream(spoken.pcm[: int(spoken.end * SAMPLE_RATE) * 2])
        await socket.send("invoke", text="Hello")
        messages = await socket.turn()  # longer than the partial's 2 s
    finally:
        await socket.close()

    assert fake_llm.audio_requests  # a partial was asked for
    assert messages[-1]["text"] == "One. Two. Three."
    assert "info" not in types(messages)[types(messages).index("accepted") :]
