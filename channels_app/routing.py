"""WebSocket routes (mounted by avatarsite.asgi)."""

from django.urls import path

from .consumers import VoiceConsumer

websocket_urlpatterns = [
    path("ws", VoiceConsumer.as_asgi()),
]
