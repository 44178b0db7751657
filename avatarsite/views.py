"""Project-level pages: the landing page and a health check for load balancers."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET
from django.views.defaults import page_not_found

from avatarsite.tenants.models import DEFAULT_TENANT_SLUG
from characters.models import Character

from .celery import app as celery_app

logger = logging.getLogger(__name__)

HEALTH_TIMEOUT_SECONDS = 3.0


@require_GET
def home(request: HttpRequest) -> HttpResponse:
    # A public page: only the default tenant's characters, never another operator's.
    characters = Character.objects.filter(tenant__slug=DEFAULT_TENANT_SLUG, is_active=True)
    return render(request, "home.html", {"characters": characters})


def _check_database() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")


async def _check_channel_layer() -> None:
    layer = get_channel_layer()
    assert layer is not None, "no channel layer configured"
    channel = await layer.new_channel()
    await layer.send(channel, {"type": "health.check"})
    await layer.receive(channel)


def _check_broker() -> None:
    with celery_app.connection_for_write() as broker:
        broker.ensure_connection(max_retries=1, timeout=HEALTH_TIMEOUT_SECONDS)


@require_GET
async def healthz(request: HttpRequest) -> JsonResponse:
    """Database, channel layer and Celery broker each answer, or 503 naming what failed."""
    checks: dict[str, Callable[[], Awaitable[None]]] = {
        "database": sync_to_async(_check_database),
        "channel_layer": _check_channel_layer,
        "broker": sync_to_async(_check_broker, thread_sensitive=False),
    }
    results: dict[str, str] = {}
    for name, check in checks.items():
        try:
            async with asyncio.timeout(HEALTH_TIMEOUT_SECONDS):
                await check()
            results[name] = "ok"
        except Exception as exc:
            logger.warning("health check %s failed: %r", name, exc)
            results[name] = f"failed: {type(exc).__name__}"
    healthy = all(value == "ok" for value in results.values())
    return JsonResponse(
        {"status": "ok" if healthy else "unavailable", "checks": results},
        status=200 if healthy else 503,
    )


def not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """API clients get a JSON 404 for URLs that match no route (a malformed id in the path);
    the admin keeps Django's HTML page."""
    if request.path.startswith("/admin/"):
        return page_not_found(request, exception)
    return JsonResponse({"detail": "Not found."}, status=404)
