"""The avatar socket /avatar/ws in this process (Channels' communicator): avatar-chat-server's
messages for a spoken turn, interrupts, bad frames, and tenants kept apart."""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import threading
from typing import Any

import numpy as np
import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import User
from django.test import Client
from pytest_django.fixtures import Settings

from avatarsite.asgi import application
from avatarsite.tenants.models import Membership, Tenant, TenantOrigin
from channels_app.models import LiveSession
from characters.models import Character
from conversations.avatar import arkit
from conversations.models import ApiKey, TurnRecord
from tests.conftest import LLM_KEY_VARIABLE
from tests.fakes.openai_server import FakeOpenAI, ScriptedReply
from tests.inprocess import InProcessApp
from tests.speech.audio import require_espeak
from tests.waiting import wait_until_async

pytestmark = pytest.mark.django_db(transaction=True)

TIMEOUT = 60
REPLY = "[face:joy]Paris! It is the capital of France, and a lovely city to walk in."
SLOW = ScriptedReply(
    chunks=["One two three four five six. ", "Seven eight nine ten. ", "Eleven twelve."],
    chunk_delay=1.0,
)


def held_reply(resume: threading.Event, settings: Settings) -> ScriptedReply:
    """SLOW's first sentence (the second delta tells the splitter it ended), then the model
    keeps writing until `resume`: an interrupt then always finds the turn still generating,
    however slowly the machine speaks that sentence. The LLM timeout is lifted for the hold."""
    settings.LLM_TIMEOUT_SECONDS = 60.0
    return ScriptedReply(chunks=SLOW.chunks, pause_after=2, resume=resume)


@pytest.fixture(autouse=True)
def _setup(app: InProcessApp, fake_llm: FakeOpenAI, monkeypatch: pytest.MonkeyPatch) -> None:
    require_espeak()
    monkeypatch.setenv(LLM_KEY_VARIABLE, fake_llm.api_key)


async def _open(path: str, headers: list[tuple[bytes, bytes]]) -> WebsocketCommunicator:
    socket = WebsocketCommunicator(application, path, headers=headers)
    connected, _ = await socket.connect(timeout=TIMEOUT)
    assert connected
    return socket


async def _connect(api_key: str, query: str = "") -> WebsocketCommunicator:
    socket = await _open(f"/avatar/ws{query}", [(b"authorization", f"Bearer {api_key}".encode())])
    config = await socket.receive_json_from(timeout=TIMEOUT)
    assert config["type"] == "config"
    return socket


async def _until(socket: WebsocketCommunicator, type_: str) -> list[dict[str, Any]]:
    """Messages up to and including the first of `type_`."""
    seen = []
    while True:
        message = await socket.receive_json_from(timeout=TIMEOUT)
        seen.append(message)
        if message["type"] == type_:
            return seen


def _pcm(frames: list[dict[str, Any]]) -> bytes:
    return b"".join(base64.b64decode(f["audio"]) for f in frames)


