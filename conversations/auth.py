"""Bearer API-key authentication shared by the HTTP transports."""

from __future__ import annotations

from collections.abc import Mapping

from .models import ApiKey

INVALID_KEY = {"detail": "Invalid or missing API Key"}


def bearer_token(headers: Mapping[str, str]) -> str:
    """The token of an `Authorization: Bearer <token>` header (scheme case-insensitive)."""
    scheme, _, token = headers.get("Authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def authenticate_bearer(headers: Mapping[str, str]) -> ApiKey | None:
    token = bearer_token(headers)
    return ApiKey.authenticate(token) if token else None
