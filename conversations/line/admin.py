"""Operators' LINE pages: channels, the events received, and sending a message to a chat."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.db.models import OuterRef, QuerySet, Subquery
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.text import Truncator

from avatarsite.tenants.provider_secrets import describe
from avatarsite.tenants.scoping import TenantScopedAdmin
from characters.times import with_zone
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


STATUS_COLOURS: dict[str, str] = {
    LineEvent.Status.FAILED: "#ba2121",
    LineEvent.Status.DONE: "#2e7d32",
}


@admin.register(LineEvent)
class LineEventAdmin(TenantScopedAdmin):
    """Events as they read: when (on the character's clock), who sent what, and what was done."""

    list_display = ("received", "on", "sender", "said", "what_was_done")
    list_filter = ("status", "event_type", "source_type", "is_redelivery", "channel")
    search_fields = ("webhook_event_id", "source_id", "sender_id", "text", "outcome")
    date_hierarchy = "received_at"
    list_select_related = ("channel__character",)

    def get_queryset(self, request: HttpRequest) -> QuerySet[LineEvent]:
        # The sender's name as the character knows them (their one-to-one chat's end user).
        named = ChannelIdentity.objects.filter(
            tenant_id=OuterRef("tenant_id"),
            channel=IDENTITY_CHANNELS["user"],
            external_id=OuterRef("sender_id"),
        ).values("end_user__display_name")[:1]
        return super().get_queryset(request).annotate(sender_name=Subquery(named))

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    @admin.display(description="received", ordering="received_at")
    def received(self, event: LineEvent) -> SafeString | str:
        return with_zone(event.received_at, event.channel.character.zone)

    @admin.display(description="channel", ordering="channel__slug")
    def on(self, event: LineEvent) -> str:
        return event.channel.slug

    @admin.display(description="sender", ordering="sender_id")
    def sender(self, event: LineEvent) -> SafeString | str:
        if not event.sender_id:
            return "-"
        name = getattr(event, "sender_name", None) or event.sender_id[:9] + "…"
        return format_html('<span title="{}">{}</span>', event.sender_id, name)

    @admin.display(description="text")
    def said(self, event: LineEvent) -> SafeString:
        return format_html(
            '<div style="min-width: 10em; white-space: normal">{}</div>',
            Truncator(event.text).chars(200) or f"({event.event_type})",
        )

    @admin.display(description="outcome", ordering="status")
    def what_was_done(self, event: LineEvent) -> SafeString:
        """The status, then what was done (or why not), redeliveries and skipped duplicates."""
        notes = [
            *(["a redelivery"] if event.is_redelivery else []),
            *([f"{event.duplicates} later delivery(ies) skipped"] if event.duplicates else []),
        ]
        return format_html(
            '<div style="min-width: 14em; white-space: normal">'
            '<strong style="color: {}">{}</strong> {}{}</div>',
            STATUS_COLOURS.get(event.status, "inherit"),
            event.get_status_display(),
            event.outcome or "",
            f" ({'; '.join(notes)})" if notes else "",
        )


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