async def test_a_spoken_turn_streams_sync_frames_of_the_speech(
    api_key: str, character: Character, fake_llm: FakeOpenAI
) -> None:
    fake_llm.script(ScriptedReply(text=REPLY))
    socket = await _connect(api_key)
    await socket.send_json_to({"type": "text", "data": "What is the capital of France?"})
    messages = await _until(socket, "avatar_state")
    assert messages[-1]["state"] == "Responding"
    messages += await _until(socket, "transcript_done")
    messages += await _until(socket, "avatar_state")
    await socket.disconnect()

    types = [m["type"] for m in messages]
    start = types.index("audio_start")
    assert types[0] == "avatar_state" and types[-3:] == [
        "audio_end",
        "transcript_done",
        "avatar_state",
    ]
    assert messages[start]["sampleRate"] == 24000 and messages[start]["format"] == "audio/pcm16"
    frames = [m for m in messages if m["type"] == "sync_frame"]
    turn_id = messages[start]["turnId"]
    assert [f["frameIndex"] for f in frames] == list(range(len(frames)))
    assert {f["turnId"] for f in frames} == {turn_id}
    assert all(len(base64.b64decode(f["audio"])) == 1600 for f in frames)
    assert all(list(f["weights"]) == list(arkit.NAMES) for f in frames)
    assert messages[-3]["frames"] == len(frames)
    # The deltas' offsets are this turn's audio clock: they tile the frames' audio.
    deltas = [m for m in messages if m["type"] == "transcript_delta"]
    assert deltas[0]["startOffset"] == 0
    assert all(a["endOffset"] == b["startOffset"] for a, b in itertools.pairwise(deltas))
    assert deltas[-1]["endOffset"] <= len(frames) * 1000 / 30 < deltas[-1]["endOffset"] + 34
    assert "Paris!" in messages[-2]["text"] and "[face" not in messages[-2]["text"]
    # The mouth follows the voice; the joy tag smiles through the first sentence.
    samples = np.frombuffer(_pcm(frames), "<i2").reshape(len(frames), -1) / 32768.0
    loud = np.sqrt(np.mean(samples**2, axis=1))
    jaw = np.array([f["weights"]["jawOpen"] for f in frames])
    assert np.corrcoef(jaw, np.log10(loud + 1e-9))[0, 1] > 0.6
    assert np.mean([f["weights"]["mouthSmileLeft"] for f in frames[5:30]]) > 0.4
    # The last frames are the voice's tail and padding: the mouth is at rest.
    assert jaw[-1] == 0.0


async def test_frames_follow_the_frame_clock(
    api_key: str, character: Character, fake_llm: FakeOpenAI
) -> None:
    """Paced: after the lead, frames leave one per 1/30 s (loose bound: no wall-clock
    assertion beyond 'not all at once')."""
    fake_llm.script(
        ScriptedReply(text="A sentence long enough to take a couple of seconds to say.")
    )
    socket = await _connect(api_key)
    await socket.send_json_to({"type": "text", "data": "Talk"})
    messages = await _until(socket, "audio_end")
    await socket.disconnect()
    frames = [m for m in messages if m["type"] == "sync_frame"]
    assert len(frames) > 40
    span = frames[-1]["timestamp"] - frames[8]["timestamp"]
    assert span >= (len(frames) - 9) * 1000 / 30 - 50  # never ahead of the clock


async def test_an_interrupt_stops_face_and_audio_at_the_same_offset(
    api_key: str, character: Character, fake_llm: FakeOpenAI, settings: Settings
) -> None:
    resume = threading.Event()
    fake_llm.script(held_reply(resume, settings))
    try:
        await _interrupt_and_check_offsets(api_key)
    finally:
        resume.set()
    await wait_until_async(
        lambda: TurnRecord.objects.filter(status="interrupted").aexists(), "interrupted turn record"
    )


