"""Static files served by the ASGI app itself (SERVE_STATIC): a path that climbs out of the
static directories is a plain 404, answered at once, never an unhandled exception."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest
from asgiref.sync import async_to_sync

from avatarsite.asgi import application


async def _get(path: str) -> httpx.Response:
    # Channels types its router with asgiref's precise scopes; httpx takes any ASGI app.
    transport = httpx.ASGITransport(app=application)  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
        return await client.get(path)


@pytest.mark.parametrize(
    "path", ["/static/..%2f..%2fsettings.py", "/static/%2e%2e/%2e%2e/etc/passwd", "/static/..%5c.."]
)
def test_a_path_out_of_the_static_directories_is_not_found(path: str) -> None:
    response = async_to_sync(_get)(path)

    assert response.status_code == 404
    assert response.json() == {"detail": "Not found."}


async def _raw_get(path: str) -> tuple[int, bytes]:
    """GET `path` exactly as written, dots and all (an HTTP client would resolve `..` before
    sending it; a hostile one does not), straight into the ASGI app."""
    scope: dict[str, Any] = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"127.0.0.1")],
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 80),
    }
    sent: list[dict[str, Any]] = []
    requested, answered = False, asyncio.Event()

    async def receive() -> dict[str, Any]:
        nonlocal requested
        if not requested:
            requested = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await answered.wait()  # the client stays until the answer is complete
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)
        if message["type"] == "http.response.body" and not message.get("more_body"):
            answered.set()

    # Bounded so a hang fails the test instead of stalling the run.
    async with asyncio.timeout(30):
        # Channels types its router with asgiref's TypedDict scopes and events; these are plain.
        await application(scope, receive, send)  # type: ignore[arg-type]
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    return status, b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")


@pytest.mark.parametrize(
    "path", ["/static/../", "/static/../../avatarsite/settings.py", "/static/./../manage.py"]
)
def test_a_literal_dot_dot_under_static_is_not_found(path: str) -> None:
    status, body = async_to_sync(_raw_get)(path)

    assert (status, json.loads(body)) == (404, {"detail": "Not found."})


def test_static_files_are_still_served() -> None:
    response = async_to_sync(_get)("/static/admin/css/base.css")

    assert response.status_code == 200 and response.headers["content-type"] == "text/css"
