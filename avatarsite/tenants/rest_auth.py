"""Authentication of the staff REST API (settings.REST_FRAMEWORK), kept apart from the views:
DRF imports it while it sets itself up, before any view module can be imported."""

from __future__ import annotations

from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication
from rest_framework.request import Request


class WrongCredential(exceptions.APIException):
    status_code = 401
    default_code = "wrong_credential"
    auth_header = 'Basic realm="avatarsite staff API"'


class BearerCredentialHint(BaseAuthentication):
    """An API key or browser token sent to the staff API is the wrong kind of credential: say
    so with 401 and where it belongs, instead of DRF's 403 "credentials were not provided"."""

    def authenticate(self, request: Request) -> None:
        scheme, _, _ = request.META.get("HTTP_AUTHORIZATION", "").partition(" ")
        if scheme.lower() == "bearer":
            raise WrongCredential(
                "The staff API takes a staff user's session or HTTP Basic credentials. API "
                "keys and browser tokens (Bearer) are for the chat endpoints: /chat, /ws, "
                "/chat-messages, /v1/chat/completions and the speech endpoints."
            )
