"""Shared context (docs/turn.md#shared-context): messages every conversation of a character
sees, whoever it is with. Staff add them in the admin or over REST, tools with `share`; the
turn's system prompt lists the character's latest ones, oldest first.

Retention is the character's: its `shared_context_size` latest messages, none older than
`shared_context_max_age_hours` (0: no age limit). Reading applies it; adding a message also
deletes what fell out of it, so the table stays small. Turns read the latest messages from the
tenant's cached configuration (avatarsite/tenants/config_cache.py): adding or deleting one
gives the tenant a new configuration version, so the next turn of any process sees it.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from asgiref.sync import sync_to_async
from django.db import transaction
from django.utils import timezone

from avatarsite.tenants.config_cache import cached
from characters.models import Character

from .models import SharedMessage

INTRO = (
    "Shared context: what everyone talking with you may know about (news, what you did), "
    "oldest first. Mention it when it fits the conversation."
)


def _oldest_kept(character: Character, now: datetime) -> datetime | None:
    hours = character.shared_context_max_age_hours
    return now - timedelta(hours=hours) if hours else None


def shared_messages(character: Character, now: datetime | None = None) -> list[SharedMessage]:
    """The messages the character's conversations see now, oldest first: the latest ones,
    read once per tenant configuration version (adding or deleting one changes it), then
    those older than the age limit left out."""
    if not character.shared_context_size:
        return []

    def read_latest() -> list[SharedMessage]:
        latest = SharedMessage.objects.filter(character=character).order_by("-created_at", "-id")
        return list(reversed(latest[: character.shared_context_size]))

    key = ("shared context", character.pk, character.shared_context_size)
    latest = cached(character.tenant_id, key, read_latest) or []
    oldest = _oldest_kept(character, now or timezone.now())
    return [m for m in latest if oldest is None or m.created_at >= oldest]


def section(messages: list[SharedMessage], character: Character) -> str:
    """The system prompt's part for `messages`, each with its time on the character's clock;
    "" for none."""
    if not messages:
        return ""
    when = [character.local_now(m.created_at) for m in messages]
    lines = [f"- ({at:%Y-%m-%d %H:%M}) {m.content}" for at, m in zip(when, messages, strict=True)]
    return "\n".join([INTRO, *lines])


def share(
    character: Character, content: str, source: str = SharedMessage.Source.STAFF
) -> SharedMessage:
    """Add a message to the character's shared context and delete what retention drops."""
    with transaction.atomic():
        message = SharedMessage.objects.create(
            tenant_id=character.tenant_id, character=character, content=content, source=source
        )
        prune(character)
    return message


def prune(character: Character) -> None:
    """Delete the character's shared messages that retention no longer keeps."""
    kept = SharedMessage.objects.filter(character=character).order_by("-created_at", "-id")
    dropped = SharedMessage.objects.filter(character=character).exclude(
        pk__in=kept.values("pk")[: character.shared_context_size]
    )
    if (oldest := _oldest_kept(character, timezone.now())) is not None:
        dropped = dropped | SharedMessage.objects.filter(character=character, created_at__lt=oldest)
    dropped.delete()


async def ashare(
    character: Character, content: str, source: str = SharedMessage.Source.TOOL
) -> SharedMessage:
    """`share` from async code (a tool's): by default the message counts as a tool's."""
    return await sync_to_async(share)(character, content, source)
