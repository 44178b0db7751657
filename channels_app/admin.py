"""Live sessions in the admin: who is talking to which character right now, and two
commands for each: say something, or stop talking."""

from __future__ import annotations

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
            for session in queryset:
                live.speak_now(live.session_group_of(session), form.cleaned_data["text"])
            self.message_user(request, f"Sent to {queryset.count()} session(s).", messages.SUCCESS)
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
        for session in queryset:
            live.interrupt_now(live.session_group_of(session))
        self.message_user(request, f"Interrupted {queryset.count()} session(s).", messages.SUCCESS)
