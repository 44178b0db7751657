"""WebSocket routes (mounted by avatarsite.asgi), and route() for mounting ASGI apps."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

from django.urls import path, re_path

from .avatar.consumer import AvatarConsumer
from .consumers import VoiceConsumer

if TYPE_CHECKING:
    from channels.routing import URLRouter, _ExtendedURLPattern


def route(pattern: str, app: Any, *, regex: bool = False) -> _ExtendedURLPattern:
    """A URL pattern for Channels' URLRouter: Django's path() (or re_path()) around an ASGI
    app, which the stubs only know as a Django view."""
    return cast("_ExtendedURLPattern", (re_path if regex else path)(pattern, app))


websocket_urlpatterns: list[_ExtendedURLPattern | URLRouter] = [
    route("ws", VoiceConsumer.as_asgi()),
    route("avatar/ws", AvatarConsumer.as_asgi()),
]
