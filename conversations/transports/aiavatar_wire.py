"""AIAvatarKit's request and response envelopes (docs/wire-protocols.md#the-aiavatarkit-envelope).

The request is validated with pydantic so a bad field gets the same 422 shape FastAPI gives
AIAvatarKit's clients; responses always carry every key, null when unset, in AIAvatarKit's order.
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from collections.abc import Iterator
from typing import Any

from django.http import JsonResponse
from pydantic import BaseModel, ConfigDict, Field, field_validator

from ..avatar.animator import FPS
from ..llm.base import check_inline_params
from ..pipeline.events import (
    TurnCancelled,
    TurnChunk,
    TurnDropped,
    TurnEvent,
    TurnFailed,
    TurnFinished,
    TurnStarted,
    TurnToolCall,
)
from ..speech.audio import read_wav
from .base import Rejected
from .text import ID_MAX_LENGTH

# Metadata that sets the session's speech speed: ours, and AIAvatarKit's session-data name.
SPEED_KEYS = ("speech_speed", "tts_speed")
RESPONSE_KEYS = (
    "type",
    "session_id",
    "user_id",
    "context_id",
    "transaction_id",
    "text",
    "voice_text",
    "language",
    "control_tags",
    "avatar_control_request",
    "audio_data",
    "metadata",
    "structured_content",
)


# Raw-PCM slices on /ws: below a few milliseconds of audio a reply becomes tens of thousands of
# frames; above a megabyte a slice is larger than most clients' frame limit.
MIN_AUDIO_CHUNK_BYTES = 1024
MAX_BARGE_IN_SECONDS = 10  # seconds of speech before a barge-in stops the reply (/ws)
MAX_AUDIO_CHUNK_BYTES = 1024 * 1024


class AIAvatarRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    type: str
    session_id: str | None = Field(None, max_length=ID_MAX_LENGTH)
    user_id: str | None = Field(None, max_length=ID_MAX_LENGTH)
    context_id: str | None = None
    text: str | None = None
    audio_data: str | None = None
    files: list[dict[str, str]] | None = None
    system_prompt_params: dict[str, Any] | None = None
    allow_merge: bool = True
    wait_in_queue: bool = False
    metadata: dict[str, Any] | None = None

    @field_validator("files")
    @classmethod
    def _files_have_urls(cls, files: list[dict[str, str]] | None) -> list[dict[str, str]] | None:
        for file in files or []:
            url = file.get("url", "")
            if not url.startswith(("http://", "https://", "data:")):
                raise ValueError("each file needs a 'url' that is an http(s) or data: URL")
        return files

    @field_validator("context_id")
    @classmethod
    def _context_id_is_uuid(cls, context_id: str | None) -> str | None:
        if context_id:
            try:
                uuid.UUID(context_id)
            except ValueError as exc:
                raise ValueError("context_id must be a UUID issued by this server") from exc
        return context_id or None

    @field_validator("audio_data")
    @classmethod
    def _audio_is_base64(cls, audio: str | None) -> str | None:
        if audio:
            try:
                base64.b64decode(audio, validate=True)
            except (binascii.Error, ValueError) as exc:
                raise ValueError("audio_data is not valid base64") from exc
        return audio or None

    @field_validator("metadata")
    @classmethod
    def _speed_in_range(cls, metadata: dict[str, Any] | None) -> dict[str, Any] | None:
        for name in SPEED_KEYS:
            speed = (metadata or {}).get(name)
            if speed is not None and (
                isinstance(speed, bool)
                or not isinstance(speed, int | float)
                or not 0.25 <= speed <= 4
            ):
                raise ValueError(f"metadata.{name} must be a number from 0.25 to 4")
        return metadata

    @field_validator("metadata")
    @classmethod
    def _audio_chunk_size_in_range(cls, metadata: dict[str, Any] | None) -> dict[str, Any] | None:
        size = (metadata or {}).get("response_audio_chunk_size")
        if size is not None and (
            isinstance(size, bool)
            or not isinstance(size, int)
            or not (size == 0 or MIN_AUDIO_CHUNK_BYTES <= size <= MAX_AUDIO_CHUNK_BYTES)
        ):
            raise ValueError(
                "metadata.response_audio_chunk_size must be 0 (one WAV per chunk) or an integer "
                f"from {MIN_AUDIO_CHUNK_BYTES} to {MAX_AUDIO_CHUNK_BYTES} (bytes of PCM)"
            )
        return metadata

    @field_validator("metadata")
    @classmethod
    def _barge_in_seconds_in_range(cls, metadata: dict[str, Any] | None) -> dict[str, Any] | None:
        seconds = (metadata or {}).get("barge_in_seconds")
        if seconds is not None and (
            isinstance(seconds, bool)
            or not isinstance(seconds, int | float)
            or not 0 <= seconds <= MAX_BARGE_IN_SECONDS
        ):
            raise ValueError(
                "metadata.barge_in_seconds must be a number of seconds from 0 to "
                f"{MAX_BARGE_IN_SECONDS}"
            )
        return metadata

    def audio(self) -> bytes | None:
        return base64.b64decode(self.audio_data) if self.audio_data else None

    @field_validator("metadata")
    @classmethod
    def _inline_params_allowed(cls, metadata: dict[str, Any] | None) -> dict[str, Any] | None:
        params = (metadata or {}).get("inline_llm_params")
        if params is not None:
            if not isinstance(params, dict):
                raise ValueError("metadata.inline_llm_params must be an object")
            check_inline_params(params)
        return metadata

    def llm_params(self) -> dict[str, Any]:
        """This request's own LLM parameters, sent as `metadata.inline_llm_params`."""
        return dict((self.metadata or {}).get("inline_llm_params") or {})

    def avatar_frames(self) -> bool:
        """Whether spoken chunks carry face frames (`metadata.avatar_frames: true`)."""
        return (self.metadata or {}).get("avatar_frames") is True

    def speech_speed(self) -> float | None:
        """The session's TTS speed from now on, sent as `metadata.speech_speed` or, as in
        AIAvatarKit's session data, `metadata.tts_speed` (0.25 to 4)."""
        return speech_speed(self.metadata)


