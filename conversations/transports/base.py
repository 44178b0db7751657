"""What every HTTP transport does with a request before admission, whatever its wire format.

Each check here and in admission (conversations/admission.py) raises `Rejected` with a status,
a message and a machine code; each transport renders that in its own API's error shape
(AIAvatarKit, OpenAI, Dify).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar, cast

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest
from django.http.response import HttpResponseBase
from pydantic import ValidationError

from .text import json_problem

# What a client is told when a bug (not a provider's or the client's fault) ends its stream.
INTERNAL_ERROR = "Internal error in the conversation pipeline"


class Rejected(Exception):
    """A request refused before any streaming starts."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str,
        body: dict[str, Any] | None = None,
        retry_after: int | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.body = body  # an exact body, when the wire format dictates one
        self.retry_after = retry_after  # seconds, for a 429

    def headers(self) -> dict[str, str]:
        """HTTP headers every wire format sends with this refusal."""
        return {} if self.retry_after is None else {"Retry-After": str(self.retry_after)}


def problems(exc: ValidationError, root: str = "body") -> str:
    """A pydantic error as one readable line: `field.path: message; ...`."""
    return "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or root}: {e['msg']}"
        for e in exc.errors(include_url=False, include_input=False)
    )


def too_large() -> Rejected:
    """The refusal of a body over Django's upload limit."""
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    return Rejected(413, f"Request body is larger than {limit} bytes.", code="payload_too_large")


def read_json(request: HttpRequest) -> Any:
    """The request's JSON body; refused with 413 over the size limit, 422 when it is not JSON
    or holds text no column can store (conversations/transports/text.py)."""
    try:
        body = request.body
    except RequestDataTooBig:
        raise too_large() from None
    try:
        data = json.loads(body)
    except ValueError:
        raise Rejected(422, "Body is not valid JSON", code="json") from None
    if (problem := json_problem(data, "body")) is not None:
        raise Rejected(422, problem, code="invalid_text")
    return data


def bearer_token(headers: Mapping[str, str]) -> str:
    """The token of an `Authorization: Bearer <token>` header (scheme case-insensitive)."""
    scheme, _, token = headers.get("Authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


View = TypeVar("View", bound=Callable[..., Awaitable[HttpResponseBase]])


def methods(
    *allowed: str, refuse: Callable[[Rejected], HttpResponseBase]
) -> Callable[[View], View]:
    """Only `allowed` HTTP methods reach the (async) view; any other gets a 405 in the API's
    own error shape (`refuse`), with an `Allow` header. A CORS preflight never gets here:
    django-cors-headers answers it first."""

    def decorate(view: View) -> View:
        @functools.wraps(view)
        async def checked(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
            if request.method not in allowed:
                message = f"Method {request.method} is not allowed here: use {', '.join(allowed)}."
                response = refuse(Rejected(405, message, code="method_not_allowed"))
                response["Allow"] = ", ".join(allowed)
                return response
            return await view(request, *args, **kwargs)

        return cast(View, checked)

    return decorate
