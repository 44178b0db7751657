"""The operator dashboard page in the admin: one tenant's or one character's turns over a
chosen window (conversations/console/figures.py computes, charts.py draws)."""

from __future__ import annotations

from datetime import UTC, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from django import forms
from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.utils import timezone

from avatarsite.tenants.models import Tenant
from avatarsite.tenants.scoping import scoped
from characters.models import Character

from . import charts
from .figures import PHASES, QUANTILES, figures
from .usage import daily_usage, totals

WINDOW_HOURS = {"1h": 1, "24h": 24, "7d": 24 * 7, "30d": 24 * 30}
WINDOW_CHOICES = [
    ("1h", "last hour"),
    ("24h", "last 24 hours"),
    ("7d", "last 7 days"),
    ("30d", "last 30 days"),
]


class DashboardForm(forms.Form):
    tenant = forms.ModelChoiceField(
        Tenant.objects.none(), required=False, empty_label="all my tenants"
    )
    character = forms.ModelChoiceField(
        Character.objects.none(), required=False, empty_label="every character"
    )
    window = forms.ChoiceField(choices=WINDOW_CHOICES, required=False)

    def __init__(self, user: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for name, model in (("tenant", Tenant), ("character", Character)):
            choice = self.fields[name]
            assert isinstance(choice, forms.ModelChoiceField)
            choice.queryset = scoped(model.objects.order_by("name"), user)


def dashboard(request: HttpRequest, model_admin: admin.ModelAdmin[Any]) -> HttpResponse:
    """Turns per hour, failure rate and phase percentiles per channel, for what the user may see
    of the chosen tenant and character (another tenant's id answers like an unknown one)."""
    if not model_admin.has_view_permission(request):
        raise PermissionDenied
    form = DashboardForm(request.user, request.GET)
    if not form.is_valid() and ("tenant" in form.errors or "character" in form.errors):
        raise Http404
    chosen = form.cleaned_data if form.is_valid() else {}
    tenant: Tenant | None = chosen.get("tenant")
    character: Character | None = chosen.get("character")
    window = chosen.get("window") or "24h"

    turns = model_admin.get_queryset(request)
    if tenant is not None:
        turns = turns.filter(tenant=tenant)
    if character is not None:
        turns = turns.filter(character=character)
    # About one character: its own clock; otherwise UTC, and the zone is always printed.
    zone = character.zone if character is not None else ZoneInfo("UTC")
    end = timezone.now().astimezone(UTC).replace(second=0, microsecond=0) + timedelta(minutes=1)
    start = end - timedelta(hours=WINDOW_HOURS[window])
    found = figures(turns, start, end, zone)
    usage = daily_usage(turns, start, end, zone)

    subject = str(character or tenant or "all my tenants")
    return TemplateResponse(
        request,
        "admin/conversations/dashboard.html",
        {
            **model_admin.admin_site.each_context(request),
            "title": f"Dashboard: {subject}",
            "opts": model_admin.model._meta,
            "form": form,
            "figures": found,
            "window_label": dict(WINDOW_CHOICES)[window],
            "zone_name": zone.key,
            "hours_chart": charts.turns_per_hour(found.hours),
            "usage": usage,
            "usage_totals": totals(usage),
            "channels": [
                {"figures": channel, "chart": charts.phase_latencies(channel)}
                for channel in found.channels
            ],
            "phase_rows": [
                (
                    label,
                    [
                        channel.percentiles[column][q]
                        for channel in found.channels
                        for q in QUANTILES
                    ],
                )
                for column, label in PHASES
            ],
        },
    )
