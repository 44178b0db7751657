from django.apps import AppConfig


class LiveAvatarConfig(AppConfig):
    """Characters as agents of a Live Avatar platform: per character, a session the platform
    renders, run by the `run_liveavatar_agents` worker (docs/avatar.md#the-live-avatar-agent)."""

    default_auto_field = "django.db.models.BigAutoField"
    name = "channels_app.liveavatar"
    label = "liveavatar"
    verbose_name = "Live Avatar"
