from typing import Any

from django import forms
from django.contrib import admin
from django.http import HttpRequest

from .models import Membership, ProviderSecret, Tenant, TenantOrigin
from .scoping import TenantScopedAdmin


@admin.register(Tenant)
class TenantAdmin(TenantScopedAdmin):
    list_display = ["name", "slug", "audio_retention_days", "created_at"]
    search_fields = ["name", "slug"]
    prepopulated_fields = {"slug": ["name"]}


@admin.register(Membership)
class MembershipAdmin(TenantScopedAdmin):
    list_display = ["user", "tenant", "role", "created_at"]
    list_filter = ["role", "tenant"]
    search_fields = ["user__username", "tenant__name"]
    raw_id_fields = ["user"]


class ProviderSecretForm(forms.ModelForm):
    value = forms.CharField(
        widget=forms.PasswordInput(render_value=False),
        strip=False,
        required=False,
        help_text="Write-only: stored encrypted and never shown again. Leave blank to keep the "
        "stored value.",
    )

    class Meta:
        model = ProviderSecret
        fields = ["name"]

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if self.instance.pk is None and not data.get("value"):
            self.add_error("value", "A new secret needs its value.")
        return data


@admin.register(ProviderSecret)
class ProviderSecretAdmin(TenantScopedAdmin):
    """Tenants' provider keys: names listed, values write-only."""

    form = ProviderSecretForm
    fields = ["name", "value", "updated_at"]
    readonly_fields = ["updated_at"]
    list_display = ["name", "tenant", "updated_at"]
    search_fields = ["name"]

    def save_model(
        self, request: HttpRequest, obj: ProviderSecret, form: Any, change: bool
    ) -> None:
        if form.cleaned_data.get("value"):
            obj.set_value(form.cleaned_data["value"])
        super().save_model(request, obj, form, change)


@admin.register(TenantOrigin)
class TenantOriginAdmin(TenantScopedAdmin):
    """Sites whose pages may call the chat endpoints with browser tokens (CORS)."""

    list_display = ["origin", "tenant", "created_at"]
    search_fields = ["origin"]
