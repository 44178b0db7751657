"""Tenants: the organisations of avatarsite's operators, and what every owned row shares.

This app depends on nothing else in the project, so every app may depend on it.
"""

from __future__ import annotations

from typing import Any, ClassVar

from django.db import models

DEFAULT_TENANT_SLUG = "default"


class Tenant(models.Model):
    """An operator's organisation: its characters, keys, end users and conversations are walled
    off from every other tenant's."""

    name = models.CharField(max_length=100)
    slug = models.SlugField(unique=True)
    created_at = models.DateTimeField(auto_now_add=True)

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
