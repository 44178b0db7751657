"""/ws in the test's own process, through Channels' communicator: connect, talk, read turns."""

from __future__ import annotations

import base64
from typing import Any

from channels.testing import WebsocketCommunicator

from avatarsite.asgi import application
from tests.realtime.ws import FRAME_BYTES

TIMEOUT = 120  # seconds: local speech-to-text on a busy 2-core machine


async def connect(api_key: str, session_id: str) -> WebsocketCommunicator:
    communicator = WebsocketCommunicator(
        application, "/ws", headers=[(b"authorization", f"Bearer {api_key}".encode())]
    )
    assert (await communicator.connect())[0]
    await communicator.send_json_to({"type": "start", "session_id": session_id, "user_id": "u"})
    assert (await communicator.receive_json_from(timeout=30))["type"] == "connected"
    return communicator


async def stream(communicator: WebsocketCommunicator, session_id: str, pcm: bytes) -> None:
    """Microphone audio, in the frames AIAvatarKit's client sends."""
    for start in range(0, len(pcm), FRAME_BYTES):
        frame = base64.b64encode(pcm[start : start + FRAME_BYTES]).decode()
        await communicator.send_json_to(
            {"type": "data", "session_id": session_id, "audio_data": frame}
        )


async def turn(communicator: WebsocketCommunicator) -> list[dict[str, Any]]:
    """The messages of the next turn accepted, from `start` to its `final` (a
    `final{interrupted}` closing the previous turn comes before `accepted`)."""
    while (await communicator.receive_json_from(timeout=TIMEOUT))["type"] != "accepted":
        pass
    messages = []
    while (message := await communicator.receive_json_from(timeout=TIMEOUT))["type"] != "final":
        assert message["type"] != "error", message
        messages.append(message)
    return messages
