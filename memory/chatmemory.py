"""ChatMemory's HTTP API under /memory/, so AIAvatarKit's `MemoryClient` (base URL
`<server>/memory`) and other ChatMemory clients work against our memory unchanged.

Same paths, request and response shapes, and FastAPI's error shapes (422 with a `detail` list
for a malformed request, `{"detail": "..."}` otherwise). Differences, on purpose:
- every request needs one of the tenant's API keys (`Authorization: Bearer`) and reaches only
  that tenant's memories (a key limited to some characters, only theirs); an unknown key and
  another tenant's are the same: nothing;
- a DELETE without any filter is refused (400) instead of deleting everything;
- `/search` answers with the memories found (no second LLM call phrases them); a search for a
  person's key also covers the character's diaries;
- session switches are not summarised on the spot: every conversation is summarised once it
  goes quiet (memory tick), or on `POST /summary/create`.

Over ~400 lines on purpose: one module per foreign API, as the other transports are, so the
whole of ChatMemory's surface and its error shapes read in one place.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from datetime import timezone as dt_timezone
from functools import wraps
from typing import Annotated, Any, TypeVar

from django.db.models import Max, QuerySet
from django.http import HttpRequest, JsonResponse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from pydantic import BaseModel, Field, ValidationError

from conversations.admission import Caller, identify
from conversations.transports.aiavatar_wire import error_response, validation_errors
from conversations.transports.base import Rejected, read_json

from .models import MemoryItem
from .search import Window, describe, search
from .store import Owner, add_turn, character_key, resolve_key, upsert_diary
from .tasks import summarise_session

MAX_ROWS = 1000
# NUL and lone surrogates never get this far: the wire text rule refuses them in bodies
# (read_json) and in query strings (middleware).
Text = str
Key = Annotated[str, Field(min_length=1, max_length=255)]
Short = Annotated[str, Field(max_length=32)]


class Message(BaseModel):
    role: Annotated[str, Field(min_length=1, max_length=32)]
    content: Text
    created_at: datetime | None = None
    metadata: dict[str, Any] = {}


class AddHistory(BaseModel):
    user_id: Key
    session_id: Key
    messages: list[Message] = Field(max_length=1000)
    channel: Short | None = None


class AddKnowledge(BaseModel):
    user_id: Key
    knowledge: Annotated[str, Field(min_length=1)]


class UpsertDiary(BaseModel):
    user_id: Key
    diary_date: date
    content: Text
    metadata: dict[str, Any] = {}
    created_at: datetime | None = None


class Search(BaseModel):
    user_id: Key | list[Key] = Field(min_length=1)
    query: Text
    top_k: int = Field(5, ge=1, le=100)
    search_content: bool = False
    include_retrieved_data: bool = False
    since: date | None = None
    until: date | None = None
    utc_offset_hours: float = Field(0.0, ge=-14, le=14)


class Filters(BaseModel):
    """Query parameters of the reading and deleting endpoints (each uses some)."""

    user_id: Key | None = None
    session_id: Key | None = None
    channel: Short | None = None
    within_seconds: int = Field(3600, ge=0)
    since: datetime | None = None
    until: datetime | None = None
    limit: int | None = Field(None, ge=1, le=MAX_ROWS)
    knowledge_id: str | None = None
    diary_date: date | None = None
    overwrite: bool = False
    max_count: int = Field(10, ge=1, le=100)


Body = TypeVar("Body", bound=BaseModel)
View = Callable[[HttpRequest, Caller], dict[str, Any]]


def endpoint(**methods: View) -> Callable[[HttpRequest], JsonResponse]:
    """One path's view: the credential, then the method's handler; errors in FastAPI's
    shapes."""

    @csrf_exempt
    @wraps(next(iter(methods.values())))
    def view(request: HttpRequest) -> JsonResponse:
        handler = methods.get(request.method or "")
        if handler is None:
            return JsonResponse({"detail": "Method Not Allowed"}, status=405)
        try:
            caller = identify(request.headers, browser=False)
            return JsonResponse(handler(request, caller))
        except ValidationError as exc:
            root = "body" if request.method == "POST" and request.body else "query"
            errors = [{**e, "loc": [root, *e["loc"][1:]]} for e in validation_errors(exc)]
            return JsonResponse({"detail": errors}, status=422)
        except Rejected as rejected:
            if rejected.status == 422:
                return error_response(rejected)
            # FastAPI's HTTPException shape, which ChatMemory answers every other error in.
            return JsonResponse(
                {"detail": rejected.message}, status=rejected.status, headers=rejected.headers()
            )

    return view


def _body(request: HttpRequest, model: type[Body]) -> Body:
    return model.model_validate(read_json(request))


def _query(request: HttpRequest) -> Filters:
    return Filters.model_validate(request.GET.dict())


def _owner(caller: Caller, key: str, *, create: bool = False) -> Owner:
    """Whom `key` names for this caller; a character the caller's key does not reach (or, for
    a key limited to characters, none at all) is refused as unknown."""
    owner = resolve_key(caller.tenant_id, key, create=create)
    if caller.character_ids is not None and (
        owner.character is None or owner.character.pk not in caller.character_ids
    ):
        raise Rejected(404, f"Unknown user_id {key!r}.", code="unknown_user")
    return owner


def _rows(caller: Caller, kind: str, filters: Filters) -> QuerySet[MemoryItem]:
    rows = MemoryItem.objects.filter(tenant_id=caller.tenant_id, kind=kind)
    if filters.user_id is not None:
        rows = rows.filter(key=_owner(caller, filters.user_id).key)
    elif caller.character_ids is not None:
        rows = rows.filter(character_id__in=caller.character_ids)
    if filters.session_id is not None:
        rows = rows.filter(session_id=filters.session_id)
    return rows


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat()


def _deleted(rows: QuerySet[MemoryItem], what: str) -> dict[str, Any]:
    rows.delete()
    return {"status": f"{what} deleted"}


def _need(filters: Filters, *names: str) -> None:
    if all(getattr(filters, name) is None for name in names):
        raise Rejected(400, f"Give at least one of: {', '.join(names)}.", code="no_filter")


# History


def post_history(request: HttpRequest, caller: Caller) -> dict[str, Any]:
    body = _body(request, AddHistory)
    owner = _owner(caller, body.user_id, create=True)
    pending: Message | None = None

    def keep(said: Message | None, reply: Message | None) -> None:
        first = said or reply
        assert first is not None
        add_turn(
            caller.tenant_id,
            owner,
            user_text=said.content if said else "",
            reply=reply.content if reply else "",
            session_id=body.session_id,
            channel=body.channel or "",
            occurred_at=first.created_at or timezone.now(),
            source={"api": "chatmemory", "channel": body.channel or ""},
            metadata={**first.metadata, **({"role": said.role} if said else {})},
        )

    # A turn is what someone said and the assistant's answer to it.
    for message in body.messages:
        if message.role == "assistant":
            keep(pending, message)
            pending = None
        else:
            if pending is not None:
                keep(pending, None)
            pending = message
    if pending is not None:
        keep(pending, None)
    return {"status": "ok"}


def _messages(turn: MemoryItem) -> list[dict[str, Any]]:
    common = {
        "created_at": _iso(turn.occurred_at),
        "user_id": turn.key,
        "session_id": turn.session_id,
        "channel": turn.channel or None,
    }
    said = turn.metadata.get("role", "user")
    messages = []
    if turn.content or not turn.reply:
        messages.append({**common, "role": said, "content": turn.content, "metadata": {}})
    if turn.reply:
        messages.append({**common, "role": "assistant", "content": turn.reply, "metadata": {}})
    return messages


def get_history(request: HttpRequest, caller: Caller) -> dict[str, Any]:
    filters = _query(request)
    _need(filters, "user_id", "session_id")
    rows = _rows(caller, MemoryItem.Kind.TURN, filters)
    if filters.channel is not None:
        rows = rows.filter(channel=filters.channel)
    if filters.since or filters.until:
        if filters.since:
            rows = rows.filter(occurred_at__gte=_aware(filters.since))
        if filters.until:
            rows = rows.filter(occurred_at__lt=_aware(filters.until))
    elif filters.within_seconds:
        rows = rows.filter(
            occurred_at__gte=timezone.now() - timedelta(seconds=filters.within_seconds)
        )
    latest = list(rows.order_by("-occurred_at")[:MAX_ROWS])
    return {"messages": [m for turn in reversed(latest) for m in _messages(turn)][-MAX_ROWS:]}


def _aware(moment: datetime) -> datetime:
    return moment if timezone.is_aware(moment) else moment.replace(tzinfo=UTC)


def delete_history(request: HttpRequest, caller: Caller) -> dict[str, Any]:
    filters = _query(request)
    _need(filters, "user_id", "session_id", "channel")
    rows = _rows(caller, MemoryItem.Kind.TURN, filters)
    if filters.channel is not None:
        rows = rows.filter(channel=filters.channel)
    return _deleted(rows, "history")


def get_session_ids(request: HttpRequest, caller: Caller) -> dict[str, Any]:
    filters = _query(request)
    _need(filters, "user_id")
    rows = _rows(caller, MemoryItem.Kind.TURN, filters)
    return {"session_ids": sorted(set(rows.values_list("session_id", flat=True)))}


def get_sessions(request: HttpRequest, caller: Caller) -> dict[str, Any]:
    filters = _query(request)
    _need(filters, "user_id")
    rows = _rows(caller, MemoryItem.Kind.TURN, filters)
    if filters.within_seconds:
        rows = rows.filter(
            occurred_at__gte=timezone.now() - timedelta(seconds=filters.within_seconds)
        )
    sessions = (
        rows.values("session_id", "key")
        .annotate(last=Max("occurred_at"), channel=Max("channel"))
        .order_by("-last")[: filters.limit or 5]
    )
    return {
        "sessions": [
            {
                "created_at": _iso(s["last"]),
                "user_id": s["key"],
                "session_id": s["session_id"],
                "channel": s["channel"] or None,
            }
            for s in sessions
        ]
    }


# Summaries


def create_summary(request: HttpRequest, caller: Caller) -> dict[str, Any]:
    filters = _query(request)
    _need(filters, "user_id")
    owner = _owner(caller, filters.user_id or "")
    if owner.character is None or owner.end_user is None:
        raise Rejected(400, "Summaries need a key of a person and a character.", code="no_person")
    turns = _rows(caller, MemoryItem.Kind.TURN, filters)
    sessions = [filters.session_id] if filters.session_id else _recent_sessions(turns, filters)
    for session_id in sessions:
        summarise_session(owner, session_id, overwrite=filters.overwrite)
    return {"status": "summary created"}


def _recent_sessions(turns: QuerySet[MemoryItem], filters: Filters) -> list[str]:
    """The user's latest sessions but the current one, newest first."""
    latest = turns.values("session_id").annotate(last=Max("occurred_at")).order_by("-last")
    return [row["session_id"] for row in latest[1 : filters.max_count + 1]]


