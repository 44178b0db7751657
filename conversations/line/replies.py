"""What a character's words look like on LINE: text bubbles within LINE's limits, images the
character shows, and the sender icon that follows its face."""

from __future__ import annotations

import logging
import re
from typing import Any

from linebot.v3.messaging import ImageMessage, Message, Sender, TextMessage

from characters.models import Character
from conversations.pipeline.tags import avatar_control, control_tags, voice_text

logger = logging.getLogger(__name__)

# LINE counts a text message's length in UTF-16 code units, up to 5,000, and takes at most
# five messages per reply or push request.
TEXT_LIMIT = 5000
MESSAGES_PER_REQUEST = 5
SENDER_NAME_LIMIT = 20
NEUTRAL_FACE = "neutral"

# Where a long text may be cut, best first: a line break, the end of a sentence, a space.
BREAKS = (re.compile(r"\n"), re.compile(r"[.!?。！？…](?=\s|$)|[。！？]"), re.compile(r"\s"))


def utf16_length(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def split_text(text: str, limit: int = TEXT_LIMIT) -> list[str]:
    """Pieces of at most `limit` UTF-16 units, cut at the best break in the second half of a
    piece (so no piece is cut absurdly short), else exactly at the limit."""
    pieces: list[str] = []
    rest = text.strip()
    while rest:
        if utf16_length(rest) <= limit:
            pieces.append(rest)
            break
        end = _fitting_prefix(rest, limit)
        cut = end
        for pattern in BREAKS:
            ends = [m.end() for m in pattern.finditer(rest, end // 2, end)]
            if ends:
                cut = ends[-1]
                break
        pieces.append(rest[:cut].strip())
        rest = rest[cut:].strip()
    return [piece for piece in pieces if piece]


def _fitting_prefix(text: str, limit: int) -> int:
    """How many characters of `text` fit in `limit` UTF-16 units (never half a surrogate pair)."""
    units = 0
    for index, char in enumerate(text):
        units += 2 if ord(char) > 0xFFFF else 1
        if units > limit:
            return index
    return len(text)


def batches(messages: list[Message]) -> list[list[Message]]:
    """Requests' worth of messages, in order."""
    return [
        messages[i : i + MESSAGES_PER_REQUEST]
        for i in range(0, len(messages), MESSAGES_PER_REQUEST)
    ]


def _sender(character: Character, face: str | None) -> Sender | None:
    icons = character.face_icons or {}
    icon = icons.get(face or NEUTRAL_FACE) or icons.get(NEUTRAL_FACE)
    if not icon:
        return None
    name = character.name if len(character.name) <= SENDER_NAME_LIMIT else None
    return Sender(name=name, iconUrl=icon)


def _images(character: Character, text: str) -> list[dict[str, Any]]:
    found = []
    for tag in control_tags(text, character.artifact_catalog) or ():
        attributes = tag["attributes"]
        if tag["name"] != "artifact" or attributes.get("type") != "image":
            continue
        src = str(attributes.get("src", ""))
        if not src.startswith("https://"):
            # LINE fetches images itself and only over HTTPS.
            logger.warning("character %s showed an image LINE cannot fetch: %r", character, src)
            continue
        found.append({"src": src, "preview": str(attributes.get("preview") or src)})
    return found


def compose(character: Character, text: str, spoken: str | None = None) -> list[Message]:
    """LINE messages for what the character says: `text` is raw (with control tags), `spoken`
    the same without them (the turn's voice_text, whose sentence joining follows the
    language); each message carries the icon of the reply's first face."""
    sender = _sender(character, avatar_control(text).face_name)
    readable = voice_text(text) if spoken is None else spoken
    messages: list[Message] = [
        TextMessage(text=piece, sender=sender) for piece in split_text(readable)
    ]
    messages.extend(
        ImageMessage(
            originalContentUrl=image["src"], previewImageUrl=image["preview"], sender=sender
        )
        for image in _images(character, text)
    )
    return messages


def verbatim(text: str) -> list[Message]:
    """An operator's message, exactly as written: no tags read, no icon, one bubble."""
    return [TextMessage(text=text)]
