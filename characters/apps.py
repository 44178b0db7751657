from django.apps import AppConfig


class CharactersConfig(AppConfig):
    """Characters: persona, LLM choice, and their daily life (schedules and diaries)."""

    default_auto_field = "django.db.models.BigAutoField"
    name = "characters"

    def ready(self) -> None:
        # Connects the diary_saved announcer.
        from avatarsite.tenants.config_cache import watch

        from . import signals  # noqa: F401
        from .models import Character, DailySchedule

        # Turns read characters and today's schedule from the tenant's cached configuration.
        watch(Character, DailySchedule)
