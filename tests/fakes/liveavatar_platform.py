"""A fake Live Avatar platform for tests: the REST session start and the agent WebSocket on
127.0.0.1, written from the Live Avatar Channel protocol (docs/avatar.md#the-live-avatar-agent).

It runs on the test's own event loop (aiohttp), with no Django in it. It answers
`POST /v1/session/start` (Bearer key required; a scripted business error on request), opens
`ws://127.0.0.1:<port>/agent/<sessionId>` with `session.init`, and records and checks
everything the agent sends: the envelope, requestId echoes, per-response `seq` from 0, one
active response per requestId, every started response closed by `response.done`,
`response.audio.finish` or `response.cancel`, and every audio frame's header (type, reserved
bits, length, mono PCM size, the configured rate, consecutive sequence numbers) inside an
audio bracket. Whatever breaks a rule lands in `problems`, which a test asserts empty.

Hooks: send any event, stream PCM as 40 ms frames in real time, ping the agent, drop the socket
abruptly (the agent sees 1006), answer the next handshake with another session's id, and
close with 1000 on `session.stop`, as the platform does.

    async with FakePlatform() as platform:
        ...
        connection = await platform.connected()
        await connection.send({"event": "input.text", "requestId": "req_1", "data": {...}})
        await platform.wait_for(lambda: platform.sent("response.done"))
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self

from aiohttp import WSMsgType, web

from tests.waiting import wait_until_async

API_KEY = "fake-liveavatar-api-key"
MAX_BINARY = 65536
RATE_CODES = {16000: 0, 24000: 1, 48000: 2}
JSON = dict[str, Any]


@dataclass(frozen=True)
class Frame:
    """An audio frame as the fake decoded its header."""

    seq: int
    timestamp: int
    rate_code: int
    samples: int
    key: bool
    payload: bytes
    received: float  # loop time


@dataclass(frozen=True)
class Received:
    connection: int  # which connection of the session (0: the first)
    message: JSON | Frame
    at: float  # loop time

    @property
    def event(self) -> str | None:
        return self.message.get("event") if isinstance(self.message, dict) else None


@dataclass
class Connection:
    index: int
    ws: web.WebSocketResponse
    request: web.Request
    opened_at: float
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    closed: asyncio.Event = field(default_factory=asyncio.Event)
    pings: int = 0  # WebSocket pings from the agent (each answered)
    pongs: int = 0  # answers to the platform's own pings

    async def send(self, message: JSON) -> None:
        await self.ws.send_str(json.dumps(message))

    async def send_binary(self, data: bytes) -> None:
        await self.ws.send_bytes(data)

    async def ping(self) -> None:
        await self.ws.ping()

    def drop(self) -> None:
        """Vanish without a closing handshake."""
        transport = self.request.transport
        assert transport is not None
        transport.abort()


def audio_frame(
    seq: int, timestamp: int, pcm: bytes, rate: int = 16000, key: bool = False
) -> bytes:
    samples = len(pcm) // 2
    header = (
        0b01 << 70
        | int(key) << 68
        | (seq % 4096) << 56
        | (timestamp % (1 << 20)) << 36
        | RATE_CODES[rate] << 34
        | samples << 22
        | len(pcm)
    )
    return header.to_bytes(9, "big") + pcm


class FakePlatform:
    def __init__(
        self, *, tts_rate: int = 24000, user_id: str = "u_1", session_id: str = "sess-123"
    ) -> None:
        self.tts_rate = tts_rate
        self.user_id = user_id
        self.session_id = session_id
        self.starts: list[tuple[dict[str, str], JSON]] = []  # (headers, body) per REST call
        self.stops: list[JSON] = []
        self.start_error: tuple[int, str] | None = None  # a business error for every start
        self.init_session_id: str | None = None  # a session.init naming another session
        self.refuse = 0  # answer so many of the next connection attempts with HTTP 503
        self.attempts: list[float] = []  # loop time of every connection attempt
        self.received: list[Received] = []
        self.problems: list[str] = []
        self.connections: list[Connection] = []
        self._state_seq = itertools.count(100)
        self._open: dict[str, JSON] = {}  # responseId -> {"request", "seq", "audio"}
        self._active: dict[str, str] = {}  # requestId -> its open responseId
        self._frame_seq: int | None = None
        self._audio_open = False
        self._prompt_open = False
        self._runner: web.AppRunner | None = None
        self.base_url = ""

    async def __aenter__(self) -> Self:
        app = web.Application()
        app.router.add_post("/v1/session/start", self._start)
        app.router.add_post("/v1/session/stop", self._stop)
        app.router.add_get("/agent/{session_id}", self._agent)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.base_url = f"http://{host}:{port}"
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        for connection in self.connections:
            await connection.ws.close()
        assert self._runner is not None
        await self._runner.cleanup()

    # --- what tests ask --------------------------------------------------------------------

    def sent(self, name: str) -> list[JSON]:
        """The agent's JSON events named `name`, in order."""
        return [r.message for r in self.received if r.event == name and isinstance(r.message, dict)]

    def events(self) -> list[str]:
        return [r.event if r.event else "frame" for r in self.received]

    def frames(self) -> list[Frame]:
        return [r.message for r in self.received if isinstance(r.message, Frame)]

    async def wait_for(self, condition: Callable[[], object], what: str = "the agent") -> None:
        await wait_until_async(condition, what)

    async def connected(self, count: int = 1) -> Connection:
        """The `count`th connection, once the agent has answered its session.init."""
        await wait_until_async(lambda: len(self.connections) >= count, f"connection {count}")
        connection = self.connections[count - 1]
        await wait_until_async(connection.ready.is_set, "session.ready")
        return connection

    async def stream(self, connection: Connection, pcm: bytes, rate: int = 16000) -> None:
        """The user's microphone: PCM as 40 ms frames, paced in real time like a live stream."""
        size = rate * 40 // 1000 * 2
        loop = asyncio.get_running_loop()
        began = loop.time()
        for number, offset in enumerate(range(0, len(pcm), size)):
            chunk = pcm[offset : offset + size]
            if len(chunk) < size:
                chunk += bytes(size - len(chunk))
            await connection.send_binary(
                audio_frame(number, number * 40, chunk, rate, key=number == 0)
            )
            await asyncio.sleep(max(0.0, began + (number + 1) * 0.04 - loop.time()))

    # --- REST ------------------------------------------------------------------------------

    async def _start(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.starts.append((dict(request.headers), body))
        if request.headers.get("Authorization") != f"Bearer {API_KEY}":
            return web.json_response({"code": 40004, "message": "unknown API key"})
        if self.start_error is not None:
            code, message = self.start_error
            return web.json_response({"code": code, "message": message})
        host = request.host
        return web.json_response(
            {
                "code": 0,
                "message": "success",
                "data": {
                    "sessionId": self.session_id,
                    "sfuUrl": "wss://sfu.fake.example",
                    "userToken": "fake-rtc-user-token",
                    "agentWsUrl": f"ws://{host}/agent/{self.session_id}",
                    "agentToken": None,
                },
            }
        )

    async def _stop(self, request: web.Request) -> web.Response:
        self.stops.append(await request.json())
        return web.json_response({"code": 0})

    # --- the agent socket ------------------------------------------------------------------

    async def _agent(self, request: web.Request) -> web.StreamResponse:
        loop = asyncio.get_running_loop()
        self.attempts.append(loop.time())
        if self.refuse:
            self.refuse -= 1
            return web.Response(status=503, text="renderer restarting")
        ws = web.WebSocketResponse(autoping=False, max_msg_size=MAX_BINARY)
        await ws.prepare(request)
        connection = Connection(len(self.connections), ws, request, loop.time())
        self.connections.append(connection)
        init_id = self.init_session_id or request.match_info["session_id"]
        await connection.send(
            {"event": "session.init", "data": {"sessionId": init_id, "userId": self.user_id}}
        )
        late = loop.call_later(5.0, self._check_ready, connection)
        try:
            async for message in ws:
                if message.type == WSMsgType.TEXT:
                    await self._text(connection, message.data)
                elif message.type == WSMsgType.BINARY:
                    self._binary(connection, message.data)
                elif message.type == WSMsgType.PING:
                    connection.pings += 1
                    await ws.pong(message.data)
                elif message.type == WSMsgType.PONG:
                    connection.pongs += 1
        finally:
            late.cancel()
            connection.closed.set()
        return ws

    def _check_ready(self, connection: Connection) -> None:
        if not connection.ready.is_set():
            self.problems.append(f"connection {connection.index}: no session.ready within 5 s")

    async def _text(self, connection: Connection, raw: str) -> None:
        at = asyncio.get_running_loop().time()
        try:
            message = json.loads(raw)
        except ValueError:
            self.problems.append(f"not JSON: {raw[:80]!r}")
            return
        if not isinstance(message, dict) or not isinstance(message.get("event"), str):
            self.problems.append(f"not an event envelope: {raw[:80]!r}")
            return
        self.received.append(Received(connection.index, message, at))
        name = message["event"]
        if name == "session.ready":
            connection.ready.set()
        elif name == "session.stop":
            await connection.ws.close(code=1000)
        elif name.startswith("response."):
            await self._response(connection, message)

    async def _response(self, connection: Connection, message: JSON) -> None:
        name, request_id, response_id = (
            message["event"],
            message.get("requestId"),
            message.get("responseId"),
        )
        if name == "response.cancel":
            if not isinstance(response_id, str) or self._open.pop(response_id, None) is None:
                self.problems.append(f"response.cancel for unknown response {response_id}")
            self._forget(response_id)
            return
        if name.startswith("response.audio.prompt"):
            self._prompt_open = name == "response.audio.promptStart"
            return
        if not isinstance(request_id, str) or not isinstance(response_id, str):
            self.problems.append(f"{name} without requestId and responseId")
            return
        opening = name in ("response.start", "response.audio.start") or (
            name == "response.chunk" and response_id not in self._open
        )
        if opening:
            if response_id in self._open:
                self.problems.append(f"{name}: response {response_id} opened twice")
            if request_id in self._active:
                self.problems.append(f"{name}: a second active response for {request_id}")
            self._open[response_id] = {"request": request_id, "seq": 0}
            self._active[request_id] = response_id
            self._audio_open = name == "response.audio.start"
            await self._state(connection, request_id, response_id, "ACCEPTED", None)
        open_response = self._open.get(response_id)
        if open_response is None:
            self.problems.append(f"{name} for a response not open: {response_id}")
            return
        if open_response["request"] != request_id:
            self.problems.append(f"{name}: requestId {request_id} changed within a response")
        if name == "response.chunk":
            if message.get("seq") != open_response["seq"]:
                self.problems.append(f"chunk seq {message.get('seq')}, {open_response['seq']} due")
            open_response["seq"] += 1
            if not isinstance((message.get("data") or {}).get("text"), str):
                self.problems.append("response.chunk without data.text")
        if name in ("response.done", "response.audio.finish"):
            self._open.pop(response_id)
            self._forget(response_id)
            self._audio_open = False
            await self._state(connection, request_id, response_id, "FINISHED", "COMPLETED")

    def _forget(self, response_id: str | None) -> None:
        self._active = {r: o for r, o in self._active.items() if o != response_id}

    async def _state(
        self, connection: Connection, request_id: str, response_id: str, state: str, reason: Any
    ) -> None:
        data = {"state": state, **({"reason": reason} if reason else {})}
        await connection.send(
            {
                "event": "response.state",
                "sessionId": self.session_id,
                "requestId": request_id,
                "responseId": response_id,
                "seq": next(self._state_seq),
                "timestamp": int(time.time() * 1000),
                "data": data,
            }
        )

    def _binary(self, connection: Connection, data: bytes) -> None:
        at = asyncio.get_running_loop().time()
        if len(data) < 9:
            self.problems.append(f"a binary message of {len(data)} bytes")
            return
        header = int.from_bytes(data[:9], "big")
        payload = data[9:]
        frame = Frame(
            seq=(header >> 56) & 0xFFF,
            timestamp=(header >> 36) & 0xFFFFF,
            rate_code=(header >> 34) & 0b11,
            samples=(header >> 22) & 0xFFF,
            key=bool((header >> 68) & 1),
            payload=payload,
            received=at,
        )
        checks = {
            "type is not audio (01)": header >> 70 != 0b01,
            "stereo": bool((header >> 69) & 1),
            "reserved bits set": bool((header >> 16) & 0xF),
            "not PCM": bool((header >> 20) & 0b11),
            "L is not the payload's length": header & 0xFFFF != len(payload),
            "F * 2 is not L": frame.samples * 2 != len(payload),
            "another sample rate than the avatar's": frame.rate_code != RATE_CODES[self.tts_rate],
            "sequence number not consecutive": self._frame_seq is not None
            and frame.seq != (self._frame_seq + 1) % 4096,
            "outside an audio bracket": not (self._audio_open or self._prompt_open),
        }
        self.problems.extend(
            f"audio frame {frame.seq}: {what}" for what, bad in checks.items() if bad
        )
        self._frame_seq = frame.seq
        self.received.append(Received(connection.index, frame, at))
