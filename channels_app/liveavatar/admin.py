"""Live Avatar agents in the admin: their configuration, what the worker last reported, and the
Start and Stop actions (they set the flag the worker obeys)."""

from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from avatarsite.tenants.provider_secrets import describe
from avatarsite.tenants.scoping import TenantScopedAdmin

from .models import LiveAvatarAgent

STATUS_FIELDS = ("state", "session_id", "sfu_url", "last_error", "reported_at")


@admin.register(LiveAvatarAgent)
class LiveAvatarAgentAdmin(TenantScopedAdmin):
    list_display = (
        "character",
        "avatar_id",
        "enabled",
        "state",
        "session_id",
        "reported_at",
    )
    list_filter = ("enabled", "state", "asr_provider", "tts_provider")
    search_fields = ("character__name", "avatar_id", "session_id")
    list_select_related = ("character",)
    readonly_fields = ("secret", *STATUS_FIELDS, "created_at", "updated_at")
    fieldsets = (
        (
            None,
            {
                "fields": (
                    "character",
                    "base_url",
                    "api_key_env",
                    "secret",
                    "avatar_id",
                    "voice_id",
                    "asr_provider",
                    "tts_provider",
                    "tts_sample_rate",
                    "sandbox",
                    "idle_prompt",
                    "enabled",
                )
            },
        ),
        ("Reported by the worker", {"fields": (*STATUS_FIELDS, "created_at", "updated_at")}),
    )
    actions = ["start", "stop"]

    @admin.display(description="API key")
    def secret(self, agent: LiveAvatarAgent) -> str:
        """Where the name points and whether it is set; the value is never shown."""
        return describe(agent.character, agent.api_key_env) if agent.pk else "-"

    @admin.action(description="Start selected agents", permissions=["change"])
    def start(self, request: HttpRequest, queryset: QuerySet[LiveAvatarAgent]) -> None:
        count = queryset.update(enabled=True)
        self.message_user(
            request,
            f"{count} agent(s) switched on: the worker opens their sessions within "
            "seconds (its state column says when).",
            messages.SUCCESS,
        )

    @admin.action(description="Stop selected agents", permissions=["change"])
    def stop(self, request: HttpRequest, queryset: QuerySet[LiveAvatarAgent]) -> None:
        count = queryset.update(enabled=False)
        self.message_user(
            request, f"{count} agent(s) switched off: their sessions end.", messages.SUCCESS
        )
