from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone

from .models import (
    ApiKey,
    ChannelIdentity,
    Context,
    EndUser,
    Guardrail,
    McpServer,
    Message,
    TurnRecord,
)


class ReadOnlyAdmin(admin.ModelAdmin):
    """Records the pipeline writes: operators read them, never edit them by hand."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


class ChannelIdentityInline(admin.TabularInline):
    model = ChannelIdentity
    extra = 0
    readonly_fields = ("created_at",)


@admin.register(EndUser)
class EndUserAdmin(admin.ModelAdmin):
    list_display = ("id", "display_name", "created_at", "updated_at")
    search_fields = ("id", "display_name", "identities__external_id")
    readonly_fields = ("id", "created_at", "updated_at")
    inlines = [ChannelIdentityInline]


@admin.register(ChannelIdentity)
class ChannelIdentityAdmin(admin.ModelAdmin):
    list_display = ("channel", "external_id", "end_user", "created_at")
    list_filter = ("channel",)
    search_fields = ("external_id", "end_user__display_name")
    raw_id_fields = ("end_user",)


class MessageInline(admin.TabularInline):
    model = Message
    extra = 0
    fields = ("position", "role", "content", "files", "tool_calls", "created_at")
    readonly_fields = fields
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(Context)
class ContextAdmin(ReadOnlyAdmin):
    list_display = ("id", "character", "end_user", "channel", "message_count", "updated_at")
    list_filter = ("character", "channel")
    search_fields = ("id", "end_user__display_name", "messages__content")
    list_select_related = ("character", "end_user")
    inlines = [MessageInline]


@admin.register(Message)
class MessageAdmin(ReadOnlyAdmin):
    list_display = ("context", "position", "role", "content", "created_at")
    list_filter = ("role", "context__character")
    search_fields = ("content", "context__id")


@admin.register(TurnRecord)
class TurnRecordAdmin(ReadOnlyAdmin):
    list_display = (
        "started_at",
        "character",
        "status",
        "channel",
        "provider",
        "llm_first_token_ms",
        "first_chunk_ms",
        "tool_ms",
        "llm_ms",
        "total_ms",
    )
    list_filter = ("status", "character", "channel", "provider", "started_at")
    search_fields = ("id", "context_id", "session_id", "request_text", "response_text", "error")
    date_hierarchy = "started_at"
    list_select_related = ("character",)


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    list_display = ("name", "prefix", "created_at", "last_used_at", "revoked_at")
    list_filter = ("revoked_at",)
    search_fields = ("name", "prefix")
    readonly_fields = ("prefix", "created_at", "last_used_at")
    actions = ["revoke"]

    def save_model(self, request: HttpRequest, obj: ApiKey, form: object, change: bool) -> None:
        if change:
            super().save_model(request, obj, form, change)
            return
        key, raw_key = ApiKey.issue(obj.name, obj.tenant if obj.tenant_id else None)
        obj.pk, obj.prefix = key.pk, key.prefix
        messages.warning(request, f"New API key (shown only once, copy it now): {raw_key}")

    @admin.action(description="Revoke selected keys")
    def revoke(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> None:
        count = queryset.filter(revoked_at__isnull=True).update(revoked_at=timezone.now())
        messages.success(request, f"Revoked {count} key(s).")


@admin.register(Guardrail)
class GuardrailAdmin(admin.ModelAdmin):
    list_display = ("name", "character", "applies_to", "kind", "action", "is_active")
    list_filter = ("applies_to", "kind", "action", "is_active", "character")
    search_fields = ("name", "pattern", "question", "message")
    fieldsets = (
        (None, {"fields": ("name", "character", "applies_to", "is_active")}),
        ("Check", {"fields": ("kind", "pattern", "question")}),
        ("Then", {"fields": ("action", "message")}),
    )


@admin.register(McpServer)
class McpServerAdmin(admin.ModelAdmin):
    list_display = ("name", "transport", "character", "enabled", "updated_at")
    list_filter = ("transport", "enabled", "character")
    search_fields = ("name", "command", "url")
    readonly_fields = ("created_at", "updated_at")
    fieldsets = (
        (None, {"fields": ("name", "transport", "character", "enabled")}),
        ("stdio", {"fields": ("command", "args", "environment")}),
        ("Streamable HTTP", {"fields": ("url", "headers")}),
        ("Changes", {"fields": ("created_at", "updated_at")}),
    )
