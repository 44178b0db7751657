"""Writing memories: keys, turns, knowledge and diaries.

Plain synchronous ORM functions, used by the signal receivers, the Celery tasks and the
ChatMemory API alike. Writing never embeds: a new or changed row is left pending and the
memory tick embeds it (memory/tasks.py), so no write waits for the model and a failing
model loses nothing.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from django.db import transaction
from django.utils import timezone

from characters.models import Character
from conversations.history import find_end_user, resolve_end_user
from conversations.models import EndUser

from .models import MemoryItem

# What ChatMemory clients (AIAvatarKit's MemoryClient) call people: the id they send to /chat,
# which admission files under this channel.
CLIENT_CHANNEL = "http"


def user_key(end_user: EndUser, character: Character) -> str:
    return f"{end_user.id}_{character.slug}"


def character_key(character: Character) -> str:
    return character.slug


@dataclass(frozen=True)
class Owner:
    """Whom a ChatMemory key names in a tenant: a character's diaries (no end user), one end
    user's memories with one character, or neither (an opaque key, kept as sent)."""

    key: str
    character: Character | None = None
    end_user: EndUser | None = None


def resolve_key(tenant_id: int, key: str, *, create: bool = False) -> Owner:
    """The owner behind `key` ("<user>_<character slug>" or "<character slug>").

    The user part is an end user's id or the id a client uses on /chat; with `create`, an
    unknown one becomes a new end user, as /chat would make it. The canonical key of a known
    person is "<end user id>_<slug>", so both spellings reach the same memories.
    """
    characters = Character.objects.filter(tenant_id=tenant_id)
    exact = characters.filter(slug=key).first()
    if exact is not None:
        return Owner(character_key(exact), exact)
    # Slugs may hold "_" too: try every split, longest slug first.
    for cut in (i for i, c in enumerate(key) if c == "_"):
        user_part, slug = key[:cut], key[cut + 1 :]
        if not user_part or not slug:
            continue
        character = characters.filter(slug=slug).first()
        if character is None:
            continue
        end_user = _end_user(tenant_id, user_part, create)
        if end_user is None:
            return Owner(key, character)
        return Owner(user_key(end_user, character), character, end_user)
    return Owner(key)


def _end_user(tenant_id: int, user_part: str, create: bool) -> EndUser | None:
    try:
        by_id = EndUser.objects.filter(tenant_id=tenant_id, pk=uuid.UUID(user_part)).first()
    except ValueError:
        by_id = None
    if by_id is not None:
        return by_id
    if create:
        return resolve_end_user(tenant_id, CLIENT_CHANNEL, user_part)
    return find_end_user(tenant_id, CLIENT_CHANNEL, user_part)


def add_turn(
    tenant_id: int,
    owner: Owner,
    *,
    user_text: str,
    reply: str,
    session_id: str = "",
    channel: str = "",
    occurred_at: datetime | None = None,
    source: dict[str, Any] | None = None,
    metadata: dict[str, Any] | None = None,
) -> MemoryItem:
    return MemoryItem.objects.create(
        tenant_id=tenant_id,
        kind=MemoryItem.Kind.TURN,
        key=owner.key,
        character=owner.character,
        end_user=owner.end_user,
        session_id=session_id,
        channel=channel,
        content=user_text,
        reply=reply,
        occurred_at=occurred_at or timezone.now(),
        source=source or {},
        metadata=metadata or {},
    )


def normalized_subject(subject: str) -> str:
    return " ".join(subject.casefold().split())[:200]


def upsert_knowledge(
    tenant_id: int,
    owner: Owner,
    subject: str,
    fact: str,
    *,
    source: dict[str, Any] | None = None,
    occurred_at: datetime | None = None,
) -> tuple[MemoryItem, bool]:
    """Store `fact` about `subject`; a fact already known on that subject is rewritten (its
    earlier wording kept in `source["previous"]`), never duplicated. Returns (row, created)."""
    subject = normalized_subject(subject)
    now = occurred_at or timezone.now()
    provenance = {**(source or {}), "at": now.isoformat()}
    with transaction.atomic():
        known = (
            MemoryItem.objects.select_for_update()
            .filter(tenant_id=tenant_id, key=owner.key, kind=MemoryItem.Kind.KNOWLEDGE)
            .filter(subject=subject)
            .first()
            if subject
            else None
        )
        if known is None:
            item = MemoryItem.objects.create(
                tenant_id=tenant_id,
                kind=MemoryItem.Kind.KNOWLEDGE,
                key=owner.key,
                character=owner.character,
                end_user=owner.end_user,
                subject=subject,
                content=fact,
                occurred_at=now,
                source=provenance,
            )
            return item, True
        if known.content.strip() == fact.strip():
            return known, False
        earlier = {k: v for k, v in known.source.items() if k != "previous"}
        previous = [*known.source.get("previous", []), {**earlier, "content": known.content}]
        known.content = fact
        known.occurred_at = now
        known.source = {**provenance, "previous": previous[-10:]}
        known.index_state = MemoryItem.Index.PENDING
        known.save()
        return known, False


def upsert_diary(
    tenant_id: int,
    owner: Owner,
    diary_date: date,
    content: str,
    *,
    metadata: dict[str, Any] | None = None,
    source: dict[str, Any] | None = None,
) -> MemoryItem:
    """One diary per key and date: a second write replaces the first and is re-embedded."""
    zone = owner.character.zone if owner.character else timezone.get_current_timezone()
    # Dated at the end of the character's day, when it was written about.
    occurred = datetime.combine(diary_date, datetime.max.time(), tzinfo=zone)
    item, _ = MemoryItem.objects.update_or_create(
        tenant_id=tenant_id,
        key=owner.key,
        kind=MemoryItem.Kind.DIARY,
        diary_date=diary_date,
        defaults={
            "character": owner.character,
            "content": content,
            "metadata": metadata or {},
            "source": source or {},
            "occurred_at": occurred,
            "index_state": MemoryItem.Index.PENDING,
        },
    )
    return item
