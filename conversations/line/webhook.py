"""The LINE webhook: signature first, then the events queued for a Celery worker, then 200.

It is an ASGI consumer routed ahead of Django (see avatarsite/asgi.py): a webhook needs none of
the session, CSRF, authentication or messages middleware, and going through them costs about
three times the webhook's own work, which at LINE's delivery rates is the difference between
acknowledging at once and queueing up. LINE waits for nobody, and reply tokens outlive a slow
acknowledgement by only a minute or so.
"""

from __future__ import annotations

import json
import logging
from typing import Any, cast

from asgiref.typing import HTTPRequestEvent
from channels.db import database_sync_to_async
from channels.exceptions import StopConsumer
from channels.generic.http import AsyncHttpConsumer
from django.conf import settings
from linebot.v3 import SignatureValidator

from conversations.transports.base import Rejected
from conversations.transports.text import json_problem

from . import tasks
from .models import LineChannel

logger = logging.getLogger(__name__)

INVALID_SIGNATURE = "Missing or invalid X-Line-Signature header."


def rejected_body(rejected: Rejected) -> dict[str, Any]:
    """Our JSON error shape for LINE's endpoints: `{"detail": ...}`."""
    return rejected.body if rejected.body is not None else {"detail": rejected.message}


def webhook_path(slug: str) -> str:
    return f"/line/{slug}/webhook"


def channel_for(slug: str | None) -> LineChannel:
    """The active channel named `slug`, or the default one (AIAvatarKit's /webhook)."""
    channels = LineChannel.objects.select_related("character").filter(is_active=True)
    channel = channels.filter(slug=slug) if slug else channels.filter(is_default=True)
    found = channel.first()
    if found is None:
        detail = (
            f"Unknown LINE channel {slug!r}."
            if slug
            else "No default LINE channel: mark one as default in the admin, or use "
            "/line/<slug>/webhook."
        )
        raise Rejected(404, detail, code="not_found")
    return found


def accept(slug: str | None, body: bytes, signature: str) -> int:
    """Verify the signature on the raw bytes, then queue the events; how many were queued."""
    channel = channel_for(slug)
    secret = channel.channel_secret
    if not secret:
        logger.error("LINE channel %s: %s is not set", channel.slug, channel.channel_secret_env)
        raise Rejected(
            503, f"LINE channel {channel.slug!r} has no channel secret.", code="not_configured"
        )
    try:
        text = body.decode("utf-8")  # LINE signs UTF-8 JSON; anything else cannot be genuine
    except UnicodeDecodeError:
        raise Rejected(400, INVALID_SIGNATURE, code="signature") from None
    if not SignatureValidator(secret).validate(text, signature):
        raise Rejected(400, INVALID_SIGNATURE, code="signature")
    try:
        payload = json.loads(text)
    except ValueError:
        raise Rejected(400, "Body is not valid JSON.", code="json") from None
    if (problem := json_problem(payload, "body")) is not None:
        raise Rejected(400, problem, code="invalid_text")
    events = payload.get("events") if isinstance(payload, dict) else None
    if not isinstance(events, list) or not all(isinstance(e, dict) for e in events):
        raise Rejected(400, "Expected a JSON object with an `events` array.", code="events")
    if not events:  # the console's "Verify" button sends none
        return 0
    try:
        tasks.process_events.delay(channel.pk, events)
    except Exception:
        # Not acknowledged, so LINE redelivers (when redelivery is on in the console).
        logger.exception("could not queue LINE events of channel %s", channel.slug)
        raise Rejected(503, "Could not queue the events; try again.", code="queue") from None
    return len(events)


class LineWebhookConsumer(AsyncHttpConsumer):
    """`POST /line/<slug>/webhook`, and `POST /webhook` for the default channel.

    The Host header is not checked against ALLOWED_HOSTS: the signature is what authenticates
    a webhook, whatever name it was sent to.
    """

    # No channel layer: a webhook gets no layer messages, and with Redis every request would
    # otherwise open a channel there and block reading it.
    channel_layer_alias = None  # type: ignore[assignment]  # Channels reads None as no layer

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.received = 0

    async def http_request(self, message: HTTPRequestEvent) -> None:
        # The body is held in memory until complete: refuse it past the configured size.
        self.received += len(message.get("body", b""))
        if self.received > settings.DATA_UPLOAD_MAX_MEMORY_SIZE:
            await self._json(413, {"detail": "Request body is too large."})
            raise StopConsumer
        await super().http_request(message)

    async def handle(self, body: bytes) -> None:
        if self.scope["method"] != "POST":
            await self._json(405, {"detail": "Method not allowed: POST a LINE webhook."})
            return
        headers = dict(self.scope["headers"])
        signature = headers.get(b"x-line-signature", b"").decode("latin-1")
        if not signature:
            await self._json(400, {"detail": INVALID_SIGNATURE})
            return
        # Channels' URLRouter adds url_route to the HTTP scope as it does to a socket's.
        slug = cast("dict[str, Any]", self.scope)["url_route"]["kwargs"].get("slug")
        try:
            queued = await database_sync_to_async(accept)(slug, body, signature)
        except Rejected as rejected:
            await self._json(rejected.status, rejected_body(rejected))
            return
        await self._json(200, {"status": "ok", "queued": queued})

    async def _json(self, status: int, payload: dict[str, Any]) -> None:
        await self.send_response(
            status, json.dumps(payload).encode(), headers=[(b"Content-Type", b"application/json")]
        )