def _hook_metadata(event: TurnStarted) -> dict[str, Any]:
    """The speech-to-text hooks' metadata, for the turns whose hooks gave some."""
    found = {
        "preprocess_metadata": event.preprocess_metadata,
        "postprocess_metadata": event.postprocess_metadata,
    }
    return {key: value for key, value in found.items() if value is not None}


def speech_speed(metadata: dict[str, Any] | None) -> float | None:
    """The speed a request's (validated) metadata sets, if any."""
    speeds = [(metadata or {}).get(name) for name in SPEED_KEYS]
    return next((float(s) for s in speeds if s is not None), None)


def validation_errors(exc: Any) -> list[dict[str, Any]]:
    """Pydantic errors in FastAPI's `detail` shape, without echoing the (possibly huge) input."""
    return [
        {"loc": ["body", *error["loc"]], "msg": error["msg"], "type": error["type"]}
        for error in exc.errors(include_url=False, include_input=False, include_context=False)
    ]


# Errors FastAPI itself raises in AIAvatarKit carry `detail`; its own handlers answer `error`.
_DETAIL_STATUSES = frozenset({401, 404, 405, 413, 429})


def error_response(rejected: Rejected) -> JsonResponse:
    """A refused request in AIAvatarKit's shapes: the exact body when the wire dictates one, a
    FastAPI validation list for 422, `detail` for what FastAPI raises, else `error`."""
    if rejected.body is not None:
        body = rejected.body
    elif rejected.status == 422:
        body = {"detail": [{"loc": ["body"], "msg": rejected.message, "type": rejected.code}]}
    elif rejected.status in _DETAIL_STATUSES:
        body = {"detail": rejected.message}
    else:
        body = {"error": rejected.message}
    return JsonResponse(body, status=rejected.status, headers=rejected.headers())


def envelope(type_: str, *, session_id: str | None, user_id: str | None, **fields: Any) -> str:
    """One response as compact JSON with every key present (AIAvatarKit's byte shape)."""
    values = {"type": type_, "session_id": session_id, "user_id": user_id, **fields}
    return json.dumps(
        {key: values.get(key) for key in RESPONSE_KEYS}, ensure_ascii=False, separators=(",", ":")
    )


def error_envelope(
    message: str,
    *,
    session_id: str | None,
    user_id: str | None,
    context_id: str | None,
    transaction_id: str | None = None,
) -> str:
    """The `error` response that ends a turn, over SSE and the WebSocket alike."""
    return envelope(
        "error",
        session_id=session_id,
        user_id=user_id,
        context_id=context_id,
        transaction_id=transaction_id,
        metadata={"error": message},
    )


