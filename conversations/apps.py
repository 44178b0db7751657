from importlib import import_module

from django.apps import AppConfig
from django.conf import settings


class ConversationsConfig(AppConfig):
    """End users, contexts, messages and the turn pipeline that every transport calls."""

    default_auto_field = "django.db.models.BigAutoField"
    name = "conversations"

    def ready(self) -> None:
        from django.db.models.signals import post_delete

        from avatarsite.tenants.config_cache import watch
        from characters.life import bridge

        from .life_bridge import ConversationsBridge
        from .models import ApiKey, Guardrail, McpServer, SharedMessage, TurnRecord
        from .recordings import delete_with_record
        from .tools import registry
        from .tools.mcp_servers import sessions
        from .tools.offer import load_selector

        # Admission and turns read these from the tenant's cached configuration.
        watch(ApiKey, Guardrail, McpServer, SharedMessage)
        registry.add_source(sessions.load)
        # Tools register themselves when their module is imported: every character's own
        # (diary, user name) first, then the deployment's.
        import_module(f"{self.name}.tools.builtin")
        for module in settings.TOOL_MODULES:
            import_module(module)
        # A TOOL_SELECTOR that does not import fails at start-up, not on a user's turn.
        load_selector()
        # Characters' life is written with the character's LLM, about its conversations.
        bridge.connect(ConversationsBridge())
        # A turn record's audio files are deleted with it.
        post_delete.connect(delete_with_record, sender=TurnRecord)
