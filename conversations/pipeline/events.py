"""What goes into a turn and what comes out of it, independent of any wire format."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from characters.models import Character
from conversations.history import OpenedContext
from conversations.llm import Usage
from conversations.models import EndUser
from conversations.tools import ToolResult

from .tags import AvatarControl

if TYPE_CHECKING:
    from .turn import Prepared


@dataclass(slots=True)
class TurnRequest:
    """Built only by an admitted session (conversations/admission.py)."""

    character: Character
    end_user: EndUser
    channel: str
    session_id: str  # as the client named it
    session_key: str  # the admitted session: tenant, character, end user and session id
    context: OpenedContext  # the conversation this turn continues (or a fresh one)
    text: str = ""
    audio: bytes | None = None  # PCM16 mono 16 kHz, used when `text` is empty
    files: list[dict[str, str]] = field(default_factory=list)
    system_prompt_params: dict[str, Any] = field(default_factory=dict)
    llm_params: dict[str, Any] = field(default_factory=dict)  # inline_llm_params, checked
    speak: bool = True  # False for text-only channels (LINE, OpenAI and Dify APIs): no TTS
    allow_merge: bool = True  # may join the session's previous request (merge window)
    speech_speed: float | None = None  # this session's TTS speed; None: the character's
    face_frames: bool = False  # each spoken chunk also carries its avatar face frames
    # The turn record's id, known before the turn runs so a transport can name it (Dify's
    # message id, which feedback and stop requests refer to).
    turn_id: uuid.UUID = field(default_factory=uuid.uuid4)
    # A client that sends the whole conversation (OpenAI's "client keeps it" mode): its own
    # system text, added after the character's, and no history kept but the turn record.
    client_system: str = ""
    keep_history: bool = True
    # What the turn reads before it starts, when the transport read it in its admission hop
    # (`turn.prepare_now`), so the turn needs no trip of its own to the database thread.
    prepared: Prepared | None = None
    api_key_id: int | None = None  # the key the caller came with, for usage per key


@dataclass(slots=True)
class TurnStarted:
    context_id: uuid.UUID
    request_text: str  # what the LLM receives
    recognized_text: str  # what the user said
    # What the character's speech-to-text hooks reported about the audio, if they ran.
    preprocess_metadata: dict[str, Any] | None = None
    postprocess_metadata: dict[str, Any] | None = None


@dataclass(slots=True)
class TurnChunk:
    context_id: uuid.UUID | None  # None: spoken on an operator's behalf outside any conversation
    text: str  # raw, with control tags
    voice_text: str | None  # tags removed; None: shown but not spoken (outside voice tags)
    language: str | None
    control_tags: list[dict[str, Any]] | None
    avatar_control: AvatarControl
    is_first: bool
    # One complete WAV; b"" for a sentence with nothing to say; None when TTS is off.
    audio: bytes | None = None
    guardrail: str = ""  # the guardrail whose message this chunk is, if any
    speed: float | None = None  # the session's speech speed for this sentence; None: the voice's
    # With TurnRequest.face_frames: 52 ARKit weights per 1/30 s of `audio`, from its start.
    face: list[list[float]] | None = None


@dataclass(slots=True)
class TurnToolCall:
    """A tool call starting (no result yet), making progress, or done (`result.is_final`)."""

    context_id: uuid.UUID
    call_id: str
    name: str
    arguments: str  # JSON text as the model wrote it
    result: ToolResult | None = None


@dataclass(slots=True)
class TurnFinished:
    context_id: uuid.UUID | None
    text: str
    voice_text: str
    vision_source: str | None  # set when the reply asks for an image: the turn ends as `vision`
    interrupted: bool = False  # a newer request in the session cut the reply short
    usage: Usage | None = None  # tokens of all the turn's LLM calls, when the provider counts


@dataclass(slots=True)
class TurnCancelled:
    """A queued request dropped before it started, because a newer one interrupted."""

    context_id: uuid.UUID | None


@dataclass(slots=True)
class TurnDropped:
    """A turn given up before it started: the audio held no recognisable speech, or a request
    validator refused it (`reason`). Nothing is written to the history."""

    context_id: uuid.UUID
    reason: str


@dataclass(slots=True)
class TurnFailed:
    context_id: uuid.UUID | None
    error: str


TurnEvent = (
    TurnStarted | TurnChunk | TurnToolCall | TurnFinished | TurnFailed | TurnCancelled | TurnDropped
)
