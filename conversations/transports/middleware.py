"""The text-sanity rule (conversations/transports/text.py) for what every HTTP request carries
besides its body: the path, the query string and the headers, refused in the error shape of
the API the path belongs to. Bodies are checked where each transport reads them."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from django.http import HttpRequest, JsonResponse
from django.http.response import HttpResponseBase
from django.urls import Resolver404, resolve
from django.utils.decorators import async_only_middleware

from . import dify_api, dify_app, openai_api
from .aiavatar_wire import error_response
from .base import Rejected
from .text import text_problem


def _problem(request: HttpRequest) -> tuple[list[str], str] | None:
    """Where the first unstorable text in the request's path, query string or headers is (as
    FastAPI locates it), and what is wrong with it."""
    if problem := text_problem(request.path):
        return ["path"], f"path: {problem}"
    for name, values in request.GET.lists():
        for text in (name, *values):
            if problem := text_problem(text):
                return ["query", name[:40]], f"query.{name[:40]}: {problem}"
    for name, value in request.headers.items():
        if problem := text_problem(value):
            return ["header", name[:40]], f"header {name[:40]}: {problem}"
    return None


def _is_dify(path: str) -> bool:
    """Dify's routes share /v1/ with OpenAI's: the view tells them apart."""
    try:
        view = resolve(path).func
    except Resolver404:
        return False
    return view.__module__ in (dify_api.__name__, dify_app.__name__)


def _render(path: str, rejected: Rejected) -> JsonResponse:
    if _is_dify(path):
        return dify_api.rejected_response(rejected)
    if path.startswith("/v1/"):
        return openai_api.rejected_response(rejected)
    if path.startswith(("/api/", "/admin/")):
        return JsonResponse({"detail": rejected.message}, status=400)
    return error_response(rejected)


@async_only_middleware
def refuse_unsafe_text(
    get_response: Callable[[HttpRequest], Awaitable[HttpResponseBase]],
) -> Callable[[HttpRequest], Awaitable[HttpResponseBase]]:
    async def middleware(request: HttpRequest) -> HttpResponseBase:
        if (found := _problem(request)) is not None:
            loc, message = found
            detail = [{"loc": loc, "msg": message, "type": "invalid_text"}]
            rejected = Rejected(422, message, code="invalid_text", body={"detail": detail})
            return _render(request.path, rejected)
        return await get_response(request)

    return middleware
