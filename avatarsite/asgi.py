"""ASGI entry point: HTTP through Django (plus static files when SERVE_STATIC is on) and
WebSockets through Channels' URL router (channels_app.routing), dispatched by protocol.

WebSockets authenticate with API keys, not cookies, so no origin check is needed: a page on
another origin cannot use a key it does not have."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "avatarsite.settings")

# Django must be set up before anything imports models.
django_http = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.conf import settings  # noqa: E402
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler  # noqa: E402
from django.core.exceptions import SuspiciousFileOperation  # noqa: E402
from django.http import HttpRequest, JsonResponse  # noqa: E402
from django.http.response import HttpResponseBase  # noqa: E402

from channels_app.routing import route, websocket_urlpatterns  # noqa: E402
from conversations.line.webhook import LineWebhookConsumer  # noqa: E402
from conversations.llm import warn_about_unconfigured_providers  # noqa: E402

warn_about_unconfigured_providers()


class StaticFiles(ASGIStaticFilesHandler):
    """Django's static files handler, except that a path climbing out of the static directories
    (`/static/..%2f..%2fsettings.py`) is simply not found, instead of an unhandled
    SuspiciousFileOperation."""

    async def get_response_async(self, request: HttpRequest) -> HttpResponseBase:
        try:
            return await super().get_response_async(request)
        except SuspiciousFileOperation:
            return JsonResponse({"detail": "Not found."}, status=404)


line_webhook = LineWebhookConsumer.as_asgi()
application = ProtocolTypeRouter(
    {
        "http": URLRouter(
            [
                # LINE webhooks skip Django's middleware stack (conversations/line/webhook.py).
                route("webhook", line_webhook),  # AIAvatarKit's URL: the default channel
                route("line/<slug:slug>/webhook", line_webhook),
                route(
                    r"",
                    StaticFiles(django_http) if settings.SERVE_STATIC else django_http,
                    regex=True,
                ),
            ]
        ),
        "websocket": URLRouter(websocket_urlpatterns),
    }
)