def get_summary(request: HttpRequest, caller: Caller) -> dict[str, Any]:
    filters = _query(request)
    _need(filters, "user_id", "session_id")
    rows = _rows(caller, MemoryItem.Kind.SUMMARY, filters).order_by("-occurred_at")
    return {
        "summaries": [
            {"created_at": _iso(s.occurred_at), "session_id": s.session_id, "summary": s.content}
            for s in rows[:MAX_ROWS]
        ]
    }


def delete_summary(request: HttpRequest, caller: Caller) -> dict[str, Any]:
    filters = _query(request)
    _need(filters, "user_id", "session_id")
    return _deleted(_rows(caller, MemoryItem.Kind.SUMMARY, filters), "summaries")


# Knowledge


def post_knowledge(request: HttpRequest, caller: Caller) -> dict[str, Any]:
    body = _body(request, AddKnowledge)
    owner = _owner(caller, body.user_id, create=True)
    MemoryItem.objects.create(
        tenant_id=caller.tenant_id,
        kind=MemoryItem.Kind.KNOWLEDGE,
        key=owner.key,
        character=owner.character,
        end_user=owner.end_user,
        content=body.knowledge,
        source={"api": "chatmemory", "at": timezone.now().isoformat()},
    )
    return {"status": "knowledge added"}


