"""Conversation history: which context a turn continues, and writing a finished turn.

These are plain synchronous ORM functions; the async pipeline calls each through one
`sync_to_async` hop so a turn costs two trips to the database thread, not one per query.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.contrib.contenttypes.fields import GenericForeignKey
from django.db import IntegrityError, connection, transaction
from django.db.models import Field, ForeignObjectRel, QuerySet

from characters.models import Character

from .llm import ChatMessage
from .models import ChannelIdentity, Context, EndUser, Message, TurnRecord


@dataclass(slots=True)
class OpenedContext:
    context_id: uuid.UUID
    history: list[ChatMessage]
    # A provider's own memory of the conversation; written back with the turn.
    provider_state: dict[str, Any] = field(default_factory=dict)


def _identities(tenant_id: int, channel: str, external_id: str) -> QuerySet[ChannelIdentity]:
    return ChannelIdentity.objects.select_related("end_user").filter(
        tenant_id=tenant_id, channel=channel, external_id=external_id
    )


def find_end_user(tenant_id: int, channel: str, external_id: str) -> EndUser | None:
    """The tenant's end user behind a channel's id, if there is one yet (ids are per tenant:
    two tenants' "u1" are two people)."""
    identity = _identities(tenant_id, channel, external_id).first()
    return identity.end_user if identity is not None else None


def resolve_end_user(tenant_id: int, channel: str, external_id: str) -> EndUser:
    """The tenant's end user behind a channel's id, created on first sight (safe under races)."""
    identities = _identities(tenant_id, channel, external_id)
    identity = identities.first()
    if identity is not None:
        return identity.end_user
    try:
        with transaction.atomic():
            end_user = EndUser.objects.create(tenant_id=tenant_id)
            ChannelIdentity.objects.create(
                tenant_id=tenant_id, channel=channel, external_id=external_id, end_user=end_user
            )
            return end_user
    except IntegrityError:
        # Another request created the identity first; use theirs.
        return identities.get().end_user


class UnknownContext(Exception):
    """The client sent a context id this server never issued to this end user and character
    (a foreign id is as unknown as a made-up one)."""


def new_end_user(tenant_id: int, channel: str) -> EndUser:
    """A user the server names: its channel id is its own UUID, so later requests find it."""
    with transaction.atomic():
        end_user = EndUser.objects.create(tenant_id=tenant_id)
        ChannelIdentity.objects.create(
            tenant_id=tenant_id, channel=channel, external_id=str(end_user.id), end_user=end_user
        )
    return end_user


def open_context(
    character: Character, end_user: EndUser | None, requested_id: uuid.UUID | None
) -> OpenedContext:
    """The conversation a turn continues: `requested_id` when it has live history, else new.

    Clients cannot pick ids: an id never issued to this end user for this character raises
    UnknownContext (an end user not created yet has none). An id that was issued but has no
    history (its first turn failed) or whose conversation expired gets a fresh id, so the
    client sees the restart instead of silently losing history under the old id.
    """
    if requested_id is None:
        return OpenedContext(uuid.uuid4(), [])
    if end_user is None:
        raise UnknownContext(requested_id)
    context = (
        Context.objects.select_related("character")
        .filter(id=requested_id, character=character, end_user=end_user)
        .first()
    )
    if context is None:
        issued = TurnRecord.objects.filter(
            context_id=requested_id, character=character, end_user=end_user
        ).exists()
        if not issued:
            raise UnknownContext(requested_id)
        return OpenedContext(uuid.uuid4(), [])
    if context.is_expired():
        return OpenedContext(uuid.uuid4(), [])
    return OpenedContext(context.id, _recent_history(context), dict(context.provider_state))


def refresh_context(
    character: Character, end_user: EndUser, opened: OpenedContext
) -> OpenedContext:
    """The same conversation with the history written since it was opened (a queued request
    sees the turn it waited for)."""
    if not Context.objects.filter(id=opened.context_id).exists():
        return opened
    return open_context(character, end_user, opened.context_id)


def latest_context_id(
    character: Character, end_user: EndUser | None, channel: str | None = None
) -> uuid.UUID | None:
    """The id of the user's latest conversation with the character (on `channel`, if given),
    for transports whose clients keep no conversation id (LINE, OpenAI-style APIs)."""
    if end_user is None:
        return None
    contexts = Context.objects.filter(character=character, end_user=end_user)
    if channel is not None:
        contexts = contexts.filter(channel=channel)
    return contexts.order_by("-updated_at").values_list("id", flat=True).first()


def _recent_history(context: Context) -> list[ChatMessage]:
    rows = list(
        context.messages.order_by("-position").values_list(
            "role", "content", "files", "tool_calls", "tool_call_id"
        )[: settings.CONTEXT_HISTORY_LIMIT]
    )
    rows.reverse()
    # A window that starts with a tool result or an assistant message confuses providers.
    while rows and rows[0][0] != Message.Role.USER:
        rows.pop(0)
    return [
        ChatMessage(role=r, content=c, files=f, tool_calls=t, tool_call_id=i)
        for r, c, f, t, i in rows
    ]


def save_turn(
    record: TurnRecord,
    end_user: EndUser,
    messages: list[ChatMessage] | None = None,
    provider_state: dict[str, Any] | None = None,
) -> None:
    """Store the turn's record and, for a completed turn, its messages, all or nothing.

    Three statements for a completed turn (besides what the record's own signals write): the
    record, the context's count raised (or the context created) in one upsert that returns the
    new count, and the messages in one bulk insert. Nothing is read first: the upsert locks the
    context's row until commit, so a concurrent turn of the same conversation waits there and
    then takes the positions after these."""
    with transaction.atomic():
        record.save(force_insert=True)
        if not messages:
            return
        context = Context(
            id=record.context_id,
            tenant_id=record.tenant_id,
            character_id=record.character_id,
            end_user=end_user,
            channel=record.channel,
            message_count=len(messages),
            provider_state=provider_state or {},
        )
        first = _count_messages(context) - len(messages)
        Message.objects.bulk_create(
            Message(
                tenant_id=record.tenant_id,
                context_id=record.context_id,
                position=first + offset,
                role=m.role,
                content=m.content,
                files=m.files,
                tool_calls=m.tool_calls,
                tool_call_id=m.tool_call_id,
                turn=record,
            )
            for offset, m in enumerate(messages)
        )


def _count_messages(context: Context) -> int:
    """Insert `context` or, when its id exists, add its `message_count` to the stored one and
    take its `updated_at` and `provider_state`; the stored count afterwards.

    Raw SQL because the ORM can neither upsert with an increment nor return what an update
    wrote. Every column's value is prepared by its field, so the row is what `save()` writes."""
    ops = connection.ops
    fields = Context._meta.concrete_fields
    columns = [ops.quote_name(_column(f)) for f in fields]
    values = [f.get_db_prep_save(f.pre_save(context, add=True), connection) for f in fields]
    table = ops.quote_name(Context._meta.db_table)
    key, count, updated, state = (
        ops.quote_name(_column(Context._meta.get_field(name)))
        for name in ("id", "message_count", "updated_at", "provider_state")
    )
    sql = (
        f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join(['%s'] * len(values))}) "
        f"ON CONFLICT ({key}) DO UPDATE SET {count} = {table}.{count} + EXCLUDED.{count}, "
        f"{updated} = EXCLUDED.{updated}, {state} = EXCLUDED.{state} RETURNING {count}"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, values)
        row = cursor.fetchone()
    return int(row[0])


def _column(field: Field[Any, Any] | ForeignObjectRel | GenericForeignKey) -> str:
    assert isinstance(field, Field) and field.column is not None, field
    return field.column