async def _interrupt_and_check_offsets(api_key: str) -> None:
    socket = await _connect(api_key)
    await socket.send_json_to({"type": "text", "data": "Count"})
    frames: list[dict[str, Any]] = []
    while len(frames) < 20:
        if (message := await socket.receive_json_from(timeout=TIMEOUT))["type"] == "sync_frame":
            frames.append(message)
    await socket.send_json_to({"type": "interrupt"})
    after = await _until(socket, "transcript_done")
    frames += [m for m in after if m["type"] == "sync_frame"]
    received = len(frames)
    interrupt = next(m for m in after if m["type"] == "interrupt")
    # Every frame sent before `interrupt` counts; none comes after it.
    assert after[-1]["type"] == "transcript_done" and after[-1]["interrupted"] is True
    assert [m["type"] for m in after[after.index(interrupt) :]] == [
        "interrupt",
        "avatar_state",
        "transcript_done",
    ]
    assert interrupt["offsetMs"] == round(received * 1000 / 30)
    # The audio ends exactly there too: the frames' PCM lasts offsetMs (24 kHz, 16-bit).
    assert round(len(_pcm(frames)) / 48) == interrupt["offsetMs"]
    assert after[-1]["text"] in "One two three four five six."
    # Nothing of the turn moves after it: the next message answers a ping.
    await socket.send_json_to({"type": "ping"})
    assert (await socket.receive_json_from(timeout=TIMEOUT))["type"] == "pong"
    await socket.disconnect()


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ('{"type": "dance"}', "UNKNOWN_TYPE"),
        ("{not json", "INVALID_MESSAGE"),
        ('["text"]', "INVALID_MESSAGE"),
        ('{"type": "text"}', "INVALID_MESSAGE"),
        ('{"type": "text", "data": "a\\u0000"}', "INVALID_MESSAGE"),
        ('{"type": "text", "data": "\\ud800"}', "INVALID_MESSAGE"),
        ('{"type": "text", "data": "' + "x" * 5000 + '"}', "INVALID_MESSAGE"),
        ('{"type": "audio", "data": "AAAA"}', "AUDIO_NOT_STARTED"),
        (b"\x00\x01", "INVALID_MESSAGE"),
    ],
)
async def test_a_bad_frame_is_a_protocol_error_and_the_socket_stays_sane(
    api_key: str, character: Character, frame: str | bytes, code: str
) -> None:
    socket = await _connect(api_key)
    if isinstance(frame, bytes):
        await socket.send_to(bytes_data=frame)
    else:
        await socket.send_to(text_data=frame)
    error = await socket.receive_json_from(timeout=TIMEOUT)
    assert (error["type"], error["code"]) == ("error", code)
    await socket.send_json_to({"type": "ping"})
    assert (await socket.receive_json_from(timeout=TIMEOUT))["type"] == "pong"
    await socket.disconnect()


async def test_bad_audio_after_the_stream_starts(api_key: str, character: Character) -> None:
    socket = await _connect(api_key)
    await socket.send_json_to({"type": "audio_stream_start", "userId": "u1"})
    for data in ("not base64!", "AA==", 7):
        await socket.send_json_to({"type": "audio", "data": data})
        error = await socket.receive_json_from(timeout=TIMEOUT)
        assert (error["type"], error["code"]) == ("error", "INVALID_AUDIO")
    await socket.send_json_to({"type": "audio", "data": base64.b64encode(bytes(3200)).decode()})
    await socket.send_json_to({"type": "ping"})
    assert (await socket.receive_json_from(timeout=TIMEOUT))["type"] == "pong"
    await socket.disconnect()


async def test_a_vanished_client_leaves_no_task_behind(
    api_key: str, character: Character, fake_llm: FakeOpenAI
) -> None:
    warm = await _connect(api_key)
    await warm.send_json_to({"type": "text", "data": "Hi"})
    await _until(warm, "transcript_done")
    await warm.disconnect()
    baseline = len(asyncio.all_tasks())

    fake_llm.script(SLOW)
    socket = await _connect(api_key)
    await socket.send_json_to({"type": "text", "data": "Count"})
    await _until(socket, "sync_frame")
    await socket.disconnect()
    await wait_until_async(lambda: len(asyncio.all_tasks()) <= baseline, "tasks to end")


async def test_credentials_and_tenants(api_key: str, character: Character) -> None:
    refused = WebsocketCommunicator(
        application, "/avatar/ws", headers=[(b"authorization", b"Bearer ak_wrong")]
    )
    assert (await refused.connect(timeout=TIMEOUT))[0] is False
    no_key = WebsocketCommunicator(application, "/avatar/ws?token=ak_in_url")
    assert (await no_key.connect(timeout=TIMEOUT))[0] is False

    other = await sync_to_async(Tenant.named)("globex")
    await Character.objects.acreate(tenant=other, slug="kai", name="Kai", is_default=True)
    _, other_key = await sync_to_async(ApiKey.issue)("globex", tenant=other)
    answers = []
    for key, slug in ((api_key, "kai"), (api_key, "nobody"), (other_key, "mia")):
        socket = await _open(
            f"/avatar/ws?character={slug}", [(b"authorization", f"Bearer {key}".encode())]
        )
        error = await socket.receive_json_from(timeout=TIMEOUT)
        closed = await socket.receive_output(timeout=TIMEOUT)
        answers.append((error["code"], error["message"].replace(slug, "?"), closed["code"]))
    # Another tenant's character answers exactly like one that does not exist.
    assert (
        answers[0]
        == answers[1]
        == answers[2]
        == ("character_not_found", "Unknown character '?'.", 4404)
    )


