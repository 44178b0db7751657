"""Browser tokens: short-lived credentials for pages on a tenant's own sites (docs/security.md).

A browser must never hold an API key, so the tenant's backend trades its key for a token
(`POST /api/tokens`) and hands that to the page. A token is signed with HMAC-SHA256 (Django's
signer, keyed by DJANGO_SECRET_KEY) and names the key that minted it, the character, optionally
the end user, the origin of the page and its expiry. It is accepted wherever the key is, only
from that origin, only until it expires, and only while its key is active and its origin still
among its tenant's allowed origins.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from django.core import signing

PREFIX = "bt_"
_SALT = "avatarsite.browser-token"


class TokenRefused(Exception):
    """Expired, tampered with, or used from another origin: answered with 401."""


@dataclass(frozen=True)
class BrowserToken:
    key_prefix: str  # the API key that minted it
    character_id: int
    user_id: str | None
    origin: str
    expires_at: int  # Unix seconds

    def payload(self) -> dict[str, Any]:
        return {
            "k": self.key_prefix,
            "c": self.character_id,
            "u": self.user_id,
            "o": self.origin,
            "e": self.expires_at,
        }


def is_browser_token(raw: str) -> bool:
    return raw.startswith(PREFIX)


def sign(token: BrowserToken) -> str:
    return PREFIX + signing.Signer(salt=_SALT, algorithm="sha256").sign_object(token.payload())


def verify(
    raw: str, origin: str | None, server_host: str | None = None, *, any_origin: bool = False
) -> BrowserToken:
    """The token's claims, once its signature, expiry and origin check out. Besides its own
    origin, pages of this server itself (`server_host`, e.g. the voice client) may use it;
    `any_origin` skips the origin check for a caller that enforces it otherwise."""
    try:
        claims = signing.Signer(salt=_SALT, algorithm="sha256").unsign_object(
            raw.removeprefix(PREFIX)
        )
        token = BrowserToken(
            key_prefix=str(claims["k"]),
            character_id=int(claims["c"]),
            user_id=None if claims["u"] is None else str(claims["u"]),
            origin=str(claims["o"]),
            expires_at=int(claims["e"]),
        )
    except (signing.BadSignature, KeyError, TypeError, ValueError):
        raise TokenRefused("Invalid browser token.") from None
    if token.expires_at <= time.time():
        raise TokenRefused("Expired browser token: ask your server for a new one.")
    own_page = bool(origin and server_host) and urlsplit(origin).netloc == server_host
    if origin != token.origin and not own_page and not any_origin:
        raise TokenRefused(
            f"This browser token is for pages on {token.origin}, not "
            f"{origin or 'a request without an Origin header'}."
        )
    return token
