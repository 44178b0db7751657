"""A tenant's own web page in headless Chromium: on an allowed origin it completes a /chat turn
with a browser token (CORS preflight, Bearer token, SSE); on another origin it is refused."""

from __future__ import annotations

import asyncio
import http.server
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path

import httpx
import pytest

from avatarsite.tenants.models import TenantOrigin
from characters.models import Character
from tests.browser import TIMEOUT, DevTools, chromium
from tests.conftest import AsgiServer
from tests.fakes.openai_server import FakeOpenAI, ScriptedReply

pytestmark = pytest.mark.django_db(transaction=True)

# The customer's page: fetch() with the token, read the SSE stream, show the final text.
PAGE = """<!doctype html><meta charset="utf-8"><title>shop</title><p id="result"></p>
<script>
async function talk(server, token) {
  try {
    const response = await fetch(server + "/chat", {
      method: "POST",
      headers: {"Authorization": "Bearer " + token, "Content-Type": "application/json"},
      body: JSON.stringify({type: "start", session_id: "page", text: "こんにちは"}),
    });
    const text = await response.text();
    const events = text.split("\\r\\n\\r\\n").filter((e) => e.startsWith("data: "))
      .map((e) => JSON.parse(e.slice(6)));
    const last = events[events.length - 1];
    return response.status + " " + (last ? last.type + " " + last.text : "");
  } catch (error) {
    return "refused " + error.name;
  }
}
</script>"""


@contextmanager
def static_site(root: Path) -> Iterator[str]:
    """A static web server on loopback: each one is an origin of its own."""
    root.mkdir()
    (root / "index.html").write_text(PAGE, encoding="utf-8")
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def site(tmp_path: Path) -> Iterator[str]:
    with static_site(tmp_path / "shop") as url:
        yield url


@pytest.fixture
def other_site(tmp_path: Path) -> Iterator[str]:
    with static_site(tmp_path / "elsewhere") as url:
        yield url


async def talk_from(page: DevTools, site_url: str, server: str, token: str) -> str:
    await page.open(f"{site_url}/index.html")
    result: str = await asyncio.wait_for(
        page.evaluate(f"talk({json.dumps(server)}, {json.dumps(token)})"), TIMEOUT
    )
    return result


async def test_a_page_on_an_allowed_origin_talks_and_another_is_refused(
    asgi_server: AsgiServer,
    character: Character,
    api_key: str,
    fake_llm: FakeOpenAI,
    site: str,
    other_site: str,
    tmp_path: Path,
) -> None:
    fake_llm.script(ScriptedReply(text="こんにちは、ミアです。"))
    await TenantOrigin.objects.acreate(tenant_id=character.tenant_id, origin=site)
    async with httpx.AsyncClient(base_url=asgi_server.url, timeout=30) as client:
        minted = await client.post(
            "/api/tokens", json={"origin": site}, headers={"Authorization": f"Bearer {api_key}"}
        )
    token = minted.json()["token"]

    async with chromium(tmp_path / "profile") as page:
        allowed = await talk_from(page, site, asgi_server.url, token)
        refused = await talk_from(page, other_site, asgi_server.url, token)

    assert allowed == "200 final こんにちは、ミアです。"
    assert refused == "refused TypeError"  # no CORS headers for that origin: fetch fails
    assert len(fake_llm.requests) == 1
