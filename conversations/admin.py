from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from asgiref.sync import async_to_sync
from django import forms
from django.contrib import admin, messages
from django.contrib.admin.options import InlineModelAdmin
from django.db import models
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.http.response import HttpResponseBase
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.text import Truncator

from avatarsite.tenants.config_cache import changed
from avatarsite.tenants.scoping import TenantScopedAdmin, TenantScopedTabularInline
from characters.admin import CharacterAdmin as LifeCharacterAdmin
from characters.models import Character
from characters.times import with_zone

from .console.conversation import audio, conversation
from .console.views import dashboard
from .models import (
    ApiKey,
    ChannelIdentity,
    Context,
    EndUser,
    Guardrail,
    McpServer,
    Message,
    SharedMessage,
    TurnRecord,
)
from .pipeline.prompt import compose_system_prompt
from .shared_context import prune
from .speech.admin import VoiceSettingsInline


class ReadOnlyAdmin(TenantScopedAdmin):
    """Records the pipeline writes: operators read them, never edit them by hand."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


class ChannelIdentityInline(TenantScopedTabularInline):
    model = ChannelIdentity
    extra = 0
    readonly_fields = ("created_at",)


@admin.register(EndUser)
class EndUserAdmin(TenantScopedAdmin):
    list_display = ("id", "display_name", "created_at", "updated_at")
    search_fields = ("id", "display_name", "identities__external_id")
    readonly_fields = ("id", "created_at", "updated_at")
    inlines = [ChannelIdentityInline]


@admin.register(ChannelIdentity)
class ChannelIdentityAdmin(TenantScopedAdmin):
    list_display = ("channel", "external_id", "end_user", "created_at")
    list_filter = ("channel",)
    search_fields = ("external_id", "end_user__display_name")
    raw_id_fields = ("end_user",)


class MessageInline(TenantScopedTabularInline):
    model = Message
    extra = 0
    fields = ("position", "role", "content", "files", "tool_calls", "created_at")
    readonly_fields = fields
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


def conversation_link(context_id: object) -> str:
    url = reverse("admin:conversations_turnrecord_conversation", args=[context_id])
    return format_html('<a href="{}">Read</a>', url)


@admin.register(Context)
class ContextAdmin(ReadOnlyAdmin):
    list_display = ("id", "character", "end_user", "channel", "message_count", "updated", "read")
    list_filter = ("character", "channel")
    search_fields = ("id", "end_user__display_name", "messages__content")
    list_select_related = ("character", "end_user")
    readonly_fields = ("read",)
    inlines = [MessageInline]

    @admin.display(description="updated", ordering="updated_at")
    def updated(self, context: Context) -> str:
        return with_zone(context.updated_at, context.character.zone)

    @admin.display(description="conversation")
    def read(self, context: Context) -> str:
        return conversation_link(context.pk)


@admin.register(Message)
class MessageAdmin(ReadOnlyAdmin):
    list_display = ("context", "position", "role", "content", "created_at")
    list_filter = ("role", "context__character")
    search_fields = ("content", "context__id")


class FeedbackFilter(admin.SimpleListFilter):
    """End users' verdicts on answers (Dify's feedback, POST /feedback)."""

    title = "feedback"
    parameter_name = "feedback"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [
            ("any", "Any feedback"),
            ("like", "Liked"),
            ("dislike", "Disliked"),
            ("comment", "With a comment"),
        ]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        match self.value():
            case "any":
                return queryset.filter(feedback_at__isnull=False)
            case "like" | "dislike" as rating:
                return queryset.filter(feedback_rating=rating)
            case "comment":
                return queryset.exclude(feedback_content="")
        return queryset


@admin.register(TurnRecord)
class TurnRecordAdmin(ReadOnlyAdmin):
    # The phases' timings are on each record's page, the conversation view and the dashboard.
    list_display = (
        "started",
        "character",
        "status",
        "read",
        "feedback",
        "asked",
        "channel",
        "llm_first_token_ms",
        "total_ms",
    )
    list_filter = (
        "status",
        FeedbackFilter,
        "character",
        "channel",
        "provider",
        "started_at",
    )
    search_fields = (
        "id",
        "context_id",
        "session_id",
        "request_text",
        "response_text",
        "error",
        "feedback_content",
    )
    date_hierarchy = "started_at"
    list_select_related = ("character",)
    readonly_fields = ("read",)

    @admin.display(description="started", ordering="started_at")
    def started(self, record: TurnRecord) -> str:
        return with_zone(record.started_at, record.character.zone)

    @admin.display(description="request")
    def asked(self, record: TurnRecord) -> str:
        return Truncator(record.request_text).chars(60)

    @admin.display(description="feedback", ordering="feedback_at")
    def feedback(self, record: TurnRecord) -> str:
        if not (record.feedback_rating or record.feedback_content):
            return "-"
        return format_html(
            "<strong>{}</strong> {}",
            record.get_feedback_rating_display() or "",
            Truncator(record.feedback_content).chars(80),
        )

    @admin.display(description="conversation")
    def read(self, record: TurnRecord) -> str:
        return conversation_link(record.context_id)

    def get_urls(self) -> list[URLPattern]:
        views = [
            path(
                "dashboard/",
                self.admin_site.admin_view(self.dashboard),
                name="conversations_turnrecord_dashboard",
            ),
            path(
                "conversation/<uuid:context_id>/",
                self.admin_site.admin_view(self.conversation),
                name="conversations_turnrecord_conversation",
            ),
            path(
                "<uuid:object_id>/audio/<str:which>/",
                self.admin_site.admin_view(self.audio),
                name="conversations_turnrecord_audio",
            ),
        ]
        return [*views, *super().get_urls()]

    def dashboard(self, request: HttpRequest) -> HttpResponse:
        return dashboard(request, self)

    def conversation(self, request: HttpRequest, context_id: uuid.UUID) -> HttpResponse:
        return conversation(request, self, context_id)

    def audio(self, request: HttpRequest, object_id: uuid.UUID, which: str) -> HttpResponseBase:
        return audio(request, self, str(object_id), which)


@admin.register(ApiKey)
class ApiKeyAdmin(TenantScopedAdmin):
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
        revoked = queryset.filter(revoked_at__isnull=True)
        tenants = set(revoked.values_list("tenant_id", flat=True))
        count = revoked.update(revoked_at=timezone.now())
        changed(*tenants)  # the keys are refused at once, whatever process sees them next
        messages.success(request, f"Revoked {count} key(s).")


@admin.register(Guardrail)
class GuardrailAdmin(TenantScopedAdmin):
    list_display = ("name", "character", "applies_to", "kind", "action", "is_active")
    list_filter = ("applies_to", "kind", "action", "is_active", "character")
    search_fields = ("name", "pattern", "question", "message")
    fieldsets = (
        (None, {"fields": ("name", "character", "applies_to", "is_active")}),
        ("Check", {"fields": ("kind", "pattern", "question", "class_path")}),
        ("Then", {"fields": ("action", "message")}),
    )


@admin.register(McpServer)
class McpServerAdmin(TenantScopedAdmin):
    list_display = ("name", "transport", "character", "enabled", "updated_at")
    list_filter = ("transport", "enabled", "character")
    search_fields = ("name", "command", "url")
    readonly_fields = ("created_at", "updated_at")
    fieldsets = (
        (None, {"fields": ("name", "transport", "character", "enabled")}),
        ("Tools", {"fields": ("dynamic_tools", "instruction")}),
        ("stdio", {"fields": ("command", "args", "environment")}),
        ("Streamable HTTP", {"fields": ("url", "headers")}),
        ("Changes", {"fields": ("created_at", "updated_at")}),
    )

    # A stdio server runs a command on this server: superusers only (docs/security.md).
    def formfield_for_choice_field(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        if db_field.name == "transport" and not request.user.is_superuser:
            kwargs["choices"] = [(McpServer.Transport.HTTP, McpServer.Transport.HTTP.label)]
        return super().formfield_for_choice_field(db_field, request, **kwargs)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        if obj is not None and obj.transport == McpServer.Transport.STDIO:
            return request.user.is_superuser
        return super().has_change_permission(request, obj)


class SharedMessageInline(TenantScopedTabularInline):
    """The character's shared context (docs/turn.md#shared-context), newest first."""

    model = SharedMessage
    fields = ("content", "source", "created_at")
    readonly_fields = ("source", "created_at")
    extra = 1
    formfield_overrides = {models.TextField: {"widget": forms.Textarea(attrs={"rows": 2})}}


