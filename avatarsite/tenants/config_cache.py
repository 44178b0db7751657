"""A tenant's configuration as the turn path reads it, cached in each server process.

Every turn used to read the same rows again: the API key, the character and its voice, the
tenant's provider secrets, guardrails, MCP servers, the day's schedule, memory settings. They
change when an operator edits them, not per turn. So each process keeps what it read, per
tenant, stamped with the tenant's `config_version`; one indexed read of that column per request
says whether the stamp still holds.

Saving or deleting a row of a watched model (`watch`) gives its tenant a new random version in
the same transaction, so the change and the new version commit together and every process,
whatever wrote the change (admin, REST API, a Celery task, a shell), sees it on its next
request: a character edit shows on the next turn, a revoked key is refused at once. Bulk
`QuerySet.update()` sends no signals: code that updates watched rows that way calls `changed`.

A version is random rather than counted, so a tenant deleted and recreated under the same id
(or a test database flushed between tests) never matches what an earlier one left cached.

Only what exists is cached: a miss (an unknown slug, a wrong key) is read again each time, so
nobody can fill the cache with made-up names. The cached objects are shared by concurrent turns
and never modified by them.

Synchronous ORM code, like the admission path that calls it.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

from django.db import connection, models
from django.db.models.signals import m2m_changed, post_delete, post_save

from .models import Tenant

T = TypeVar("T")


class TenantConfig:
    """One tenant's cached configuration at one version."""

    def __init__(self, tenant_id: int, version: uuid.UUID | None) -> None:
        self.tenant_id = tenant_id
        self.version = version
        self._values: dict[Hashable, Any] = {}

    def get(self, key: Hashable, load: Callable[[], T | None]) -> T | None:
        """The value cached under `key`, else `load()`'s, kept unless it is None."""
        try:
            return self._values[key]
        except KeyError:
            pass
        value = load()
        if value is not None and self.version is not None:
            self._values[key] = value
        return value


_tenants: dict[int, TenantConfig] = {}
_lock = threading.Lock()


def current_version(tenant_id: int) -> uuid.UUID | None:
    """The tenant's configuration version as committed now (None: no such tenant)."""
    # A plain cursor: this runs on every request, and the ORM's query building would cost
    # more than the query.
    table = Tenant._meta.db_table
    column = connection.ops.quote_name("config_version")
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {column} FROM {table} WHERE id = %s", [tenant_id])
        row = cursor.fetchone()
    if row is None:
        return None
    value = row[0]
    return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))


def tenant_config(tenant_id: int) -> TenantConfig:
    """The tenant's configuration as of now: what this process cached, if the tenant's version
    has not moved since, else an empty cache at the new version."""
    version = current_version(tenant_id)
    config = _tenants.get(tenant_id)
    if config is None or config.version != version:
        with _lock:
            config = _tenants.get(tenant_id)
            if config is None or config.version != version:
                config = _tenants[tenant_id] = TenantConfig(tenant_id, version)
    return config


def cached(tenant_id: int, key: Hashable, load: Callable[[], T | None]) -> T | None:
    """What `load()` reads of the tenant's configuration, from this process's cache while the
    tenant's version holds (`key` names it within the tenant)."""
    return tenant_config(tenant_id).get(key, load)


def changed(*tenant_ids: int | None) -> None:
    """Give these tenants a new configuration version (in the caller's transaction, if any)."""
    ids = {tenant_id for tenant_id in tenant_ids if tenant_id is not None}
    for tenant_id in ids:
        Tenant.objects.filter(pk=tenant_id).update(config_version=uuid.uuid4())


def _tenant_of(instance: models.Model) -> int | None:
    tenant_id = getattr(instance, "tenant_id", None)
    return tenant_id if isinstance(tenant_id, int) else None


def _saved_or_deleted(sender: type[models.Model], instance: models.Model, **_: Any) -> None:
    changed(_tenant_of(instance))


def _relation_changed(
    sender: type[models.Model], instance: models.Model, action: str, **_: Any
) -> None:
    if action in ("post_add", "post_remove", "post_clear"):
        changed(_tenant_of(instance))


def watch(*watched: type[models.Model]) -> None:
    """Saving or deleting a row of these models (each with a `tenant` key) changes its tenant's
    configuration version; so does changing one of their many-to-many relations."""
    for model in watched:
        uid = f"tenant-config:{model._meta.label}"
        post_save.connect(_saved_or_deleted, sender=model, dispatch_uid=uid, weak=False)
        post_delete.connect(_saved_or_deleted, sender=model, dispatch_uid=uid, weak=False)
        for field in model._meta.many_to_many:
            through = field.remote_field.through
            m2m_changed.connect(
                _relation_changed, sender=through, dispatch_uid=f"{uid}:{field.name}", weak=False
            )
