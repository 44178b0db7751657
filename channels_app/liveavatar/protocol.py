"""The Live Avatar Channel protocol, as its agent speaks it (docs/avatar.md#the-live-avatar-agent):
the REST session start's answer, JSON event envelopes, and the binary audio frame.

An audio frame is a 9-byte header, a 72-bit big-endian bit field (type, channel, key flag,
sequence, timestamp, rate code, samples, codec, reserved, length), then its payload. Sequence
numbers (12 bits) and timestamps (20 bits, ms) wrap, so they are only ever compared modulo
their range.
"""

from __future__ import annotations

import json
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

HEADER_BYTES = 9
AUDIO_TYPE = 0b01
PCM = 0
MAX_BINARY_BYTES = 65536  # a larger binary message makes the platform close the socket
SEQ_RANGE = 1 << 12
TS_RANGE = 1 << 20
RATE_CODES = {16000: 0b00, 24000: 0b01, 48000: 0b10}
RATES = {code: rate for rate, code in RATE_CODES.items()}

# Audio frames held to put late ones back in order: 3 x 40 ms.
REORDER_FRAMES = 3

# Business errors of POST /v1/session/start: (name, worth retrying).
START_ERRORS: dict[int, tuple[str, bool]] = {
    40001: ("NO_ORCHESTRATION_POD", True),
    40002: ("NO_RENDERER_POD", True),
    40003: ("SESSION_START_FAILED", True),
    40004: ("PRINCIPAL_UNIDENTIFIED", False),
    40005: ("CONCURRENCY_LIMIT_EXCEEDED", False),
    40006: ("QUOTA_EXHAUSTED", False),
    40007: ("SESSION_ACCESS_DENIED", False),
}
# Moods `response.start` may ask the platform's voice for, by the face tag of the first sentence.
MOODS = {
    "joy": "happy",
    "happy": "happy",
    "fun": "excited",
    "angry": "angry",
    "sorrow": "sad",
    "sad": "sad",
    "surprised": "excited",
    "think": "serious",
}


class FrameError(ValueError):
    """A binary message that is not a well-formed audio frame."""


class StartError(Exception):
    """The platform refused to start a session (its `code`), or could not be reached (0)."""

    def __init__(self, code: int, message: str) -> None:
        name, self.retry = START_ERRORS.get(code, ("SESSION_START_FAILED", True))
        self.name = name if code else "UNREACHABLE"
        super().__init__(f"{self.name} ({code}): {message}" if code else message)
        self.code = code


@dataclass(frozen=True, slots=True)
class Started:
    """What POST /v1/session/start answers. `agent_ws_url` is ours alone: it never reaches a
    browser, which gets `user_token` and `sfu_url`."""

    session_id: str
    user_token: str
    sfu_url: str
    agent_ws_url: str

    @classmethod
    def parse(cls, body: Any) -> Started:
        if not isinstance(body, dict):
            raise StartError(0, "The session start answer is not a JSON object.")
        code = body.get("code")
        if code != 0:
            number = code if isinstance(code, int) else 40003
            raise StartError(number, str(body.get("message") or "no message")[:300])
        data = body.get("data")
        fields = ("sessionId", "userToken", "sfuUrl", "agentWsUrl")
        if not isinstance(data, dict) or not all(
            isinstance(data.get(name), str) and data[name] for name in fields
        ):
            # No agentWsUrl: the avatar is not set up for a WebSocket agent.
            raise StartError(
                0, "The session start answer lacks sessionId, userToken, sfuUrl or agentWsUrl."
            )
        return cls(*(data[name] for name in fields))


def event(
    name: str,
    *,
    request_id: str | None = None,
    response_id: str | None = None,
    seq: int | None = None,
    data: dict[str, Any] | None = None,
    stamped: bool = False,
) -> str:
    """One JSON event as the agent sends it."""
    message: dict[str, Any] = {"event": name}
    if request_id is not None:
        message["requestId"] = request_id
    if response_id is not None:
        message["responseId"] = response_id
    if seq is not None:
        message["seq"] = seq
    if stamped:
        message["timestamp"] = int(time.time() * 1000)
    if data is not None:
        message["data"] = data
    return json.dumps(message, ensure_ascii=False)


@dataclass(frozen=True, slots=True)
class AudioFrame:
    seq: int
    timestamp: int  # ms of media time, wrapping
    sample_rate: int
    samples: int
    payload: bytes
    key: bool = False  # first frame of a turn
    stereo: bool = False
    codec: int = PCM

    def pack(self) -> bytes:
        header = (
            AUDIO_TYPE << 70
            | int(self.stereo) << 69
            | int(self.key) << 68
            | (self.seq % SEQ_RANGE) << 56
            | (self.timestamp % TS_RANGE) << 36
            | RATE_CODES[self.sample_rate] << 34
            | self.samples << 22
            | self.codec << 20
            | len(self.payload)
        )
        return header.to_bytes(HEADER_BYTES, "big") + self.payload

    @classmethod
    def unpack(cls, data: bytes) -> AudioFrame:
        if len(data) < HEADER_BYTES:
            raise FrameError(f"A binary frame of {len(data)} bytes has no 9-byte header.")
        header = int.from_bytes(data[:HEADER_BYTES], "big")
        if header >> 70 != AUDIO_TYPE:
            raise FrameError(f"Not an audio frame (type {header >> 70:02b}).")
        rate_code = (header >> 34) & 0b11
        if rate_code not in RATES:
            raise FrameError(f"Unknown sample rate code {rate_code:02b}.")
        length = header & 0xFFFF
        if len(data) < HEADER_BYTES + length:
            raise FrameError(f"The payload is shorter than its header's {length} bytes.")
        return cls(
            seq=(header >> 56) & 0xFFF,
            timestamp=(header >> 36) & 0xFFFFF,
            sample_rate=RATES[rate_code],
            samples=(header >> 22) & 0xFFF,
            payload=data[HEADER_BYTES : HEADER_BYTES + length],  # trailing bytes are ignored
            key=bool((header >> 68) & 1),
            stereo=bool((header >> 69) & 1),
            codec=(header >> 20) & 0b11,
        )


def ts_after(a: int, b: int) -> bool:
    """Whether timestamp `a` comes after `b`, on the wrapping 20-bit clock."""
    return 0 < (a - b) % TS_RANGE < TS_RANGE // 2


class Reorder:
    """A small jitter buffer: frames leave in timestamp order once more than `depth` are held;
    a repeated sequence number or a frame older than one already passed on is dropped."""

    def __init__(self, depth: int = REORDER_FRAMES) -> None:
        self.depth = depth
        self.held: list[AudioFrame] = []
        self.seen: deque[int] = deque(maxlen=64)
        self.last: int | None = None  # timestamp of the last frame passed on

    def push(self, frame: AudioFrame) -> list[AudioFrame]:
        if frame.seq in self.seen:
            return []
        self.seen.append(frame.seq)
        if self.last is not None and not 0 < (frame.timestamp - self.last) % TS_RANGE < (
            TS_RANGE // 2
        ):
            return []
        self.held.append(frame)
        # Order on the wrapping clock from a quarter turn before the oldest held frame.
        origin = (self.last if self.last is not None else self.held[0].timestamp) - TS_RANGE // 4
        self.held.sort(key=lambda f: (f.timestamp - origin) % TS_RANGE)
        out = []
        while len(self.held) > self.depth:
            out.append(self.held.pop(0))
            self.last = out[-1].timestamp
        return out
