from importlib import import_module

from django.apps import AppConfig
from django.conf import settings


class ConversationsConfig(AppConfig):
    """End users, contexts, messages and the turn pipeline that every transport calls."""

    default_auto_field = "django.db.models.BigAutoField"
    name = "conversations"

    def ready(self) -> None:
        # Tools register themselves when their module is imported.
        for module in settings.TOOL_MODULES:
            import_module(module)
