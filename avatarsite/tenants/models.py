"""Tenants: the organisations of avatarsite's operators, and what every owned row shares.

This app depends on nothing else in the project, so every app may depend on it.
"""

from __future__ import annotations

import uuid
from typing import Any, ClassVar
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import RegexValidator
from django.db import models

from . import crypto

DEFAULT_TENANT_SLUG = "default"


class Tenant(models.Model):
    """An operator's organisation: its characters, keys, end users and conversations are walled
    off from every other tenant's."""

    name = models.CharField(max_length=100)
    slug = models.SlugField(unique=True)
    audio_retention_days = models.PositiveSmallIntegerField(
        default=30,
        help_text="Days recorded conversation audio is kept (characters that record audio); "
        "older recordings are deleted every night.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    # Changes whenever the tenant's configuration does (avatarsite/tenants/config_cache.py).
    config_version = models.UUIDField(default=uuid.uuid4, editable=False)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @classmethod
    def default(cls) -> Tenant:
        """The tenant rows belong to when nobody says otherwise (single-operator deployments,
        `createapikey` without `--tenant`); created by the first migration, recreated if gone."""
        tenant, _ = cls.objects.get_or_create(
            slug=DEFAULT_TENANT_SLUG, defaults={"name": "Default"}
        )
        return tenant

    @classmethod
    def named(cls, slug: str) -> Tenant:
        """The tenant with this slug, created (named after the slug) when it is new."""
        tenant, _ = cls.objects.get_or_create(slug=slug, defaults={"name": slug})
        return tenant


class TenantOwned(models.Model):
    """A row that belongs to one tenant.

    A row with a parent (a diary's character, a message's context) takes its parent's tenant
    when saved without one, so the two can never disagree by omission; `tenant_parent` names
    that foreign key. A row without a parent (a character, an API key) saved without a tenant
    goes to the default tenant. `bulk_create` bypasses `save`: its callers set the tenant.
    """

    # blank: a form or full_clean may leave it out; save() then fills it in as described above.
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="+", blank=True)

    tenant_parent: ClassVar[str | None] = None

    class Meta:
        abstract = True

    def save(self, *args: Any, **kwargs: Any) -> None:
        if self.tenant_id is None:
            self.tenant_id = self.inherited_tenant_id()
        super().save(*args, **kwargs)

    def inherited_tenant_id(self) -> int:
        parent = getattr(self, self.tenant_parent) if self.tenant_parent else None
        if parent is not None:
            return parent.tenant_id
        return Tenant.default().pk


class Membership(models.Model):
    """A staff user's role in a tenant (avatarsite/tenants/roles.py says what each allows)."""

    class Role(models.TextChoices):
        OWNER = "owner", "Owner: also API keys, provider secrets and allowed origins"
        ADMIN = "admin", "Admin: adds, changes and deletes the tenant's rows"
        VIEWER = "viewer", "Viewer: sees the tenant's rows"

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="tenant_memberships"
    )
    role = models.CharField(max_length=10, choices=Role.choices, default=Role.VIEWER)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["tenant", "user"]
        constraints = [
            models.UniqueConstraint(fields=["tenant", "user"], name="one_membership_per_tenant")
        ]

    def __str__(self) -> str:
        return f"{self.user} ({self.role} of {self.tenant})"


SECRET_NAME = RegexValidator(
    r"^[A-Za-z_][A-Za-z0-9_]*$", "Letters, digits and '_' only, e.g. OPENAI_KEY."
)


class ProviderSecret(models.Model):
    """A tenant's credential for a provider (LLM, speech, LINE, MCP), encrypted at rest.

    Characters, voices, LINE channels and MCP servers name it where they used to name an
    environment variable. The value is write-only: nothing ever shows it back.
    """

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="provider_secrets")
    name = models.CharField(
        max_length=100,
        validators=[SECRET_NAME],
        help_text="What characters, voices, LINE channels and MCP servers call it.",
    )
    ciphertext = models.TextField(editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["tenant", "name"]
        constraints = [
            models.UniqueConstraint(fields=["tenant", "name"], name="unique_secret_name")
        ]

    def __str__(self) -> str:
        return self.name

    def set_value(self, value: str) -> None:
        self.ciphertext = crypto.encrypt(value)


def validate_origin(value: str) -> None:
    parts = urlsplit(value)
    if (
        parts.scheme not in ("http", "https")
        or not parts.hostname
        or parts.path
        or parts.query
        or parts.fragment
        or parts.username
    ):
        raise ValidationError(
            "Enter an origin: scheme, host and optional port, e.g. https://shop.example.com."
        )


class TenantOrigin(models.Model):
    """A site of the tenant whose pages may call the chat endpoints with browser tokens."""

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="origins")
    origin = models.CharField(max_length=200, validators=[validate_origin])
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = "allowed origin"
        ordering = ["tenant", "origin"]
        constraints = [
            models.UniqueConstraint(fields=["tenant", "origin"], name="unique_tenant_origin")
        ]

    def __str__(self) -> str:
        return self.origin
