"""`metadata.avatar_frames: true` on AIAvatarKit's /chat and /ws: every spoken chunk carries
its face frames; without it, chunks stay as they were."""

from __future__ import annotations

import base64
import io
import wave

import pytest
from channels.testing import WebsocketCommunicator

from avatarsite.asgi import application
from characters.models import Character
from conversations.avatar import arkit
from tests.fakes.openai_server import FakeOpenAI, ScriptedReply
from tests.inprocess import InProcessApp
from tests.speech.audio import require_espeak

REPLY = "[face:joy]Paris! It is the capital of France."


def _seconds(audio_data: str) -> float:
    with wave.open(io.BytesIO(base64.b64decode(audio_data))) as wav:
        return wav.getnframes() / wav.getframerate()


def _check_frames(chunk: dict) -> None:
    face = chunk["metadata"]["avatar_frames"]
    assert face["fps"] == 30
    # One frame per started 1/30 s of this chunk's own audio, 52 weights each.
    assert len(face["frames"]) == pytest.approx(_seconds(chunk["audio_data"]) * 30, abs=2)
    assert {len(frame) for frame in face["frames"]} == {arkit.COUNT}
    assert max(frame[arkit.INDEX["jawOpen"]] for frame in face["frames"]) > 0.3


@pytest.mark.django_db
def test_chat_chunks_carry_frames_when_asked(
    app: InProcessApp, character: Character, api_key: str, fake_llm: FakeOpenAI
) -> None:
    require_espeak()
    body = {"type": "start", "session_id": "s1", "user_id": "u1", "text": "Capital?"}
    fake_llm.script(ScriptedReply(text=REPLY))
    asked = app.post_sse("/chat", {**body, "metadata": {"avatar_frames": True}}, key=api_key)
    fake_llm.script(ScriptedReply(text=REPLY))
    plain = app.post_sse("/chat", {**body, "session_id": "s2"}, key=api_key)

    chunks = asked.of_type("chunk")
    assert len(chunks) == 2
    for chunk in chunks:
        _check_frames(chunk)
    smile = arkit.INDEX["mouthSmileLeft"]
    assert min(f[smile] for f in chunks[0]["metadata"]["avatar_frames"]["frames"][6:]) > 0.4
    assert all("avatar_frames" not in c["metadata"] for c in plain.of_type("chunk"))


@pytest.mark.django_db(transaction=True)
async def test_ws_chunks_carry_frames_once_configured(
    app: InProcessApp, character: Character, api_key: str, fake_llm: FakeOpenAI
) -> None:
    require_espeak()
    fake_llm.script(ScriptedReply(text=REPLY))
    socket = WebsocketCommunicator(
        application, "/ws", headers=[(b"authorization", f"Bearer {api_key}".encode())]
    )
    assert (await socket.connect(timeout=60))[0]
    await socket.send_json_to(
        {"type": "start", "session_id": "w1", "metadata": {"avatar_frames": True}}
    )
    assert (await socket.receive_json_from(timeout=60))["type"] == "connected"
    await socket.send_json_to({"type": "invoke", "session_id": "w1", "text": "Capital?"})
    chunks = []
    while (message := await socket.receive_json_from(timeout=60))["type"] != "final":
        if message["type"] == "chunk":
            chunks.append(message)
    await socket.disconnect()
    assert len(chunks) == 2
    for chunk in chunks:
        _check_frames(chunk)
