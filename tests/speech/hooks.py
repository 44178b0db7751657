"""Speech-to-text hooks the tests name by dotted path (STT_HOOK_MODULES lists this module)."""

from __future__ import annotations

from typing import Any


async def speaker_gate(session_id: str, pcm: bytes) -> tuple[bytes, dict[str, Any]]:
    """A speaker gate in the shape AIAvatarKit users write: it lets the audio through and says
    who spoke; audio from nobody it knows (all zeros here) is dropped."""
    if not any(pcm):
        return b"", {"speaker": None}
    return pcm, {"speaker": "owner", "session_id": session_id}


async def normalise(
    session_id: str, text: str, pcm: bytes, metadata: dict[str, Any] | None
) -> tuple[str, dict[str, Any]]:
    """Text normalisation after recognition: full-width question marks, and a note of what the
    preprocessor said."""
    return text.replace("?", "？"), {"normalised": True, "speaker": (metadata or {}).get("speaker")}


def not_async(session_id: str, pcm: bytes) -> bytes:
    return pcm
