"""Staff roles in a tenant, as Django permissions (docs/security.md).

A membership gives a staff user one role in one tenant. The role grants Django model permissions
on that tenant's rows only: `TenantRoleBackend` answers `user.has_perm(perm, obj)` from the role
the user holds in `obj`'s tenant, and `user.has_perm(perm)` (no object: "may they add a
character at all?") from the union of their roles. Permissions given to the user directly or
through groups apply on the rows of every tenant they belong to. Superusers hold every
permission everywhere (Django's own rule).

- viewer: sees the tenant's rows.
- admin: also adds, changes and deletes characters, voices, guardrails, MCP servers, LINE
  channels, end users, conversations and the characters' life.
- owner: also manages the tenant's credentials: API keys, provider secrets, allowed origins.
Memberships themselves are managed by superusers.
"""

from __future__ import annotations

import functools
from typing import Any

from django.apps import apps
from django.contrib.auth.backends import BaseBackend, ModelBackend
from django.db import models

from .models import Membership, Tenant

ACTIONS = ("add", "change", "delete")
# Rows that hold or grant access: owners only.
CREDENTIALS = {"conversations.apikey", "tenants.providersecret", "tenants.tenantorigin"}


def _tenant_models() -> list[type[models.Model]]:
    """Every model whose rows belong to a tenant (they have a `tenant` foreign key)."""
    found = []
    for model in apps.get_models():
        field = next((f for f in model._meta.concrete_fields if f.name == "tenant"), None)
        if field is not None and field.related_model is Tenant:
            found.append(model)
    return found


def _perm(model: type[models.Model], action: str) -> str:
    return f"{model._meta.app_label}.{action}_{model._meta.model_name}"


@functools.cache
def role_permissions(role: str) -> frozenset[str]:
    perms: set[str] = set()
    for model in _tenant_models():
        label = model._meta.label_lower
        if model is Membership:
            if role == Membership.Role.OWNER:
                perms.add(_perm(model, "view"))
            continue
        perms.add(_perm(model, "view"))
        if role == Membership.Role.OWNER or (
            role == Membership.Role.ADMIN and label not in CREDENTIALS
        ):
            perms.update(_perm(model, action) for action in ACTIONS)
    return frozenset(perms)


def roles_of(user: Any) -> dict[int, str]:
    """{tenant id: role} of a user, read once per request (cached on the user object)."""
    if not getattr(user, "is_authenticated", False):
        return {}
    cached: dict[int, str] | None = getattr(user, "_tenant_roles", None)
    if cached is None:
        cached = dict(Membership.objects.filter(user=user).values_list("tenant_id", "role"))
        user._tenant_roles = cached
    return cached


class TenantRoleBackend(BaseBackend):
    """Model permissions from tenant roles (listed after ModelBackend in settings)."""

    def get_all_permissions(self, user_obj: Any, obj: Any = None) -> set[str]:
        if not user_obj.is_active or user_obj.is_anonymous:
            return set()
        roles = roles_of(user_obj)
        if obj is None:
            return set().union(*(role_permissions(role) for role in roles.values()))
        role = roles.get(getattr(obj, "tenant_id", None))  # type: ignore[arg-type]
        if role is None:
            return set()
        # The user's own and group permissions, which ModelBackend only grants without an
        # object, count on the rows of their tenants.
        return set(role_permissions(role)) | ModelBackend().get_all_permissions(user_obj)

    def has_perm(self, user_obj: Any, perm: str, obj: Any = None) -> bool:
        return perm in self.get_all_permissions(user_obj, obj)

    def has_module_perms(self, user_obj: Any, app_label: str) -> bool:
        return any(p.startswith(f"{app_label}.") for p in self.get_all_permissions(user_obj))
