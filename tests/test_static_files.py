"""Static files served by the ASGI app itself (SERVE_STATIC): a path that climbs out of the
static directories is a plain 404, answered at once, never an unhandled exception."""

from __future__ import annotations

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


def test_static_files_are_still_served() -> None:
    response = async_to_sync(_get)("/static/admin/css/base.css")

    assert response.status_code == 200 and response.headers["content-type"] == "text/css"
