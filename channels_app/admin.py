"""Live sessions in the admin: who is talking to which character right now, and two
commands for each: say something, or stop talking."""

from __future__ import annotations

from collections.abc import Callable

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse

from avatarsite.tenants.scoping import TenantScopedAdmin

from . import live
from .models import LiveSession, LiveSessionQuerySet


class SpeakForm(forms.Form):
    text = forms.CharField(
        max_length=live.MAX_SPEAK_CHARS, widget=forms.Textarea(attrs={"rows": 3, "cols": 60})
    )


@admin.register(LiveSession)
class LiveSessionAdmin(TenantScopedAdmin):
    list_display = ("session_id", "channel", "character", "user_id", "started_at")
    list_filter = ("channel", "character")
    search_fields = ("session_id", "user_id")
    readonly_fields = [f.name for f in LiveSession._meta.fields]
    actions = ["speak", "interrupt"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[LiveSession]:
        """Only sessions a server process still renews: a dead process's sessions expire."""
        sessions = super().get_queryset(request)
        assert isinstance(sessions, LiveSessionQuerySet)
        return sessions.alive()

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    @admin.action(description="Make selected sessions say…", permissions=["view"])
    def speak(self, request: HttpRequest, queryset: QuerySet[LiveSession]) -> HttpResponse | None:
        form = SpeakForm(request.POST if "text" in request.POST else None)
        if form.is_valid():
            text = form.cleaned_data["text"]
            sent = self._command(request, queryset, lambda group: live.speak_now(group, text))
            if sent is not None:
                self.message_user(request, f"Sent to {sent} session(s).", messages.SUCCESS)
            return None
        context = {
            **self.admin_site.each_context(request),
            "title": "Make live sessions speak",
            "form": form,
            "sessions": queryset,
            "opts": self.model._meta,
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
        }
        return TemplateResponse(request, "admin/channels_app/livesession/speak.html", context)

    @admin.action(description="Interrupt selected sessions", permissions=["view"])
    def interrupt(self, request: HttpRequest, queryset: QuerySet[LiveSession]) -> None:
        interrupted = self._command(request, queryset, live.interrupt_now)
        if interrupted is not None:
            self.message_user(request, f"Interrupted {interrupted} session(s).", messages.SUCCESS)

    def _command(
        self,
        request: HttpRequest,
        queryset: QuerySet[LiveSession],
        send: Callable[[str], None],
    ) -> int | None:
        """Send to each session's group; how many, or None (and an error shown) when the
        channel layer cannot be reached."""
        sessions = list(queryset)
        try:
            for session in sessions:
                send(live.session_group_of(session))
        except live.LiveControlUnavailable as exc:
            self.message_user(request, str(exc), messages.ERROR)
            return None
        return len(sessions)
