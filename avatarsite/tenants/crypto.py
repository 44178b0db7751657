"""Encryption of tenants' provider secrets at rest: Fernet (AES-128-CBC + HMAC-SHA256) from
`cryptography`, keyed by SECRETS_ENCRYPTION_KEYS.

The first key encrypts; every key decrypts (MultiFernet), so rotation is: put a new key first,
deploy, run `manage.py rotate_secrets`, then drop the old key (docs/security.md).
"""

from __future__ import annotations

import base64
import functools

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.utils.crypto import salted_hmac


@functools.cache
def _fernet(keys: tuple[str, ...], secret_key: str) -> MultiFernet:
    if not keys:
        derived = salted_hmac(
            "avatarsite.provider-secrets", "fernet", secret=secret_key, algorithm="sha256"
        )
        keys = (base64.urlsafe_b64encode(derived.digest()).decode(),)
    try:
        return MultiFernet([Fernet(key) for key in keys])
    except ValueError as exc:
        raise ImproperlyConfigured(
            f"SECRETS_ENCRYPTION_KEYS holds a key that is not a Fernet key: {exc}"
        ) from None


def fernet() -> MultiFernet:
    return _fernet(tuple(settings.SECRETS_ENCRYPTION_KEYS), settings.SECRET_KEY)


def encrypt(value: str) -> str:
    return fernet().encrypt(value.encode()).decode()


def decrypt(token: str) -> str:
    try:
        return fernet().decrypt(token.encode()).decode()
    except InvalidToken:
        raise ImproperlyConfigured(
            "A stored provider secret cannot be decrypted: the key that encrypted it is no "
            "longer in SECRETS_ENCRYPTION_KEYS."
        ) from None


def rotate(token: str) -> str:
    """The same secret encrypted with the newest key."""
    return fernet().rotate(token.encode()).decode()
