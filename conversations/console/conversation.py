"""The conversation view in the admin: one conversation's turns as a chat, with what each turn
did (tool calls, guardrails, timings, tokens, the end user's feedback) and, when its character
records audio, the request and the answer to listen to (conversations/recordings.py).

A conversation is its turn records with one context id, failed first turns included (they
have no Context row). Staff see a conversation only when its turns are their tenant's: any
other id, another tenant's or made up, answers 404. The audio is streamed from the storage by
`audio`, behind the same check, so recordings have no public URL.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass, field
from typing import Any

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.http.response import HttpResponseBase
from django.template.response import TemplateResponse
from django.urls import reverse

from characters.times import with_zone

from ..models import Context, Message, TurnRecord
from .figures import PHASES

# Which of a turn's recordings an audio URL names.
AUDIO_FIELDS = {"request": "request_audio", "response": "response_audio"}


@dataclass
class ToolUse:
    name: str
    arguments: str
    result: str | None = None


@dataclass
class TurnView:
    """One turn as the conversation page shows it."""

    record: TurnRecord
    started: str
    timings: list[tuple[str, float]]
    tools: list[ToolUse] = field(default_factory=list)
    request_audio_url: str = ""
    response_audio_url: str = ""


def _pretty(arguments: str) -> str:
    try:
        return json.dumps(json.loads(arguments), ensure_ascii=False)
    except ValueError:
        return arguments


def _tools(messages: list[Message]) -> list[ToolUse]:
    """The turn's tool calls, each with its result, in the order they were made."""
    uses: dict[str, ToolUse] = {}
    for message in messages:
        for call in message.tool_calls:
            uses[str(call.get("id"))] = ToolUse(
                str(call.get("name")), _pretty(str(call.get("arguments", "")))
            )
        if message.role == Message.Role.TOOL and message.tool_call_id in uses:
            uses[message.tool_call_id].result = message.content
    return list(uses.values())


def _audio_url(record: TurnRecord, which: str) -> str:
    if not getattr(record, AUDIO_FIELDS[which]):
        return ""
    return reverse("admin:conversations_turnrecord_audio", args=[record.pk, which])


def turn_view(record: TurnRecord) -> TurnView:
    timings = [
        (label, value) for column, label in PHASES if (value := getattr(record, column)) is not None
    ]
    messages = sorted(record.messages.all(), key=lambda m: m.position)
    return TurnView(
        record=record,
        started=str(with_zone(record.started_at, record.character.zone)),
        timings=timings,
        tools=_tools(messages),
        request_audio_url=_audio_url(record, "request"),
        response_audio_url=_audio_url(record, "response"),
    )


def conversation(
    request: HttpRequest, model_admin: admin.ModelAdmin[Any], context_id: uuid.UUID
) -> HttpResponse:
    """The conversation `context_id` names, if its turns are the user's to see."""
    if not model_admin.has_view_permission(request):
        raise PermissionDenied
    records = list(
        model_admin.get_queryset(request)
        .filter(context_id=context_id)
        .select_related("character", "end_user")
        .prefetch_related("messages")
        .order_by("started_at")
    )
    if not records:
        raise Http404
    character = records[0].character
    context = Context.objects.filter(id=context_id, tenant_id=character.tenant_id).first()
    return TemplateResponse(
        request,
        "admin/conversations/conversation.html",
        {
            **model_admin.admin_site.each_context(request),
            "title": f"Conversation with {character}",
            "opts": model_admin.model._meta,
            "character": character,
            "end_user": records[0].end_user,
            "context": context,
            "context_id": context_id,
            "zone_name": character.zone.key,
            "turns": [turn_view(record) for record in records],
        },
    )


def audio(
    request: HttpRequest, model_admin: admin.ModelAdmin[Any], object_id: str, which: str
) -> HttpResponseBase:
    """A turn's recording, streamed from the storage to staff who may see the turn; a single
    byte range when asked for one (Safari plays media only through ranges)."""
    record = model_admin.get_object(request, object_id)  # another tenant's: None
    if record is None or which not in AUDIO_FIELDS:
        raise Http404
    if not model_admin.has_view_permission(request, record):
        raise PermissionDenied
    recording = getattr(record, AUDIO_FIELDS[which])
    if not recording:
        raise Http404
    size = recording.size
    wanted = request.headers.get("Range")
    response: HttpResponseBase
    if wanted is None:
        response = FileResponse(recording.open("rb"), content_type="audio/wav")
    elif (span := byte_range(wanted, size)) is None:
        response = HttpResponse(status=416, headers={"Content-Range": f"bytes */{size}"})
    else:
        start, end = span
        with recording.open("rb") as file:
            file.seek(start)
            part = file.read(end - start + 1)
        response = HttpResponse(part, status=206, content_type="audio/wav")
        response["Content-Range"] = f"bytes {start}-{end}/{size}"
    response["Accept-Ranges"] = "bytes"
    response["Cache-Control"] = "private, max-age=3600"
    return response


RANGE = re.compile(r"bytes=(\d*)-(\d*)")


def byte_range(header: str, size: int) -> tuple[int, int] | None:
    """The first and last byte of a single `Range: bytes=a-b` (or `a-`, or `-n`: the last n)
    within `size` bytes; None when it is not one the file can satisfy."""
    found = RANGE.fullmatch(header.strip())
    if found is None or found.groups() == ("", ""):
        return None
    first, last = found.groups()
    if not first:  # the last n bytes
        return (max(size - int(last), 0), size - 1) if int(last) and size else None
    start, end = int(first), min(int(last) if last else size - 1, size - 1)
    return (start, end) if start <= end else None