def get_knowledge(request: HttpRequest, caller: Caller) -> dict[str, Any]:
    filters = _query(request)
    _need(filters, "user_id")
    rows = _rows(caller, MemoryItem.Kind.KNOWLEDGE, filters).order_by("occurred_at")
    return {
        "knowledge": [
            {
                "id": str(k.pk),
                "created_at": _iso(k.occurred_at),
                "user_id": k.key,
                "knowledge": k.content,
            }
            for k in rows[:MAX_ROWS]
        ]
    }


def delete_knowledge(request: HttpRequest, caller: Caller) -> dict[str, Any]:
    filters = _query(request)
    _need(filters, "user_id")
    rows = _rows(caller, MemoryItem.Kind.KNOWLEDGE, filters)
    if filters.knowledge_id is not None:
        try:
            rows = rows.filter(pk=uuid.UUID(filters.knowledge_id))
        except ValueError:  # not an id of ours: nothing to delete
            rows = rows.none()
    return _deleted(rows, "knowledge")


# Diaries


def post_diary(request: HttpRequest, caller: Caller) -> dict[str, Any]:
    body = _body(request, UpsertDiary)
    owner = _owner(caller, body.user_id)
    upsert_diary(
        caller.tenant_id,
        owner,
        body.diary_date,
        body.content,
        metadata=body.metadata,
        source={"api": "chatmemory"},
    )
    return {"status": "diary upserted"}


