"""Dify's app API beside `/chat-messages`: what a Dify chat front-end calls to set itself up,
page through a user's conversations and messages, rename or delete a conversation, change its
variables, rate an answer and stop a stream (docs/wire-protocols.md#dify-app-api).

A Dify conversation is one of the end user's contexts with the character (the user is named
by `user`, as on `/chat-messages`); a message is a completed turn, named by its record's id.
Every route answers in Dify's error shape, and an id of another tenant, character or user
answers exactly like one nobody issued.

Over ~400 lines on purpose: the routes are one foreign API surface sharing its cursor paging,
id parsing and error shape; split, each piece would re-import the same private helpers.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from asgiref.sync import sync_to_async
from django.db.models import Q, QuerySet
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.http.response import HttpResponseBase
from django.views.decorators.csrf import csrf_exempt
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from characters.models import Character

from ..admission import Caller, find_character, identify, known_end_user
from ..feedback import MAX_COMMENT_LENGTH, rate_turn
from ..models import Context, EndUser, Message, TurnRecord
from ..pipeline.prompt import BUILT_IN_PLACEHOLDERS, PLACEHOLDER
from ..pipeline.sessions import interrupt_session
from .base import Rejected, methods, problems, read_json
from .dify_api import CHANNEL, rejected_response, task_session
from .text import ID_MAX_LENGTH, json_problem

NOT_FOUND = {
    "conversation": "Conversation Not Exists.",
    "last_id": "Last Conversation Not Exists.",
    "first_id": "First Message Not Exists.",
    "message": "Message Not Exists.",
    "variable": "Conversation Variable Not Exists.",
}


class _UserParams(BaseModel):
    model_config = ConfigDict(extra="ignore")

    user: str = Field(min_length=1, max_length=ID_MAX_LENGTH)

    @field_validator("user")
    @classmethod
    def _user_given(cls, user: str) -> str:
        if not user.strip():
            raise ValueError("user must not be empty")
        return user


class _Page(_UserParams):
    limit: int = Field(20, ge=1, le=100)


class ConversationsQuery(_Page):
    last_id: str | None = None
    sort_by: str = Field("-updated_at", pattern=r"^-?(created_at|updated_at)$")


class MessagesQuery(_Page):
    conversation_id: str
    first_id: str | None = None


class RenameBody(_UserParams):
    name: str | None = Field(None, max_length=255)
    auto_generate: bool = False


class FeedbackBody(_UserParams):
    rating: str | None = Field(None, pattern=r"^(like|dislike)$")
    content: str | None = Field(None, max_length=MAX_COMMENT_LENGTH)


class VariableBody(_UserParams):
    value: Any


Params = TypeVar("Params", bound=_UserParams)


@dataclass(frozen=True, slots=True)
class Scope:
    """Who asks about which character's conversations: the end user is None when `user` has
    never talked to this server, and so owns nothing."""

    caller: Caller
    character: Character
    end_user: EndUser | None


def _parse(model: type[Params], data: Any) -> Params:
    if isinstance(data, Rejected):
        raise data
    if (problem := json_problem(data, "body")) is not None:
        raise Rejected(400, problem, code="invalid_param")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise Rejected(400, problems(exc), code="invalid_param") from None


def _scope(
    headers: Mapping[str, str], slug: str | None, model: type[Params], data: Any
) -> tuple[Scope, Params]:
    """The caller (checked before anything else), the request's parameters, the character
    and the end user `user` names."""
    caller = identify(headers)
    params = _parse(model, data)
    character = find_character(caller, slug or headers.get("X-Character"))
    end_user = known_end_user(caller, CHANNEL, caller.user(params.user) or params.user)
    return Scope(caller, character, end_user), params


def _not_found(what: str) -> Rejected:
    return Rejected(404, NOT_FOUND[what], code="not_found")


def _uuid(raw: str | None, what: str) -> uuid.UUID:
    try:
        return uuid.UUID(str(raw))
    except ValueError:
        raise _not_found(what) from None


def _contexts(scope: Scope) -> QuerySet[Context]:
    if scope.end_user is None:
        return Context.objects.none()
    return Context.objects.filter(character=scope.character, end_user=scope.end_user)


def _context(scope: Scope, raw_id: str | None, what: str = "conversation") -> Context:
    context = _contexts(scope).filter(id=_uuid(raw_id, what)).first()
    if context is None:
        raise _not_found(what)
    return context


def _timestamp(moment: datetime) -> int:
    return int(moment.timestamp())


def _conversation(context: Context) -> dict[str, Any]:
    return {
        "id": str(context.id),
        "name": context.name,
        "inputs": context.inputs,
        "status": "normal",
        "introduction": context.character.greeting,
        "created_at": _timestamp(context.created_at),
        "updated_at": _timestamp(context.updated_at),
    }


def _input_form(character: Character) -> list[dict[str, Any]]:
    """The persona's own placeholders as Dify's optional text inputs, in order of appearance."""
    names = dict.fromkeys(
        name for name in PLACEHOLDER.findall(character.persona) if name not in BUILT_IN_PLACEHOLDERS
    )
    return [
        {"text-input": {"label": name, "variable": name, "required": False, "default": ""}}
        for name in names
    ]


def parameters_body(scope: Scope, _: _UserParams) -> dict[str, Any]:
    off = {"enabled": False}
    return {
        "opening_statement": scope.character.greeting,
        "suggested_questions": [],
        "suggested_questions_after_answer": off,
        # This API takes neither Dify's audio routes nor uploads: images travel as URLs.
        "speech_to_text": off,
        "text_to_speech": off,
        "retriever_resource": off,
        "annotation_reply": off,
        "more_like_this": off,
        "sensitive_word_avoidance": off,
        "user_input_form": _input_form(scope.character),
        "file_upload": {
            "image": {
                "enabled": True,
                "number_limits": 10,
                "detail": "high",
                "transfer_methods": ["remote_url"],
            }
        },
        "system_parameters": {"file_size_limit": 0, "image_file_size_limit": 0},
    }


def info_body(scope: Scope, _: _UserParams) -> dict[str, Any]:
    return {
        "name": scope.character.name,
        "description": "",
        "tags": [],
        "mode": "chat",
        "author_name": "",
    }


def meta_body(scope: Scope, _: _UserParams) -> dict[str, Any]:
    return {"tool_icons": {}}


def conversations_body(scope: Scope, query: ConversationsQuery) -> dict[str, Any]:
    """Newest first by default; `last_id` continues after that conversation."""
    field = query.sort_by.lstrip("-")
    descending = query.sort_by.startswith("-")
    contexts = _contexts(scope).select_related("character")
    if query.last_id:
        last = _context(scope, query.last_id, "last_id")
        moment = getattr(last, field)
        beyond = "lt" if descending else "gt"
        contexts = contexts.filter(
            Q(**{f"{field}__{beyond}": moment}) | Q(**{field: moment, f"id__{beyond}": last.id})
        )
    order = [query.sort_by, "-id" if descending else "id"]
    rows = list(contexts.order_by(*order)[: query.limit + 1])
    return {
        "limit": query.limit,
        "has_more": len(rows) > query.limit,
        "data": [_conversation(c) for c in rows[: query.limit]],
    }


def messages_body(scope: Scope, query: MessagesQuery) -> dict[str, Any]:
    """Oldest first within a page; `first_id` pages back to the turns before that one."""
    context = _context(scope, query.conversation_id)
    turns = TurnRecord.objects.filter(
        context_id=context.id,
        end_user=scope.end_user,
        character=scope.character,
        status=TurnRecord.Status.COMPLETED,
    )
    if query.first_id:
        first = turns.filter(id=_uuid(query.first_id, "first_id")).first()
        if first is None:
            raise _not_found("first_id")
        turns = turns.filter(
            Q(started_at__lt=first.started_at) | Q(started_at=first.started_at, id__lt=first.id)
        )
    rows = list(turns.order_by("-started_at", "-id")[: query.limit + 1])
    page = rows[: query.limit][::-1]
    asked = Message.objects.filter(turn__in=page, role=Message.Role.USER)
    files = dict(asked.values_list("turn_id", "files"))
    return {
        "limit": query.limit,
        "has_more": len(rows) > query.limit,
        "data": [
            {
                "id": str(turn.id),
                "conversation_id": str(context.id),
                "inputs": context.inputs,
                "query": turn.request_text,
                "answer": turn.response_text,
                "message_files": [
                    {"type": f.get("type", "image"), "url": f.get("url", ""), "belongs_to": "user"}
                    for f in files.get(turn.id) or []
                ],
                "feedback": {"rating": turn.feedback_rating} if turn.feedback_rating else None,
                "retriever_resources": [],
                "status": "normal",
                "error": None,
                "created_at": _timestamp(turn.started_at),
            }
            for turn in page
        ],
    }


def rename_body(scope: Scope, body: RenameBody, conversation_id: str) -> dict[str, Any]:
    context = _context(scope, conversation_id)
    if body.auto_generate:
        # Named after its opening question, as a title generator would summarise it.
        first = (
            TurnRecord.objects.filter(context_id=context.id, status=TurnRecord.Status.COMPLETED)
            .order_by("started_at")
            .values_list("request_text", flat=True)
            .first()
        )
        name = (first or "").strip()[:40]
    elif body.name is None or not body.name.strip():
        raise Rejected(400, "name is required unless auto_generate is true", code="invalid_param")
    else:
        name = body.name.strip()
    Context.objects.filter(pk=context.pk).update(name=name)
    context.refresh_from_db()
    return _conversation(context)


def delete_conversation(scope: Scope, body: _UserParams, conversation_id: str) -> None:
    _context(scope, conversation_id).delete()


def feedback_body(scope: Scope, body: FeedbackBody, message_id: str) -> dict[str, Any]:
    turn_id = _uuid(message_id, "message")
    if not rate_turn(turn_id, scope.character, scope.end_user, body.rating, body.content):
        raise _not_found("message")
    return {"result": "success"}


def _variable(context: Context, name: str) -> dict[str, Any]:
    value = context.inputs[name]
    return {
        "id": name,
        "name": name,
        "value_type": "string" if isinstance(value, str) else "json",
        "value": value,
        "description": "",
        "created_at": _timestamp(context.created_at),
        "updated_at": _timestamp(context.updated_at),
    }


def variables_body(scope: Scope, query: _Page, conversation_id: str) -> dict[str, Any]:
    context = _context(scope, conversation_id)
    names = sorted(context.inputs)
    return {
        "limit": query.limit,
        "has_more": len(names) > query.limit,
        "data": [_variable(context, name) for name in names[: query.limit]],
    }


def update_variable_body(
    scope: Scope, body: VariableBody, conversation_id: str, variable_id: str
) -> dict[str, Any]:
    context = _context(scope, conversation_id)
    if variable_id not in context.inputs:
        raise _not_found("variable")
    if not isinstance(body.value, str):
        raise Rejected(400, "value: must be a string", code="invalid_param")
    context.inputs[variable_id] = body.value
    context.save(update_fields=["inputs", "updated_at"])
    return _variable(context, variable_id)


def _stop_target(scope: Scope, task_id: str) -> str | None:
    task = task_session(task_id)
    if task is None or scope.end_user is None or task[0] != str(scope.end_user.pk):
        return None
    return task[1]


Handler = Callable[..., Any]


def _route(
    method: str, handler: Handler, *, query: bool = True, model: type[_UserParams] = _UserParams
) -> Callable[..., Any]:
    """An async view: `handler(scope, params, **ids)` runs in the ORM thread on the query
    string (GET, DELETE with no body) or the JSON body, and its dict is the 200 answer
    (None: 204)."""

    @csrf_exempt
    @methods(method, refuse=rejected_response)
    async def view(request: HttpRequest, slug: str | None = None, **ids: str) -> HttpResponseBase:
        data: Any
        if query or (method == "DELETE" and not request.body):
            data = dict(request.GET.items())
        else:
            try:
                data = read_json(request)
            except Rejected as rejected:
                data = rejected

        def run() -> Any:
            scope, params = _scope(request.headers, slug, model, data)
            return handler(scope, params, **ids)

        try:
            body = await sync_to_async(run)()
        except Rejected as rejected:
            return rejected_response(rejected)
        if body is None:
            return HttpResponse(status=204)
        return JsonResponse(body, json_dumps_params={"ensure_ascii": False})

    return view


@csrf_exempt
@methods("POST", refuse=rejected_response)
async def stop(request: HttpRequest, task_id: str, slug: str | None = None) -> HttpResponseBase:
    """Like Dify, success whatever the task: an unknown, finished or foreign one is left be."""
    try:
        data: Any = read_json(request)
    except Rejected as rejected:
        data = rejected

    def target() -> str | None:
        scope, _ = _scope(request.headers, slug, _UserParams, data)
        return _stop_target(scope, task_id)

    try:
        session_key = await sync_to_async(target)()
    except Rejected as rejected:
        return rejected_response(rejected)
    if session_key is not None:
        await interrupt_session(session_key)
    return JsonResponse({"result": "success"})


parameters = _route("GET", parameters_body)
info = _route("GET", info_body)
meta = _route("GET", meta_body)
conversations = _route("GET", conversations_body, model=ConversationsQuery)
messages = _route("GET", messages_body, model=MessagesQuery)
rename = _route("POST", rename_body, query=False, model=RenameBody)
delete = _route("DELETE", delete_conversation, query=False)
feedback = _route("POST", feedback_body, query=False, model=FeedbackBody)
variables = _route("GET", variables_body, model=_Page)
update_variable = _route("PUT", update_variable_body, query=False, model=VariableBody)

# (path after the API root, view, name) for every prefix Dify clients use.
ROUTES: list[tuple[str, Callable[..., Any], str]] = [
    ("parameters", parameters, "dify-parameters"),
    ("info", info, "dify-info"),
    ("meta", meta, "dify-meta"),
    ("conversations", conversations, "dify-conversations"),
    ("conversations/<str:conversation_id>", delete, "dify-conversation"),
    ("conversations/<str:conversation_id>/name", rename, "dify-conversation-name"),
    ("conversations/<str:conversation_id>/variables", variables, "dify-variables"),
    (
        "conversations/<str:conversation_id>/variables/<str:variable_id>",
        update_variable,
        "dify-variable",
    ),
    ("messages", messages, "dify-messages"),
    ("messages/<str:message_id>/feedbacks", feedback, "dify-feedback"),
    ("chat-messages/<str:task_id>/stop", stop, "dify-stop"),
]
