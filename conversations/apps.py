from django.apps import AppConfig


class ConversationsConfig(AppConfig):
    """End users, contexts, messages and the turn pipeline that every transport calls."""

    default_auto_field = "django.db.models.BigAutoField"
    name = "conversations"
