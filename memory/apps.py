from django.apps import AppConfig


class MemoryConfig(AppConfig):
    """Long-term memory: past turns, summaries, knowledge about users and diaries a character
    can recall, searched lexically and by meaning."""

    default_auto_field = "django.db.models.BigAutoField"
    name = "memory"
    verbose_name = "Long-term memory"

    def ready(self) -> None:
        from avatarsite.tenants.config_cache import watch
        from conversations.pipeline.prompt import add_prompt_section

        from . import signals, tools  # noqa: F401  (receivers and the search_memory tool)
        from .models import MemorySettings
        from .recall import recall_section

        add_prompt_section(recall_section)
        watch(MemorySettings)
