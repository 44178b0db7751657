"""Operators' LINE endpoints: push a message as written, or have the character speak first.
(The webhook is an ASGI consumer of its own, in `webhook.py`.)"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from asgiref.sync import sync_to_async
from django.http import HttpRequest, JsonResponse
from django.middleware.csrf import CsrfViewMiddleware
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from conversations.admission import Caller, identify
from conversations.models import ChannelIdentity
from conversations.transports.aiavatar_wire import validation_errors
from conversations.transports.base import Rejected

from . import tasks
from .client import LineApiError, LineNotConfigured
from .handling import IDENTITY_CHANNELS, push_text
from .models import LineChannel
from .replies import TEXT_LIMIT, utf16_length
from .webhook import channel_for, rejected_body

logger = logging.getLogger(__name__)

LINE_ID = r"^[UCR][0-9a-f]{32}$"


class _Target(BaseModel):
    model_config = ConfigDict(extra="forbid")

    to: str | None = Field(None, pattern=LINE_ID, description="LINE user, group or room id")
    end_user_id: uuid.UUID | None = None

    @model_validator(mode="after")
    def _one_target(self) -> _Target:
        if (self.to is None) == (self.end_user_id is None):
            raise ValueError("Give exactly one of `to` (a LINE id) and `end_user_id`.")
        return self


class PushBody(_Target):
    text: str = Field(min_length=1)

    @field_validator("text")
    @classmethod
    def _fits_one_message(cls, text: str) -> str:
        if utf16_length(text) > TEXT_LIMIT:
            raise ValueError(f"LINE takes at most {TEXT_LIMIT} characters per message.")
        return text


class StartBody(_Target):
    instruction: str = Field(min_length=1, max_length=4000)


def _csrf_failure(request: HttpRequest) -> bool:
    """Session-authenticated calls need Django's CSRF token like any admin form."""
    check = CsrfViewMiddleware(lambda _: None)  # type: ignore[arg-type]
    check.process_request(request)
    return check.process_view(request, None, (), {}) is not None  # type: ignore[arg-type]


def rejected_response(rejected: Rejected) -> JsonResponse:
    return JsonResponse(rejected_body(rejected), status=rejected.status)


async def _authorize(request: HttpRequest) -> Caller | None:
    """An API key's caller, or None for a staff member's admin session (with its CSRF
    token)."""
    if request.headers.get("Authorization"):
        return await sync_to_async(identify)(request.headers, browser=False)
    user = await request.auser()
    if not (user.is_active and user.is_staff):
        raise Rejected(401, "Invalid or missing API Key", code="invalid_api_key")
    if _csrf_failure(request):
        raise Rejected(403, "CSRF token missing or incorrect.", code="csrf")
    return None


def _parse(request: HttpRequest, model: type[_Target]) -> Any:
    try:
        return model.model_validate_json(request.body)
    except ValidationError as exc:
        errors = validation_errors(exc)
        raise Rejected(422, "invalid body", code="validation", body={"detail": errors}) from None


def _resolve(caller: Caller | None, slug: str, target: _Target) -> tuple[LineChannel, str]:
    """The channel and LINE id to send to; another tenant's channel or end user is as
    unknown as one that does not exist."""
    channel = channel_for(slug)
    if caller is not None and not caller.reaches(channel.character):
        raise Rejected(404, f"Unknown LINE channel {slug!r}.", code="not_found")
    if target.to:
        return channel, target.to
    identity = ChannelIdentity.objects.filter(
        tenant_id=channel.tenant_id,
        end_user_id=target.end_user_id,
        channel__in=IDENTITY_CHANNELS.values(),
    ).first()
    if identity is None:
        raise Rejected(
            404, f"End user {target.end_user_id} has no LINE identity.", code="not_found"
        )
    return channel, identity.external_id


@csrf_exempt
@require_POST
async def push(request: HttpRequest, slug: str) -> JsonResponse:
    """Send an operator's text to a LINE chat exactly as written."""
    try:
        caller = await _authorize(request)
        body: PushBody = _parse(request, PushBody)
        channel, to = await sync_to_async(_resolve)(caller, slug, body)
        how = await sync_to_async(push_text)(channel, to, body.text)
    except Rejected as rejected:
        return rejected_response(rejected)
    except LineNotConfigured as exc:
        return JsonResponse({"detail": str(exc)}, status=503)
    except LineApiError as exc:
        return JsonResponse({"detail": str(exc)}, status=502)
    return JsonResponse({"result": "sent", "to": to, "how": how})


@csrf_exempt
@require_POST
async def start(request: HttpRequest, slug: str) -> JsonResponse:
    """Have the character speak first, following an instruction; its answer is pushed."""
    try:
        caller = await _authorize(request)
        body: StartBody = _parse(request, StartBody)
        channel, to = await sync_to_async(_resolve)(caller, slug, body)
    except Rejected as rejected:
        return rejected_response(rejected)
    result = await sync_to_async(tasks.start_conversation.delay)(channel.pk, to, body.instruction)
    return JsonResponse({"result": "accepted", "to": to, "task_id": result.id}, status=202)
