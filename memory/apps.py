from django.apps import AppConfig


class MemoryConfig(AppConfig):
    """Long-term memory: indexed past turns, summaries and diaries a character can recall."""

    name = "memory"
    verbose_name = "Long-term memory"
