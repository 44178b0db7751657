"""One `/ws` socket's state, in one typed object: who is calling, the session `start` admitted,
the conversation its turns continue and the options the client chose."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings

from characters.models import Character
from conversations.admission import AdmittedSession, Caller
from conversations.rate_limits import StreamSlot

from .listening import Listener, barge_in_seconds


def _pcm_slice_bytes() -> int:
    return int(settings.REALTIME_AUDIO_CHUNK_BYTES)


@dataclass(slots=True)
class Connection:
    caller: Caller
    character: Character
    stream_slot: StreamSlot  # one of the key's concurrent streams, released on disconnect
    session: AdmittedSession | None = None  # once `start` has admitted it
    session_id: str | None = None
    user_id: str | None = None
    context_id: uuid.UUID | None = None  # the conversation the next turn continues
    # AIAvatarKit's barge_in_enabled: unset counts as on; only an explicit false turns it off.
    barge_in: bool | None = None
    barge_in_seconds: float | None = None  # None: REALTIME_BARGE_IN_SECONDS
    send_voiced: bool = False
    send_partial: bool = False
    avatar_frames: bool = False  # spoken chunks carry their face frames
    pcm_slice_bytes: int = field(default_factory=_pcm_slice_bytes)  # 0: chunks carry WAVs

    def configure(self, metadata: dict[str, Any], listener: Listener | None) -> None:
        """Apply the options a `start`, `config` or `invoke` message carries."""
        if isinstance(metadata.get("barge_in_enabled"), bool):
            self.barge_in = metadata["barge_in_enabled"]
        if isinstance(seconds := metadata.get("barge_in_seconds"), int | float):
            self.barge_in_seconds = float(seconds)  # range checked when the message was parsed
        if isinstance(metadata.get("send_voiced"), bool):
            self.send_voiced = metadata["send_voiced"]
        if isinstance(metadata.get("send_partial_text"), bool):
            self.send_partial = metadata["send_partial_text"]
        if isinstance(metadata.get("avatar_frames"), bool):
            self.avatar_frames = metadata["avatar_frames"]
        db = metadata.get("volume_db_threshold")
        if listener is not None and isinstance(db, int | float) and db:
            listener.set_volume_threshold(float(db))

    @property
    def barges_in(self) -> bool:
        """The user's speech may stop a reply and carry over into the next turn."""
        return self.barge_in is not False

    @property
    def barge_in_after(self) -> float:
        """Seconds of speech that stop a reply being spoken: the session's choice, else the
        character's, else the server's."""
        if self.barge_in_seconds is not None:
            return self.barge_in_seconds
        return barge_in_seconds(self.character)

    def continue_in(self, context_id: str | None) -> None:
        """The client names the conversation to continue (already checked to be a UUID)."""
        if context_id:
            self.context_id = uuid.UUID(context_id)
