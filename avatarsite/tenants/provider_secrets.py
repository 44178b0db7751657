"""Tenants' provider secrets: LLM, speech, LINE and MCP credentials, encrypted at rest.

A secret *reference* (a character's LLM key, a voice's STT/TTS key, a LINE channel's secret and
token, an MCP server's header values and environment) names either one of its tenant's stored
secrets (`ProviderSecret`, Fernet-encrypted with `SECRETS_ENCRYPTION_KEYS`) or a platform
environment variable on `PROVIDER_ENV_ALLOWLIST`. Nothing else in the server's environment can be
named, and a platform variable is only ever sent to its provider's own endpoint: a tenant who sets
a base URL of its own must store its own key. docs/security.md explains rotation.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import connections

from .crypto import decrypt
from .models import ProviderSecret

logger = logging.getLogger(__name__)

# Where a loaded owner (character, LINE channel...) keeps its tenant's decrypted secrets, so the
# async pipeline never queries for them.
LOADED = "_tenant_secrets"


def tenant_secrets(tenant_id: int) -> dict[str, str]:
    """Every secret of the tenant, decrypted (one query)."""
    rows = ProviderSecret.objects.filter(tenant_id=tenant_id).values_list("name", "ciphertext")
    return {name: decrypt(ciphertext) for name, ciphertext in rows}


class Owned(Protocol):
    @property
    def tenant_id(self) -> int | None: ...


def load_secrets(*owners: Owned) -> None:
    """Attach their tenant's secrets to `owners` (all of one tenant); call where they are
    loaded, in synchronous code, so `secrets_of` never queries on the event loop."""
    if not owners:
        return
    secrets = tenant_secrets(owners[0].tenant_id) if owners[0].tenant_id else {}
    for owner in owners:
        owner.__dict__[LOADED] = secrets


def secrets_of(owner: Owned) -> Mapping[str, str]:
    """The secrets attached by `load_secrets`, else read now (one query)."""
    loaded: Mapping[str, str] | None = owner.__dict__.get(LOADED)
    if loaded is not None:
        return loaded
    if owner.tenant_id is None:
        return {}
    if _on_event_loop():
        # A loader forgot `load_secrets`: still answer, from a thread (the ORM refuses to run
        # on the event loop), and say so, since this blocks the loop for one query.
        logger.warning("provider secrets read on the event loop for %r; preload them", owner)
        with ThreadPoolExecutor(max_workers=1) as pool:
            loaded = pool.submit(_read_in_thread, owner.tenant_id).result()
    else:
        loaded = tenant_secrets(owner.tenant_id)
    owner.__dict__[LOADED] = loaded
    return loaded


def _read_in_thread(tenant_id: int) -> dict[str, str]:
    try:
        return tenant_secrets(tenant_id)
    finally:
        connections.close_all()  # this thread's own connection, opened for this one read


def _on_event_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def resolve(owner: Owned, name: str) -> str:
    """The value a reference names: the tenant's secret, else an allowed platform variable,
    else "" (as an unset variable: the caller reports the missing key)."""
    if not name:
        return ""
    secrets = secrets_of(owner)
    if name in secrets:
        return secrets[name]
    if name in settings.PROVIDER_ENV_ALLOWLIST:
        return os.environ.get(name, "")
    return ""


def tenant_of(row: Any) -> int | None:
    """The tenant of a row being validated: its own, else its parent's (not saved yet)."""
    if row.tenant_id is not None:
        return int(row.tenant_id)
    parent_field = getattr(row, "tenant_parent", None)
    parent = getattr(row, parent_field, None) if parent_field else None
    return None if parent is None else parent.tenant_id


def check_references(
    tenant_id: int | None, names: Iterable[str], *, endpoint: str = "", field: str
) -> None:
    """Refuse (for the admin and the REST API) references to anything but the tenant's own
    secrets and allowed platform variables, and platform variables sent to `endpoint`, a URL
    the tenant chose."""
    names = [name for name in names if name]
    if not names:
        return
    own = (
        set()
        if tenant_id is None
        else set(
            ProviderSecret.objects.filter(tenant_id=tenant_id, name__in=names).values_list(
                "name", flat=True
            )
        )
    )
    for name in names:
        if name in own:
            continue
        if name not in settings.PROVIDER_ENV_ALLOWLIST:
            raise ValidationError(
                {
                    field: f"{name!r} is not one of this tenant's provider secrets (add it "
                    "under Provider secrets) nor a platform variable this server allows "
                    "(PROVIDER_ENV_ALLOWLIST)."
                }
            )
        if endpoint:
            raise ValidationError(
                {
                    field: f"The platform key {name} is only sent to its provider's own "
                    f"endpoint, not to {endpoint}: store your own key under Provider secrets "
                    "and name it here."
                }
            )


def describe(owner: Any, name: str) -> str:
    """Where a reference points, for the admin (never the value)."""
    if not name:
        return "—"
    if name in secrets_of(owner):
        return f"{name}: tenant secret"
    if name in settings.PROVIDER_ENV_ALLOWLIST:
        state = "set" if os.environ.get(name) else "not set"
        return f"{name}: platform variable ({state})"
    return f"{name}: not allowed"
