"""LINE's HTTP endpoints: the webhook, and operators' pushes.

The webhook checks `X-Line-Signature` against the raw body before anything is parsed, then
queues the events for a Celery worker and answers at once: LINE waits for nobody, and reply
tokens outlive a slow webhook by only a minute or so.
"""

from __future__ import annotations

import json
import logging
import uuid
from typing import Any

from asgiref.sync import sync_to_async
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, JsonResponse
from django.middleware.csrf import CsrfViewMiddleware
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST
from linebot.v3 import SignatureValidator
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from conversations.aiavatar_wire import validation_errors
from conversations.auth import INVALID_KEY, authenticate_bearer
from conversations.models import ChannelIdentity
from conversations.views import Rejected

from . import tasks
from .client import LineApiError, LineNotConfigured
from .handling import IDENTITY_CHANNELS, push_text
from .models import LineChannel
from .replies import TEXT_LIMIT, utf16_length

logger = logging.getLogger(__name__)

INVALID_SIGNATURE = {"detail": "Missing or invalid X-Line-Signature header."}
LINE_ID = r"^[UCR][0-9a-f]{32}$"


def _channel(slug: str | None) -> LineChannel:
    channels = LineChannel.objects.select_related("character").filter(is_active=True)
    channel = (
        channels.filter(slug=slug).first() if slug else channels.filter(is_default=True).first()
    )
    if channel is None:
        detail = (
            f"Unknown LINE channel {slug!r}."
            if slug
            else "No default LINE channel: mark one as default in the admin, or use "
            "/line/<slug>/webhook."
        )
        raise Rejected(404, {"detail": detail})
    return channel


def _accept(slug: str | None, body: bytes, signature: str) -> int:
    """Verify, then queue the webhook's events; returns how many were queued."""
    channel = _channel(slug)
    secret = channel.channel_secret
    if not secret:
        logger.error("LINE channel %s: %s is not set", channel.slug, channel.channel_secret_env)
        raise Rejected(503, {"detail": f"LINE channel {channel.slug!r} has no channel secret."})
    try:
        text = body.decode("utf-8")  # LINE signs UTF-8 JSON; anything else cannot be genuine
    except UnicodeDecodeError:
        raise Rejected(400, INVALID_SIGNATURE) from None
    if not SignatureValidator(secret).validate(text, signature):
        raise Rejected(400, INVALID_SIGNATURE)
    try:
        payload = json.loads(text)
    except ValueError:
        raise Rejected(400, {"detail": "Body is not valid JSON."}) from None
    events = payload.get("events") if isinstance(payload, dict) else None
    if not isinstance(events, list) or not all(isinstance(e, dict) for e in events):
        raise Rejected(400, {"detail": "Expected a JSON object with an `events` array."})
    if not events:  # the console's "Verify" button sends none
        return 0
    try:
        tasks.process_events.delay(channel.pk, events)
    except Exception:
        # Not acknowledged, so LINE redelivers (when redelivery is on in the console).
        logger.exception("could not queue LINE events of channel %s", channel.slug)
        raise Rejected(503, {"detail": "Could not queue the events; try again."}) from None
    return len(events)


@csrf_exempt
@require_POST
async def webhook(request: HttpRequest, slug: str | None = None) -> JsonResponse:
    signature = request.headers.get("X-Line-Signature")
    if not signature:
        return JsonResponse(INVALID_SIGNATURE, status=400)
    try:
        body = request.body
    except RequestDataTooBig:
        return JsonResponse({"detail": "Request body is too large."}, status=413)
    try:
        queued = await sync_to_async(_accept)(slug, body, signature)
    except Rejected as rejected:
        return JsonResponse(rejected.body, status=rejected.status)
    return JsonResponse({"status": "ok", "queued": queued})


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
    check = CsrfViewMiddleware(lambda _: None)  # type: ignore[arg-type, return-value]
    check.process_request(request)
    return check.process_view(request, None, (), {}) is not None  # type: ignore[arg-type]


async def _authorize(request: HttpRequest) -> None:
    """An API key, or a staff member's admin session (with its CSRF token)."""
    if request.headers.get("Authorization"):
        if await sync_to_async(authenticate_bearer)(request.headers) is None:
            raise Rejected(401, INVALID_KEY)
        return
    user = await request.auser()
    if not (user.is_active and user.is_staff):
        raise Rejected(401, INVALID_KEY)
    if _csrf_failure(request):
        raise Rejected(403, {"detail": "CSRF token missing or incorrect."})


def _parse(request: HttpRequest, model: type[_Target]) -> Any:
    try:
        return model.model_validate_json(request.body)
    except ValidationError as exc:
        raise Rejected(422, {"detail": validation_errors(exc)}) from None


def _resolve(slug: str, target: _Target) -> tuple[LineChannel, str]:
    channel = _channel(slug)
    if target.to:
        return channel, target.to
    identity = ChannelIdentity.objects.filter(
        end_user_id=target.end_user_id, channel__in=IDENTITY_CHANNELS.values()
    ).first()
    if identity is None:
        raise Rejected(404, {"detail": f"End user {target.end_user_id} has no LINE identity."})
    return channel, identity.external_id


@csrf_exempt
@require_POST
async def push(request: HttpRequest, slug: str) -> JsonResponse:
    """Send an operator's text to a LINE chat exactly as written."""
    try:
        await _authorize(request)
        body: PushBody = _parse(request, PushBody)
        channel, to = await sync_to_async(_resolve)(slug, body)
        how = await sync_to_async(push_text)(channel, to, body.text)
    except Rejected as rejected:
        return JsonResponse(rejected.body, status=rejected.status)
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
        await _authorize(request)
        body: StartBody = _parse(request, StartBody)
        channel, to = await sync_to_async(_resolve)(slug, body)
    except Rejected as rejected:
        return JsonResponse(rejected.body, status=rejected.status)
    result = await sync_to_async(tasks.start_conversation.delay)(channel.pk, to, body.instruction)
    return JsonResponse({"result": "accepted", "to": to, "task_id": result.id}, status=202)
