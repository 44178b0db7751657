"""Operators see, correct, pin and delete what characters remember of each person, and set
each character's recall and retention, walled off by tenant like every admin page."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from avatarsite.tenants.scoping import TenantScopedAdmin

from .models import EmbeddingProvider, MemoryItem, MemorySettings


@admin.register(MemoryItem)
class MemoryItemAdmin(TenantScopedAdmin):
    list_display = ["kind", "short_content", "character", "end_user", "occurred_at", "pinned"]
    list_filter = ["kind", "character", "pinned", "index_state"]
    list_editable = ["pinned"]
    search_fields = ["content", "reply", "subject", "key", "end_user__display_name"]
    date_hierarchy = "occurred_at"
    raw_id_fields = ["end_user"]
    readonly_fields = ["key", "source", "index_state", "embedding_model", "created_at"]
    fields = [
        "kind",
        "character",
        "end_user",
        "key",
        "subject",
        "content",
        "reply",
        "diary_date",
        "occurred_at",
        "pinned",
        "session_id",
        "channel",
        "source",
        "metadata",
        "index_state",
        "embedding_model",
        "created_at",
    ]
    actions = ["pin", "unpin"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # memories come from conversations, diaries and the memory API

    @admin.display(description="content")
    def short_content(self, item: MemoryItem) -> str:
        return item.content[:80]

    def save_model(self, request: HttpRequest, obj: MemoryItem, form: Any, change: bool) -> None:
        if change and {"content", "reply", "subject"} & set(form.changed_data):
            obj.index_state = MemoryItem.Index.PENDING  # edited words: embedded again
        super().save_model(request, obj, form, change)

    @admin.action(description="Pin the selected memories", permissions=["change"])
    def pin(self, request: HttpRequest, queryset: QuerySet[MemoryItem]) -> None:
        queryset.update(pinned=True)

    @admin.action(description="Unpin the selected memories", permissions=["change"])
    def unpin(self, request: HttpRequest, queryset: QuerySet[MemoryItem]) -> None:
        queryset.update(pinned=False)


@admin.register(MemorySettings)
class MemorySettingsAdmin(TenantScopedAdmin):
    list_display = ["character", "auto_recall", "recall_token_budget", "retention_days"]
    fields = ["character", "auto_recall", "recall_token_budget", "retention_days"]


@admin.register(EmbeddingProvider)
class EmbeddingProviderAdmin(TenantScopedAdmin):
    list_display = ["name", "model", "base_url", "is_active"]
    fields = ["name", "base_url", "model", "api_key_env", "is_active"]
