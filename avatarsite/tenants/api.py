"""Staff REST API for a tenant's provider secrets (write-only) and allowed origins."""

from __future__ import annotations

import copy
from typing import Any

from django.core.validators import ProhibitNullCharactersValidator
from django.db.models import Model
from rest_framework import mixins, serializers, viewsets
from rest_framework.validators import ProhibitSurrogateCharactersValidator

from . import crypto
from .models import ProviderSecret, TenantOrigin
from .scoping import TenantScopedViewSetMixin


def unique_in_tenant(serializer: serializers.ModelSerializer, field: str, value: str) -> str:
    """`value` unless another row of the same tenant has it (the tenant is not a field)."""
    tenant = serializer_tenant(serializer)
    instance = serializer.instance
    model: type[Model] = serializer.Meta.model
    taken = model._default_manager.filter(tenant=tenant, **{field: value})
    if instance is not None:
        taken = taken.exclude(pk=instance.pk)
    if taken.exists():
        raise serializers.ValidationError(f"This tenant already has one with this {field}.")
    return value


def serializer_tenant(serializer: serializers.BaseSerializer) -> Any:
    """The tenant of the serializer's row: its own, or for a new one the creating view's."""
    instance = serializer.instance
    return instance.tenant if instance is not None else serializer.context["view"].creation_tenant()


class InTenant(serializers.SlugRelatedField):
    """A related row named by `slug_field` among the rows of the serializer's tenant only, so
    another tenant's answers exactly as an unknown one."""

    # A NUL or a lone surrogate never names a row, and PostgreSQL refuses to even look.
    unstorable = (ProhibitNullCharactersValidator(), ProhibitSurrogateCharactersValidator())

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, str):
            for refuse in self.unstorable:
                refuse(data)
        return super().to_internal_value(data)

    def get_queryset(self) -> Any:
        rows = super().get_queryset()
        assert rows is not None and self.parent is not None
        return rows.filter(tenant=serializer_tenant(self.parent))


def clean_as_model(serializer: serializers.ModelSerializer, attrs: dict[str, Any]) -> None:
    """Run the model's own cross-field rules (`Model.clean`) on the row as it would be saved;
    their ValidationError answers 400 like the serializer's own."""
    instance = serializer.instance
    model: type[Model] = serializer.Meta.model
    candidate: Any = copy.copy(instance) if instance is not None else model()
    if candidate.tenant_id is None:
        candidate.tenant = serializer_tenant(serializer)
    for name, value in attrs.items():
        setattr(candidate, name, value)
    candidate.clean()


class ProviderSecretSerializer(serializers.ModelSerializer):
    value = serializers.CharField(
        write_only=True,
        trim_whitespace=False,
        help_text="Stored encrypted; never shown back.",
    )

    class Meta:
        model = ProviderSecret
        fields = ["id", "name", "value", "created_at", "updated_at"]
        read_only_fields = ["id", "created_at", "updated_at"]

    def validate_name(self, name: str) -> str:
        return unique_in_tenant(self, "name", name)

    def save(self, **kwargs: Any) -> ProviderSecret:
        value = self.validated_data.pop("value", None)
        if value is not None:
            kwargs["ciphertext"] = crypto.encrypt(value)
        return super().save(**kwargs)


class ProviderSecretViewSet(TenantScopedViewSetMixin, viewsets.ModelViewSet):
    """Names and dates only: a value goes in with POST/PUT/PATCH and never comes back out."""

    queryset = ProviderSecret.objects.all()
    serializer_class = ProviderSecretSerializer


class TenantOriginSerializer(serializers.ModelSerializer):
    class Meta:
        model = TenantOrigin
        fields = ["id", "origin", "created_at"]
        read_only_fields = ["id", "created_at"]

    def validate_origin(self, origin: str) -> str:
        return unique_in_tenant(self, "origin", origin)


class TenantOriginViewSet(
    TenantScopedViewSetMixin,
    mixins.ListModelMixin,
    mixins.CreateModelMixin,
    mixins.RetrieveModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet,
):
    """Sites whose pages may call the chat endpoints with browser tokens."""

    queryset = TenantOrigin.objects.all()
    serializer_class = TenantOriginSerializer