class PreviewForm(forms.Form):
    user = forms.ModelChoiceField(
        EndUser.objects.all(), required=False, help_text="Blank: a user without a name."
    )
    at = forms.DateTimeField(
        required=False, label="At (UTC)", help_text="Blank: now. YYYY-MM-DD HH:MM, in UTC."
    )


# The character page is characters' own, plus what conversations knows of a character: its
# voice, and the system prompt a turn would give it (characters imports nothing of ours).
admin.site.unregister(Character)


@admin.register(Character)
class CharacterAdmin(LifeCharacterAdmin):
    def get_inlines(
        self, request: HttpRequest, obj: Character | None
    ) -> list[type[InlineModelAdmin[Any, Any]]]:
        return [VoiceSettingsInline, SharedMessageInline, *super().get_inlines(request, obj)]

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        super().save_related(request, form, formsets, change)
        prune(form.instance)  # what staff added here obeys the retention as `share` does

    @admin.display(description="Tools")
    def life_links(self, obj: Character) -> str:
        if obj.pk is None:
            return "-"
        preview = reverse("admin:characters_character_preview_prompt", args=[obj.pk])
        board = reverse("admin:conversations_turnrecord_dashboard")
        return format_html(
            '<a href="{}">Preview the system prompt</a> · <a href="{}?character={}">Dashboard</a>'
            " · {}",
            preview,
            board,
            obj.pk,
            super().life_links(obj),
        )

    def get_urls(self) -> list[URLPattern]:
        preview = path(
            "<int:object_id>/preview-prompt/",
            self.admin_site.admin_view(self.preview_prompt),
            name="characters_character_preview_prompt",
        )
        return [preview, *super().get_urls()]

    def preview_prompt(self, request: HttpRequest, object_id: int) -> HttpResponse:
        """The system prompt a chosen user would get from this character, now or at a time."""
        character = self.get_object(request, str(object_id))  # another tenant's: 404
        if not self.has_view_permission(request, character):
            return HttpResponse(status=403)
        form = PreviewForm(request.GET or None)
        users = form.fields["user"]
        assert isinstance(users, forms.ModelChoiceField)
        users.queryset = EndUser.objects.filter(tenant_id=character.tenant_id)
        prompt = None
        if form.is_valid():
            at: datetime | None = form.cleaned_data["at"]
            prompt = async_to_sync(compose_system_prompt)(
                character, form.cleaned_data["user"], None, at or timezone.now()
            )
        return TemplateResponse(
            request,
            "admin/characters/preview_prompt.html",
            {
                **self.admin_site.each_context(request),
                "title": f"System prompt of {character}",
                "opts": self.model._meta,
                "original": character,
                "form": form,
                "prompt": prompt,
            },
        )
