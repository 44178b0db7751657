from django.apps import AppConfig


class CharactersConfig(AppConfig):
    """Characters: persona, voice, LLM choice and (later) their daily life."""

    default_auto_field = "django.db.models.BigAutoField"
    name = "characters"
