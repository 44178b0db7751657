from django.apps import AppConfig


class ChannelsAppConfig(AppConfig):
    """Channels consumers: the realtime voice WebSocket and live-session control."""

    name = "channels_app"
    verbose_name = "Live sessions"
