"""How a webhook event reads in the admin: who sent it and what, from its raw JSON (kept
short; the event's own handling is in handling.py)."""

from __future__ import annotations

from typing import Any

# What a message without words shows as.
KINDS = {
    "image": "(image)",
    "video": "(video)",
    "audio": "(voice message)",
    "file": "(file)",
    "sticker": "(sticker)",
}
SHOWN_LENGTH = 500


def _object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def sender_of(raw: dict[str, Any]) -> str:
    """The LINE user behind the event, in a group or room too ("" when none is given)."""
    return str(_object(raw.get("source")).get("userId") or "")[:64]


def text_of(raw: dict[str, Any]) -> str:
    """What the event says: a message's text, a location's title and address, a postback's
    data, or what kind of thing it is."""
    kind = raw.get("type")
    if kind == "message":
        message = _object(raw.get("message"))
        sort = message.get("type")
        if sort == "text":
            shown = str(message.get("text", ""))
        elif sort == "location":
            place = [message.get("title"), message.get("address")]
            shown = "(location) " + ", ".join(str(p) for p in place if p)
        else:
            shown = KINDS.get(str(sort), f"({sort})")
    elif kind == "postback":
        shown = "(postback) " + str(_object(raw.get("postback")).get("data", ""))
    else:
        shown = f"({kind})"
    return shown[:SHOWN_LENGTH]
