"""The `/ws` socket's messages in AIAvatarKit's envelope (docs/wire-protocols.md#realtime-voice-ws):
parsing what a client sends, and rendering everything the server says."""

from __future__ import annotations

import binascii
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from conversations.pipeline.events import TurnChunk, TurnEvent
from conversations.transports.aiavatar_wire import (
    AIAvatarRequest,
    envelope,
    error_envelope,
    event_envelope,
    pcm_chunk_envelopes,
)
from conversations.transports.base import problems
from conversations.transports.text import json_problem

from .connection import Connection

# `interrupt` is ours (not AIAvatarKit's): the user's "stop talking" button.
MESSAGE_TYPES = ("start", "data", "invoke", "config", "stop", "interrupt")


# What AIAvatarKit's clients put in every `data` message, and nothing else.
_FRAME_KEYS = frozenset(("type", "session_id", "audio_data"))
AUDIO_NEEDED = "data needs audio_data: base64 PCM16LE mono samples."


class ClientError(Exception):
    """A message this socket cannot act on; the text goes back in an `error` message."""


@dataclass(frozen=True, slots=True)
class AudioFrame:
    """Microphone samples for the socket's session: PCM16LE mono at 16 kHz, whole samples."""

    pcm: bytes


def _frame(pcm: bytes | None) -> AudioFrame:
    if not pcm or len(pcm) % 2:
        raise ClientError(AUDIO_NEEDED)
    return AudioFrame(pcm)


def _quick_frame(raw: dict[str, Any], carried: str | None) -> AudioFrame | None:
    """A `data` message in the usual shape, for the socket's session, decoded without the
    general validation (the hot path: one message per 32 ms per microphone). None for
    anything else, which `parse` then checks in full, with its explanations."""
    if raw.keys() != _FRAME_KEYS or raw["type"] != "data" or carried is None:
        return None
    audio = raw["audio_data"]
    if raw["session_id"] != carried or not isinstance(audio, str):
        return None
    try:
        pcm = binascii.a2b_base64(audio, strict_mode=True)
    except (binascii.Error, ValueError):  # not base64 (or not ASCII)
        return None
    return AudioFrame(pcm) if pcm and not len(pcm) % 2 else None


def parse(text: str, carried: str | None) -> AIAvatarRequest | AudioFrame:
    """A client's message; `carried` is the session the socket's `start` opened, if any.
    Usual `data` messages come back as their decoded audio."""
    try:
        raw = json.loads(text)
    except ValueError:
        raise ClientError("Message is not valid JSON.") from None
    if type(raw) is dict and (frame := _quick_frame(raw, carried)) is not None:
        return frame
    if not isinstance(raw, dict):
        raise ClientError("Message must be a JSON object.")
    if (problem := json_problem(raw, "message")) is not None:
        raise ClientError(f"Invalid message: {problem}")
    try:
        message = AIAvatarRequest.model_validate(raw)
    except ValidationError as exc:
        raise ClientError(f"Invalid message: {problems(exc, 'message')}") from None
    if message.type not in MESSAGE_TYPES:
        raise ClientError(
            f"Unknown message type {message.type!r}: expected {', '.join(MESSAGE_TYPES)}."
        )
    if not message.session_id:
        raise ClientError("session_id is required.")
    if message.type != "start" and message.session_id != carried:
        if carried is None:
            raise ClientError("Send a start message before anything else.")
        raise ClientError(f"This socket carries session {carried!r}.")
    return message


def json_frame(message: AIAvatarRequest) -> AudioFrame:
    """The audio of a `data` message that took the general path."""
    return _frame(message.audio())


def binary_frame(data: bytes, connection: Connection) -> AudioFrame:
    """A binary WebSocket frame: raw PCM16LE samples for the session `start` opened (ours, an
    additive option beside AIAvatarKit's base64 `data` messages)."""
    if connection.session_id is None:
        raise ClientError("Send a start message before anything else.")
    return _frame(data)


def _context(connection: Connection | None) -> str | None:
    if connection is None or connection.context_id is None:
        return None
    return str(connection.context_id)


def error(connection: Connection | None, message: str) -> str:
    """An `error` (None: the socket was refused before it knew anything)."""
    return error_envelope(
        message,
        session_id=connection.session_id if connection else None,
        user_id=connection.user_id if connection else None,
        context_id=_context(connection),
    )


def _say(connection: Connection, type_: str, **fields: Any) -> str:
    return envelope(type_, session_id=connection.session_id, user_id=None, **fields)


def connected(connection: Connection, context_id: str | None) -> str:
    """The answer to `start`: the character's name and, when known, the user's."""
    assert connection.session is not None
    metadata: dict[str, Any] = {"charactername": connection.character.name}
    if connection.session.end_user.display_name:
        metadata["username"] = connection.session.end_user.display_name
    return envelope(
        "connected",
        session_id=connection.session_id,
        user_id=connection.user_id,
        context_id=context_id,
        metadata=metadata,
    )


def stop(connection: Connection) -> str:
    """The client stops playing what it has of the reply."""
    return _say(connection, "stop", context_id=_context(connection))


def accepted(connection: Connection, turn_id: uuid.UUID) -> str:
    """A turn begins; its id is AIAvatarKit's `transaction_id` from here on."""
    return _say(
        connection,
        "accepted",
        transaction_id=str(turn_id),
        metadata={"block_barge_in": False},
    )


def cut_short(connection: Connection) -> str:
    """The `final` that closes the previous reply when a new turn begins."""
    return _say(connection, "final", text="", voice_text="", metadata={"interrupted": True})


def voiced(connection: Connection) -> str:
    return _say(connection, "voiced")


def partial(connection: Connection, text: str) -> str:
    """What the user has said so far (send_partial_text)."""
    return _say(connection, "info", metadata={"partial_request_text": text})


def of_event(connection: Connection, event: TurnEvent, turn_id: uuid.UUID | None) -> Iterator[str]:
    """A turn event's messages: one, or a chunk's header and PCM slices in raw-PCM mode.
    `turn_id` is None for what is said outside any turn (an operator's text)."""
    session_id, user_id = connection.session_id or "", connection.user_id
    transaction_id = str(turn_id) if turn_id else None
    if isinstance(event, TurnChunk) and connection.pcm_slice_bytes > 0:
        yield from pcm_chunk_envelopes(
            event,
            session_id=session_id,
            user_id=user_id,
            slice_bytes=connection.pcm_slice_bytes,
            transaction_id=transaction_id,
        )
        return
    yield event_envelope(
        event, session_id=session_id, user_id=user_id, transaction_id=transaction_id
    )