def _audio_data(audio: bytes | None) -> str | None:
    """Base64 WAV; "" for a sentence without speech; null when the server does no TTS."""
    return None if audio is None else base64.b64encode(audio).decode()


def _chunk_fields(chunk: TurnChunk, audio_data: str | None) -> dict[str, Any]:
    face = {"avatar_frames": {"fps": FPS, "frames": chunk.face}} if chunk.face is not None else {}
    return {
        "context_id": str(chunk.context_id) if chunk.context_id else None,
        "text": chunk.text,
        "voice_text": chunk.voice_text,
        "language": chunk.language,
        "control_tags": chunk.control_tags,
        "avatar_control_request": chunk.avatar_control.as_dict(),
        "audio_data": audio_data,
        "metadata": {
            "is_first_chunk": chunk.is_first,
            "is_guardrail_triggered": bool(chunk.guardrail),
            **face,
        },
    }


def pcm_chunk_envelopes(
    chunk: TurnChunk,
    *,
    session_id: str,
    user_id: str | None,
    slice_bytes: int,
    transaction_id: str | None = None,
) -> Iterator[str]:
    """A chunk in the WebSocket's raw-PCM mode: a header with the text fields, no audio and
    `pcm_format`, then the WAV's samples in slices of `slice_bytes`. A chunk without speech goes
    out whole, as in WAV mode (docs/wire-protocols.md#realtime-voice-ws)."""
    if not chunk.audio:
        yield event_envelope(
            chunk, session_id=session_id, user_id=user_id, transaction_id=transaction_id
        )
        return
    wav = read_wav(chunk.audio)
    pcm_format = {"sample_rate": wav.sample_rate, "channels": wav.channels, "sample_width": 2}
    header = _chunk_fields(chunk, None)
    header["metadata"]["pcm_format"] = pcm_format
    header["transaction_id"] = transaction_id
    yield envelope("chunk", session_id=session_id, user_id=user_id, **header)
    for start in range(0, len(wav.pcm), slice_bytes):
        yield envelope(
            "chunk",
            session_id=session_id,
            user_id=user_id,
            context_id=header["context_id"],
            transaction_id=transaction_id,
            audio_data=base64.b64encode(wav.pcm[start : start + slice_bytes]).decode(),
            metadata={"pcm_format": pcm_format},
        )


def event_envelope(
    event: TurnEvent, *, session_id: str, user_id: str | None, transaction_id: str | None = None
) -> str:
    """A turn's event as AIAvatarKit sends it; `transaction_id` names the turn (its record's
    id), on every response of that turn."""
    ids = {"session_id": session_id, "user_id": user_id, "transaction_id": transaction_id}
    context_id = str(event.context_id) if event.context_id else None
    match event:
        case TurnStarted():
            return envelope(
                "start",
                **ids,
                context_id=context_id,
                metadata={
                    "request_text": event.request_text,
                    "recognized_text": event.recognized_text,
                    **_hook_metadata(event),
                },
            )
        case TurnChunk():
            return envelope("chunk", **ids, **_chunk_fields(event, _audio_data(event.audio)))
        case TurnToolCall():
            call: dict[str, Any] = {
                "id": event.call_id,
                "name": event.name,
                "arguments": event.arguments,
            }
            if event.result is not None:
                call["result"] = {"data": event.result.data, "is_final": event.result.is_final}
            return envelope("tool_call", **ids, context_id=context_id, metadata={"tool_call": call})
        case TurnFinished():
            return envelope(
                "vision" if event.vision_source else "final",
                **ids,
                context_id=context_id,
                text=event.text,
                voice_text=event.voice_text,
                metadata=(
                    {"source": event.vision_source}
                    if event.vision_source
                    else {"interrupted": True}
                    if event.interrupted
                    else {}
                ),
            )
        case TurnCancelled():
            return envelope("cancelled", **ids, context_id=context_id)
        case TurnDropped():
            return envelope(
                "canceled", **ids, context_id=context_id, metadata={"reason": event.reason}
            )
        case TurnFailed():
            return error_envelope(event.error, **ids, context_id=context_id)
    raise TypeError(f"Unknown turn event {event!r}")
