"""A small client for /ws in tests: JSON messages in, AIAvatarKit envelopes out.

`Socket.open(url, key)` talks to a live server at `url`; with the in-process app's url (""),
it talks to the app in the test's own process through Channels' communicator, with the same
calls, so a test moves between the layers by its fixture alone.
"""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any, Self

import websockets
from channels.testing import WebsocketCommunicator
from websockets.asyncio.client import ClientConnection

from avatarsite.asgi import application

TIMEOUT = 60  # seconds: a hang fails the test instead of stalling the suite
END_TYPES = {"final", "vision", "error", "canceled", "cancelled"}
FRAME_BYTES = 1024  # 512 samples, what AIAvatarKit's Python client sends per message


def ws_url(http_url: str, query: str = "") -> str:
    return http_url.replace("http://", "ws://") + "/ws" + (f"?{query}" if query else "")


def subprotocol(key: str) -> str:
    """How the browser client sends its key: URL-safe base64 without padding."""
    return "Authorization." + base64.urlsafe_b64encode(key.encode()).decode().rstrip("=")


class InProcessConnection:
    """The app in this process through Channels' communicator, answering the calls tests make
    on a websockets client connection."""

    def __init__(self, communicator: WebsocketCommunicator) -> None:
        self.communicator = communicator
        self.close_code: int | None = None

    async def send(self, message: str | bytes) -> None:
        if isinstance(message, bytes):
            await self.communicator.send_to(bytes_data=message)
        else:
            await self.communicator.send_to(text_data=message)

    async def recv(self) -> str:
        output = await self.communicator.receive_output(TIMEOUT)
        if output["type"] == "websocket.close":
            self.close_code = output.get("code", 1000)
            raise AssertionError(f"the server closed the socket ({self.close_code})")
        return str(output["text"])

    async def wait_closed(self) -> None:
        while self.close_code is None:
            output = await self.communicator.receive_output(TIMEOUT)
            if output["type"] == "websocket.close":
                self.close_code = output.get("code", 1000)

    async def close(self) -> None:
        await self.communicator.disconnect(timeout=TIMEOUT)


class Socket:
    def __init__(self, connection: ClientConnection | InProcessConnection, session_id: str) -> None:
        self.connection = connection
        self.session_id = session_id
        self.received: list[dict[str, Any]] = []

    @classmethod
    async def open(
        cls, http_url: str, key: str, *, session_id: str = "ws1", query: str = "", **kwargs: Any
    ) -> Self:
        if not http_url:
            return cls(await _in_process(key, query), session_id)
        connection = await websockets.connect(
            ws_url(http_url, query),
            additional_headers={"Authorization": f"Bearer {key}"},
            max_size=None,
            open_timeout=TIMEOUT,
            **kwargs,
        )
        return cls(connection, session_id)

    async def send(self, type_: str, **fields: Any) -> None:
        await self.connection.send(
            json.dumps({"type": type_, "session_id": self.session_id, **fields})
        )

    async def start(self, **fields: Any) -> dict[str, Any]:
        await self.send("start", **fields)
        return await self.expect("connected")

    async def recv(self) -> dict[str, Any]:
        message = json.loads(await asyncio.wait_for(self.connection.recv(), TIMEOUT))
        self.received.append(message)
        return message

    async def expect(self, type_: str) -> dict[str, Any]:
        message = await self.recv()
        assert message["type"] == type_, message
        return message

    async def until(self, *types: str) -> list[dict[str, Any]]:
        """Messages up to and including the first of `types`."""
        messages = []
        while True:
            messages.append(message := await self.recv())
            if message["type"] in types:
                return messages

    async def turn(self) -> list[dict[str, Any]]:
        """One turn's messages: up to the end of the turn accepted next (a leading synthetic
        `final{interrupted}` is part of it)."""
        messages: list[dict[str, Any]] = []
        while True:
            messages.append(message := await self.recv())
            if "accepted" in types(messages) and message["type"] in END_TYPES:
                return messages

    async def stream(self, pcm: bytes, frame: int = FRAME_BYTES, *, binary: bool = False) -> None:
        """Send audio as `data` messages (or as binary frames of raw samples), as fast as the
        socket takes them."""
        for start in range(0, len(pcm), frame):
            if binary:
                await self.connection.send(pcm[start : start + frame])
                continue
            audio = base64.b64encode(pcm[start : start + frame]).decode()
            await self.send("data", audio_data=audio)

    async def close(self) -> None:
        await self.connection.close()


async def _in_process(key: str, query: str) -> InProcessConnection:
    communicator = WebsocketCommunicator(
        application,
        "/ws" + (f"?{query}" if query else ""),
        headers=[(b"authorization", f"Bearer {key}".encode())],
    )
    connected, _ = await communicator.connect(TIMEOUT)
    assert connected, "the in-process app refused the socket"
    return InProcessConnection(communicator)


def types(messages: list[dict[str, Any]]) -> list[str]:
    return [m["type"] for m in messages]
