"""Tenants' allowed origins as CORS headers (django-cors-headers), for pages calling the chat
endpoints with browser tokens.

A preflight carries no credential, so it cannot say which tenant it is for: an origin any tenant
allows gets CORS headers, and the token then binds the request to its own tenant's origin
(conversations/browser_tokens.py). The allow-list is read once per request, before
django-cors-headers asks for it, because its signal is answered synchronously.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponseBase
from django.utils.decorators import async_only_middleware

from .models import TenantOrigin

ALLOWED = "tenant_origin_allowed"


@async_only_middleware
def tenant_origins(
    get_response: Callable[[HttpRequest], Awaitable[HttpResponseBase]],
) -> Callable[[HttpRequest], Awaitable[HttpResponseBase]]:
    async def middleware(request: HttpRequest) -> HttpResponseBase:
        origin = request.headers.get("Origin")
        if origin and re.match(settings.CORS_URLS_REGEX, request.path_info):
            allowed = await TenantOrigin.objects.filter(origin=origin).aexists()
            setattr(request, ALLOWED, allowed)
        return await get_response(request)

    return middleware


def origin_allowed(sender: Any, request: HttpRequest, **kwargs: Any) -> bool:
    """django-cors-headers' `check_request_enabled` receiver."""
    return bool(getattr(request, ALLOWED, False))
