"""Operators' LINE pages: channels, the events received, and sending a message to a chat."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse

from avatarsite.tenants.provider_secrets import describe
from avatarsite.tenants.scoping import TenantScopedAdmin
from conversations.admin import ChannelIdentityAdmin
from conversations.models import ChannelIdentity

from . import tasks
from .client import LineApiError, LineNotConfigured
from .handling import IDENTITY_CHANNELS, push_text
from .models import LineChannel, LineEvent
from .replies import TEXT_LIMIT
from .webhook import webhook_path


@admin.register(LineChannel)
class LineChannelAdmin(TenantScopedAdmin):
    list_display = ("slug", "character", "webhook_path", "secrets", "is_default", "is_active")
    list_filter = ("is_active", "is_default")
    search_fields = ("slug", "character__name")
    readonly_fields = ("webhook_path", "secrets", "created_at", "updated_at")
    fields = (
        "character",
        "slug",
        "webhook_path",
        "channel_secret_env",
        "access_token_env",
        "secrets",
        "loading_seconds",
        "is_default",
        "is_active",
        "created_at",
        "updated_at",
    )

    @admin.display(description="webhook URL path")
    def webhook_path(self, channel: LineChannel) -> str:
        return webhook_path(channel.slug) if channel.slug else "-"

    @admin.display(description="secrets")
    def secrets(self, channel: LineChannel) -> str:
        """Where each name points and whether it is set; values are never shown."""
        if channel.pk is None:
            return "-"
        return ", ".join(
            describe(channel.character, name)
            for name in (channel.channel_secret_env, channel.access_token_env)
        )


@admin.register(LineEvent)
class LineEventAdmin(TenantScopedAdmin):
    list_display = (
        "received_at",
        "channel",
        "event_type",
        "source_type",
        "status",
        "is_redelivery",
        "duplicates",
        "outcome",
    )
    list_filter = ("status", "event_type", "source_type", "is_redelivery", "channel")
    search_fields = ("webhook_event_id", "source_id", "outcome")
    date_hierarchy = "received_at"
    list_select_related = ("channel",)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


class LineMessageForm(forms.Form):
    VERBATIM = "verbatim"
    START = "start"

    channel = forms.ModelChoiceField(
        LineChannel.objects.filter(is_active=True).select_related("character"),
        help_text="The character's channel the chat belongs to.",
    )
    mode = forms.ChoiceField(
        choices=[
            (VERBATIM, "Send this text exactly as written"),
            (START, "Have the character start a conversation, following this instruction"),
        ],
        widget=forms.RadioSelect,
        initial=VERBATIM,
    )
    text = forms.CharField(widget=forms.Textarea(attrs={"rows": 5}), max_length=TEXT_LIMIT)


@admin.action(description="Send a LINE message")
def send_line_message(
    modeladmin: TenantScopedAdmin, request: HttpRequest, queryset: QuerySet[ChannelIdentity]
) -> HttpResponse | None:
    identities = list(queryset.filter(channel__in=IDENTITY_CHANNELS.values()))
    if not identities:
        modeladmin.message_user(
            request, "None of the selected identities is a LINE chat.", messages.WARNING
        )
        return None
    form = LineMessageForm(request.POST if "apply" in request.POST else None)
    if not form.is_valid():
        context = {
            **modeladmin.admin_site.each_context(request),
            "title": "Send a LINE message",
            "form": form,
            "identities": identities,
            "action": "send_line_message",
            "opts": modeladmin.model._meta,
        }
        return TemplateResponse(request, "admin/line/send_message.html", context)
    channel, text = form.cleaned_data["channel"], form.cleaned_data["text"]
    for identity in identities:
        to = identity.external_id
        if form.cleaned_data["mode"] == LineMessageForm.START:
            tasks.start_conversation.delay(channel.pk, to, text)
            modeladmin.message_user(request, f"{to}: the character will write shortly.")
            continue
        try:
            push_text(channel, to, text)
        except (LineApiError, LineNotConfigured) as exc:
            modeladmin.message_user(request, f"{to}: not sent: {exc}", messages.ERROR)
        else:
            modeladmin.message_user(request, f"{to}: sent.")
    return None


# Operators push from the identity list: conversations knows nothing of LINE, so LINE registers
# that list with its action added.
admin.site.unregister(ChannelIdentity)


@admin.register(ChannelIdentity)
class ChannelIdentityWithLineAdmin(ChannelIdentityAdmin):
    actions = [send_line_message]