async def test_a_browser_token_in_the_url_opens_the_socket_from_its_origin(
    api_key: str, character: Character
) -> None:
    shop = "https://shop.example.com"
    await TenantOrigin.objects.acreate(tenant_id=character.tenant_id, origin=shop)
    minted = await sync_to_async(Client().post)(
        "/api/tokens",
        json.dumps({"origin": shop, "user_id": "u1"}),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {api_key}",
    )
    token = minted.json()["token"]
    socket = await _open(f"/avatar/ws?token={token}", [(b"origin", shop.encode())])
    assert (await socket.receive_json_from(timeout=TIMEOUT))["type"] == "config"
    await socket.disconnect()
    elsewhere = WebsocketCommunicator(
        application, f"/avatar/ws?token={token}", headers=[(b"origin", b"https://evil.example")]
    )
    assert (await elsewhere.connect(timeout=TIMEOUT))[0] is False


async def test_avatar_sessions_are_live_sessions_staff_see_and_command(
    api_key: str, character: Character, fake_llm: FakeOpenAI, settings: Settings
) -> None:
    staff = Client()
    admin = await sync_to_async(User.objects.create_superuser)("staff", "s@example.com", "pw")
    await sync_to_async(staff.force_login)(admin)
    socket = await _connect(api_key)
    [row] = (await sync_to_async(staff.get)("/api/live-sessions/")).json()["results"]
    assert (row["channel"], row["character"]) == ("avatar", "mia")

    async def command(name: str, **body: str) -> int:
        answer = await sync_to_async(staff.post)(
            f"/api/live-sessions/{row['id']}/{name}/", body, content_type="application/json"
        )
        return answer.status_code

    # Staff make it speak: the character's voice and face, without the LLM.
    assert await command("speak", text="[face:joy]Welcome to the shop!") == 202
    spoken = await _until(socket, "transcript_done")
    assert [m for m in spoken if m["type"] == "sync_frame"]
    assert spoken[-1]["text"] == "Welcome to the shop!" and fake_llm.requests == []

    # Staff stop a reply: the same interrupt as the client's own.
    resume = threading.Event()
    fake_llm.script(held_reply(resume, settings))
    try:
        await socket.send_json_to({"type": "text", "data": "Count"})
        await _until(socket, "sync_frame")
        assert await command("interrupt") == 202
        stopped = await _until(socket, "transcript_done")
    finally:
        resume.set()
    assert stopped[-1]["interrupted"] is True
    assert [m["type"] for m in stopped].count("interrupt") == 1

    # Another tenant's staff see nothing of it and cannot command it.
    other = await sync_to_async(Tenant.named)("globex")
    outsider = await sync_to_async(User.objects.create_user)("bob", password="pw", is_staff=True)
    await Membership.objects.acreate(user=outsider, tenant=other, role=Membership.Role.ADMIN)
    stranger = Client()
    await sync_to_async(stranger.force_login)(outsider)
    assert (await sync_to_async(stranger.get)("/api/live-sessions/")).json()["results"] == []
    refused = await sync_to_async(stranger.post)(f"/api/live-sessions/{row['id']}/interrupt/")
    assert refused.status_code == 404
    await socket.disconnect()
    assert not await LiveSession.objects.aexists()


async def test_a_keys_stream_limit_holds_on_the_avatar_socket(character: Character) -> None:
    key, raw = await sync_to_async(ApiKey.issue)("one-stream")
    key.concurrent_streams = 1
    await key.asave(update_fields=["concurrent_streams"])
    first = await _connect(raw)
    second = await _open("/avatar/ws", [(b"authorization", f"Bearer {raw}".encode())])
    error = await second.receive_json_from(timeout=TIMEOUT)
    closed = await second.receive_output(timeout=TIMEOUT)
    assert (error["code"], closed["code"]) == ("rate_limited", 4429)
    await first.disconnect()
    # The slot is given back when the first socket closes.
    third = await _connect(raw)
    await third.disconnect()
