"""A character as a Live Avatar agent against the fake platform (tests/fakes/): the handshake,
a turn in each mode (platform TTS, developer TTS, developer ASR), interrupts, heartbeat,
reconnection after the platform drops the socket, closing and stopping."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator

import pytest
from asgiref.sync import sync_to_async
from pytest_django.fixtures import Settings

from avatarsite.tenants.models import ProviderSecret
from channels_app.liveavatar.models import LiveAvatarAgent, Side, State
from channels_app.liveavatar.platform import AgentConfig
from channels_app.liveavatar.protocol import StartError
from channels_app.liveavatar.session import AgentSession, SessionFailed
from characters.models import Character
from conversations.models import TurnRecord
from conversations.pipeline.composing import sentences
from conversations.speech.audio import read_wav, resample_pcm, to_mono
from conversations.speech.models import STTProvider, TTSProvider, VoiceSettings
from conversations.speech.voices import synthesizer_for
from tests.conftest import LLM_KEY_VARIABLE
from tests.fakes.liveavatar_platform import API_KEY, FakePlatform
from tests.fakes.openai_server import FakeOpenAI, ScriptedReply
from tests.inprocess import InProcessApp
from tests.speech.audio import require_espeak, utterance

pytestmark = pytest.mark.django_db(transaction=True)

SLOW = ScriptedReply(chunks=["One two three. ", "Four five six. ", "Seven eight."], chunk_delay=1.0)


@pytest.fixture(autouse=True)
def _setup(
    app: InProcessApp, settings: Settings, monkeypatch: pytest.MonkeyPatch, fake_llm: FakeOpenAI
) -> None:
    monkeypatch.setenv(LLM_KEY_VARIABLE, fake_llm.api_key)
    settings.LIVEAVATAR_RECONNECT_BASE_SECONDS = 0.05
    settings.LIVEAVATAR_TIMEOUT_SECONDS = 10.0


def make_agent(character: Character, base_url: str, **fields: object) -> LiveAvatarAgent:
    secret = ProviderSecret(tenant_id=character.tenant_id, name="LIVEAVATAR_KEY")
    secret.set_value(API_KEY)
    secret.save()
    options = {
        "asr_provider": Side.PLATFORM,
        "tts_provider": Side.PLATFORM,
        "enabled": True,
        **fields,
    }
    return LiveAvatarAgent.objects.create(
        character=character,
        base_url=base_url,
        api_key_env="LIVEAVATAR_KEY",
        avatar_id="avatar-123",
        **options,
    )


@contextlib.asynccontextmanager
async def serving(
    character: Character, platform: FakePlatform, **fields: object
) -> AsyncIterator[tuple[AgentSession, asyncio.Task[str]]]:
    """An agent session running against the platform; stopped (and awaited) afterwards."""
    agent = await sync_to_async(make_agent)(character, platform.base_url, **fields)
    config = await sync_to_async(AgentConfig.load)(agent.pk)
    assert config is not None
    session = AgentSession(config)
    task = asyncio.create_task(session.run())
    try:
        yield session, task
    finally:
        await session.stop()
        await asyncio.gather(task, return_exceptions=True)


async def test_a_platform_tts_turn(character: Character, fake_llm: FakeOpenAI) -> None:
    fake_llm.script(ScriptedReply(text="[face:joy]I am Mia. Nice to meet you!"))
    async with FakePlatform() as platform, serving(character, platform) as (_, task):
        connection = await platform.connected()
        await connection.send({"event": "scene.ready"})
        await connection.send(
            {"event": "input.text", "requestId": "req_1", "data": {"text": "What is your name?"}}
        )
        await platform.wait_for(lambda: platform.sent("response.done"), "response.done")
        agent = await LiveAvatarAgent.objects.aget(character=character)
    assert await task == "stopped"
    assert platform.problems == []

    # One REST call, with the key and the mode; the browser's part is kept, the agent's not.
    [(headers, body)] = platform.starts
    assert headers["Authorization"] == f"Bearer {API_KEY}"
    assert body == {"avatarId": "avatar-123", "mode": "websocketAgent"}
    assert agent.state == State.RUNNING and agent.session_id == "sess-123"
    assert agent.user_token == "fake-rtc-user-token" != agent.user_token_ciphertext
    assert agent.sfu_url == "wss://sfu.fake.example"

    start, *chunks = [
        m for m in platform.received if (m.event or "").startswith("response.") and m.event
    ]
    assert start.message["event"] == "response.start"
    assert start.message["data"]["audioConfig"]["mood"] == "happy"
    texts = [c.message for c in chunks if c.event == "response.chunk"]
    assert [c["seq"] for c in texts] == list(range(len(texts))) and len(texts) == 2
    assert " ".join(c["data"]["text"] for c in texts) == "I am Mia. Nice to meet you!"
    ids = {(m.message["requestId"], m.message["responseId"]) for m in [start, *chunks]}
    assert len(ids) == 1 and next(iter(ids))[0] == "req_1"
    assert platform.events()[-1] == "session.stop"
    record = await TurnRecord.objects.aget()
    assert (record.channel, record.status) == ("liveavatar", "completed")


async def test_a_developer_tts_turn_sends_our_voice_as_frames(
    character: Character, fake_llm: FakeOpenAI
) -> None:
    require_espeak()
    reply = "Hello there, it is a fine day to talk about the weather."
    fake_llm.script(ScriptedReply(text=reply))
    async with (
        FakePlatform(tts_rate=24000) as platform,
        serving(character, platform, tts_provider=Side.DEVELOPER),
    ):
        connection = await platform.connected()
        await connection.send({"event": "input.text", "requestId": "req_1", "data": {"text": "Hi"}})
        await platform.wait_for(lambda: platform.sent("response.audio.finish"), "audio finish")
    assert platform.problems == []

    frames = platform.frames()
    events = platform.events()
    assert events.index("response.audio.start") < events.index("frame")
    assert events.index("response.audio.finish") > len(events) - 1 - events[::-1].index("frame")
    # Exactly our synthesizer's speech of each sentence, resampled to the avatar's rate and
    # joined without a gap, in 40 ms frames.
    voice = await sync_to_async(synthesizer_for)(character)
    assert voice is not None
    expected = b""
    for sentence in sentences(reply):
        text = sentence.strip()
        raw = await voice.synthesize(text, styled_text=text, language=character.language)
        wav = to_mono(read_wav(raw))
        expected += resample_pcm(wav.pcm, wav.sample_rate, 24000)
    assert b"".join(f.payload for f in frames) == expected
    assert all(f.samples == 960 for f in frames[:-1]) and frames[0].key
    assert not any(f.key for f in frames[1:])
    assert [f.timestamp for f in frames] == [40 * i for i in range(len(frames))]
    # Never more than ~half a second ahead of real time (a lower bound: load only delays).
    first = frames[0].received
    assert all(f.received - first >= f.timestamp / 1000 - 0.52 for f in frames)


async def test_new_input_cancels_the_answer_in_progress(
    character: Character, fake_llm: FakeOpenAI
) -> None:
    fake_llm.script(SLOW, ScriptedReply(text="Paris."), SLOW)
    async with FakePlatform() as platform, serving(character, platform):
        connection = await platform.connected()
        await connection.send(
            {"event": "input.text", "requestId": "req_1", "data": {"text": "Count"}}
        )
        await platform.wait_for(lambda: platform.sent("response.chunk"), "the first chunk")
        await connection.send(
            {"event": "input.text", "requestId": "req_2", "data": {"text": "Capital?"}}
        )
        await platform.wait_for(lambda: platform.sent("response.done"), "the second answer")
        # The same request again (the platform's transcript of it) is not answered twice.
        await connection.send(
            {"event": "input.asr.final", "requestId": "req_2", "data": {"text": "Capital?"}}
        )
        # A business interrupt cancels the next answer too.
        await connection.send({"event": "input.text", "requestId": "req_3", "data": {"text": "Go"}})
        await platform.wait_for(lambda: len(platform.sent("response.chunk")) >= 3, "req_3 chunk")
        await connection.send({"event": "control.interrupt", "data": {}})
        await platform.wait_for(lambda: len(platform.sent("response.cancel")) == 2, "2nd cancel")
    assert platform.problems == []

    first_chunk = platform.sent("response.chunk")[0]
    cancel = platform.sent("response.cancel")[0]
    assert cancel["responseId"] == first_chunk["responseId"]
    order = [(r.event, r.message.get("requestId")) for r in platform.received if r.event]
    assert order.index(("response.cancel", None)) < order.index(("response.start", "req_2"))
    assert [m["requestId"] for m in platform.sent("response.start")] == ["req_1", "req_2", "req_3"]
    statuses = [r.status async for r in TurnRecord.objects.order_by("started_at")]
    assert statuses == ["interrupted", "completed", "interrupted"]


async def test_a_developer_asr_turn_is_heard_by_our_vad_and_stt(
    character: Character, fake_llm: FakeOpenAI
) -> None:
    require_espeak()
    await sync_to_async(VoiceSettings.objects.create)(
        character=character,
        stt_provider=STTProvider.OPENAI,
        stt_base_url=fake_llm.base_url,
        stt_api_key_env=LLM_KEY_VARIABLE,
        tts_provider=TTSProvider.NONE,
    )
    fake_llm.script_audio(ScriptedReply(text="What is the capital of France", repeat=20))
    fake_llm.script(ScriptedReply(text="Paris."))
    speech = utterance("What is the capital of France and why is it there", after=1.2)
    async with (
        FakePlatform() as platform,
        serving(character, platform, asr_provider=Side.DEVELOPER),
    ):
        connection = await platform.connected()
        await platform.stream(connection, speech.pcm)
        await platform.wait_for(lambda: platform.sent("response.done"), "the answer")
    assert platform.problems == []

    voice = [
        (r.event, r.message.get("requestId"))
        for r in platform.received
        if (r.event or "").startswith("input.")
    ]
    request_id = voice[0][1]
    assert request_id and {rid for _, rid in voice} == {request_id}
    names = [name for name, _ in voice]
    assert names[0] == "input.voice.start" and names[-2:] == [
        "input.voice.finish",
        "input.asr.final",
    ]
    assert "input.asr.partial" in names
    assert platform.sent("input.asr.final")[0]["data"]["text"] == "What is the capital of France"
    partial_seqs = [m["seq"] for m in platform.sent("input.asr.partial")]
    assert partial_seqs == list(range(len(partial_seqs)))
    answer = platform.sent("response.chunk")
    assert answer[0]["requestId"] == request_id and answer[0]["data"]["text"] == "Paris."


async def test_heartbeat_pings_both_ways(character: Character, settings: Settings) -> None:
    settings.LIVEAVATAR_PING_SECONDS = 0.1
    async with FakePlatform() as platform, serving(character, platform):
        connection = await platform.connected()
        await platform.wait_for(lambda: connection.pings >= 2, "the agent's pings")
        await connection.ping()
        await platform.wait_for(lambda: connection.pongs == 1, "the agent's pong")


async def test_it_reconnects_with_doubling_delays_and_a_fresh_handshake(
    character: Character, fake_llm: FakeOpenAI
) -> None:
    fake_llm.script(ScriptedReply(text="Still here."))
    async with FakePlatform() as platform, serving(character, platform):
        connection = await platform.connected()
        # The socket drops, then the platform refuses three attempts in a row.
        platform.refuse = 3
        connection.drop()
        connection = await platform.connected(2)
        # A successful connection starts the count afresh: the next drop waits 0.05 s again.
        connection.drop()
        connection = await platform.connected(3)
        await connection.send({"event": "input.text", "requestId": "req_9", "data": {"text": "Hi"}})
        await platform.wait_for(lambda: platform.sent("response.done"), "an answer after all")
    assert platform.problems == [] and len(platform.starts) == 1
    assert len(platform.sent("session.ready")) == 3
    # After the drop (0.05 s), the refused attempts are 0.1, 0.2 and 0.4 s apart (base 0.05).
    gaps = [later - earlier for earlier, later in itertools.pairwise(platform.attempts[1:5])]
    assert [gap >= 0.05 * 2 ** (i + 1) for i, gap in enumerate(gaps)] == [True] * 3
    assert len(platform.attempts) == 6


async def test_session_closing_ends_the_session_without_reconnecting(character: Character) -> None:
    async with FakePlatform() as platform, serving(character, platform) as (_, task):
        connection = await platform.connected()
        await connection.send({"event": "session.closing", "data": {"reason": "timeout"}})
        assert await asyncio.wait_for(task, 30) == "closed by the platform (timeout)"
    assert len(platform.connections) == 1 and platform.events()[-1] == "session.stop"


async def test_a_session_init_for_another_session_is_fatal(character: Character) -> None:
    async with FakePlatform() as platform, serving(character, platform) as (_, task):
        platform.init_session_id = "someone-else"
        with pytest.raises(SessionFailed, match="another session"):
            await asyncio.wait_for(task, 30)
    assert platform.sent("session.ready") == [] and len(platform.connections) == 1


async def test_a_refused_session_start_names_the_platforms_code(character: Character) -> None:
    async with FakePlatform() as platform, serving(character, platform) as (_, task):
        platform.start_error = (40005, "plan limit reached")
        with pytest.raises(StartError) as refused:
            await asyncio.wait_for(task, 30)
    assert refused.value.name == "CONCURRENCY_LIMIT_EXCEEDED" and not refused.value.retry
    assert platform.connections == []


@pytest.mark.parametrize("tts", [Side.PLATFORM, Side.DEVELOPER])
async def test_an_idle_user_hears_the_idle_prompt_once(character: Character, tts: str) -> None:
    require_espeak()
    idle = {"event": "system.idleTrigger", "data": {"reason": "user_idle", "idleTimeMs": 30000}}
    async with (
        FakePlatform() as platform,
        serving(character, platform, tts_provider=tts, idle_prompt="Are you still there?"),
    ):
        connection = await platform.connected()
        await connection.send(idle)
        done = "system.prompt" if tts == Side.PLATFORM else "response.audio.promptFinish"
        await platform.wait_for(lambda: platform.sent(done), done)
        await connection.send(idle)  # the same idle period: nothing more
        await connection.send({"event": "input.text", "requestId": "r1", "data": {"text": "Hi"}})
        answered = "response.done" if tts == Side.PLATFORM else "response.audio.finish"
        await platform.wait_for(lambda: platform.sent(answered), "the answer")
        assert len(platform.sent(done)) == 1
        await connection.send(idle)  # a new idle period after the user spoke
        await platform.wait_for(lambda: len(platform.sent(done)) == 2, "the second prompt")
    assert platform.problems == []
    if tts == Side.PLATFORM:
        assert platform.sent("system.prompt")[0]["data"] == {"text": "Are you still there?"}
    else:
        events = platform.events()
        first, last = events.index("response.audio.promptStart"), events.index(done)
        assert set(events[first + 1 : last]) == {"frame"} and platform.frames()[0].key


async def test_malformed_platform_messages_are_ignored_and_the_session_goes_on(
    character: Character, fake_llm: FakeOpenAI
) -> None:
    fake_llm.script(ScriptedReply(text="Still fine."))
    async with (
        FakePlatform() as platform,
        serving(character, platform, asr_provider=Side.DEVELOPER) as (_, task),
    ):
        connection = await platform.connected()
        for text in (
            "not json",
            '["input.text"]',
            '{"event": 7}',
            '{"event": "input.text", "data": "text"}',
            '{"event": "input.text", "requestId": 5, "data": {"text": "hi"}}',
            '{"event": "input.text", "requestId": "r0", "data": {"text": "\\u0000\\ud800"}}',
            '{"event": "response.state", "seq": "x", "data": null}',
            '{"event": "something.new", "data": {"text": "hi"}}',
        ):
            await connection.ws.send_str(text)
        for data in (b"", b"\x80" + bytes(20), b"\x40\x00", bytes.fromhex("4c00000000f00007ff")):
            await connection.send_binary(data)  # empty, an image, short, payload short of L
        await connection.send({"event": "input.text", "requestId": "r1", "data": {"text": "Hi"}})
        await platform.wait_for(lambda: platform.sent("response.done"), "the answer")
        assert not task.done()
    assert platform.problems == []
    # Text that cannot be stored or spoken is refused, by its requestId; the rest is answered.
    [refused] = platform.sent("error")
    assert refused["requestId"] == "r0" and refused["data"]["code"] == "INVALID_REQUEST"
    assert {m["requestId"] for m in platform.sent("response.chunk")} == {"r1"}