def get_diary(request: HttpRequest, caller: Caller) -> dict[str, Any]:
    filters = _query(request)
    _need(filters, "user_id", "diary_date", "since", "until")
    rows = _rows(caller, MemoryItem.Kind.DIARY, filters)
    if filters.diary_date is not None:
        rows = rows.filter(diary_date=filters.diary_date)
    if filters.since is not None:
        rows = rows.filter(diary_date__gte=filters.since.date())
    if filters.until is not None:
        rows = rows.filter(diary_date__lte=filters.until.date())
    return {
        "diaries": [
            {
                "created_at": _iso(d.created_at),
                "user_id": d.key,
                "diary_date": d.diary_date.isoformat() if d.diary_date else None,
                "content": d.content,
                "metadata": d.metadata,
            }
            for d in rows.order_by("-diary_date")[: filters.limit or MAX_ROWS]
        ]
    }


def delete_diary(request: HttpRequest, caller: Caller) -> dict[str, Any]:
    filters = _query(request)
    _need(filters, "user_id", "diary_date")
    rows = _rows(caller, MemoryItem.Kind.DIARY, filters)
    if filters.diary_date is not None:
        rows = rows.filter(diary_date=filters.diary_date)
    return _deleted(rows, "diary")


# Search


def post_search(request: HttpRequest, caller: Caller) -> dict[str, Any]:
    body = _body(request, Search)
    keys = [body.user_id] if isinstance(body.user_id, str) else body.user_id
    owners = [_owner(caller, key) for key in keys]
    searched = {owner.key for owner in owners}
    # A person's memories with a character come with that character's diaries.
    searched |= {character_key(o.character) for o in owners if o.character and o.end_user}
    zone = dt_timezone(timedelta(hours=body.utc_offset_hours))
    window = Window(body.since, body.until, zone)
    hits = search(caller.tenant_id, sorted(searched), body.query, top_k=body.top_k, window=window)
    if not hits:
        return {"result": {"answer": "Nothing relevant is remembered.", "retrieved_data": None}}
    lines = [describe(hit.item, zone) for hit in hits]
    retrieved = "".join(f"====\n\n{line}\n\n" for line in lines)
    return {
        "result": {
            "answer": "\n".join(lines),
            "retrieved_data": retrieved if body.include_retrieved_data else None,
        }
    }
