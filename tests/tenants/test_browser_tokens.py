"""Browser tokens: minted with an API key for one origin, accepted like a key by /chat, /ws and
the voice page, refused (401) when expired, tampered with or used from another origin; CORS
headers for the tenants' allowed origins."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from channels.testing import WebsocketCommunicator
from django.http import StreamingHttpResponse
from django.test import AsyncClient, Client
from django.utils import timezone
from pytest_django.fixtures import Settings

from avatarsite.asgi import application
from avatarsite.tenants.models import Tenant, TenantOrigin
from characters.models import Character
from conversations.browser_tokens import BrowserToken, sign
from conversations.models import ApiKey
from tests.fakes.openai_server import FakeOpenAI, ScriptedReply

SHOP = "https://shop.example.com"
ELSEWHERE = "https://evil.example.net"


@pytest.fixture(autouse=True)
def one_process_channel_layer(settings: Settings) -> None:
    """These requests run in this process, which needs no shared layer; cancelling a Redis
    layer's blocking read when a test's event loop closes could hang (as the `app` fixture in
    tests/conftest.py explains)."""
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}


@pytest.fixture
def shop_origin(character: Character) -> TenantOrigin:
    return TenantOrigin.objects.create(tenant_id=character.tenant_id, origin=SHOP)


def mint(api_key: str, **body: Any) -> Any:
    return Client().post(
        "/api/tokens",
        json.dumps(body),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {api_key}",
    )


@pytest.mark.django_db
def test_a_key_mints_a_token_for_an_allowed_origin(
    character: Character, api_key: str, shop_origin: TenantOrigin
) -> None:
    minted = mint(api_key, origin=SHOP, user_id="u1", ttl_seconds=120)
    body = minted.json()

    assert minted.status_code == 201
    assert body["token"].startswith("bt_") and body["expires_in"] == 120
    assert (body["origin"], body["character"], body["user_id"]) == (SHOP, "mia", "u1")
    assert api_key not in body["token"]


@pytest.mark.django_db
def test_minting_refuses_what_it_must(
    character: Character, api_key: str, shop_origin: TenantOrigin
) -> None:
    other = Tenant.named("globex")
    Character.objects.create(tenant=other, slug="kai", name="Kai")
    token = mint(api_key, origin=SHOP).json()["token"]

    answers = {
        "unlisted origin": mint(api_key, origin=ELSEWHERE).status_code,
        "no key": Client().post("/api/tokens", {"origin": SHOP}).status_code,
        "a token minting": mint(token, origin=SHOP).status_code,
        "another tenant's character": mint(api_key, origin=SHOP, character="kai").status_code,
        "unknown field": mint(api_key, origin=SHOP, admin=True).status_code,
    }

    assert answers == {
        "unlisted origin": 400,
        "no key": 401,
        "a token minting": 401,
        "another tenant's character": 404,
        "unknown field": 400,
    }


async def chat(token: str, origin: str | None, **fields: Any) -> tuple[int, list[dict[str, Any]]]:
    headers = {"Authorization": f"Bearer {token}"}
    if origin:
        headers["Origin"] = origin
    body = {"type": "start", "session_id": "s1", "text": "Hello", **fields}
    response = await AsyncClient().post(
        "/chat", body, content_type="application/json", headers=headers
    )
    if response.status_code != 200:
        return response.status_code, [json.loads(response.content)]
    assert isinstance(response, StreamingHttpResponse)
    events = []
    async for chunk in response.streaming_content:
        for line in chunk.decode().splitlines():
            if line.startswith("data: "):
                events.append(json.loads(line[6:]))
    return 200, events


@pytest.mark.django_db(transaction=True)
async def test_a_token_talks_from_its_origin_only(
    character: Character, api_key: str, fake_llm: FakeOpenAI, shop_origin: TenantOrigin
) -> None:
    fake_llm.script(ScriptedReply(text="Hi from Mia."))
    token = (await _amint(api_key, origin=SHOP, user_id="u1"))["token"]

    status, events = await chat(token, SHOP)
    elsewhere = await chat(token, ELSEWHERE)
    no_origin = await chat(token, None)
    other_user = await chat(token, SHOP, user_id="u2")

    assert status == 200 and events[-1]["type"] == "final"
    assert events[-1]["user_id"] == "u1"  # the token's user, not one the page chose
    assert (elsewhere[0], no_origin[0], other_user[0]) == (401, 401, 403)
    assert "https://shop.example.com" in elsewhere[1][0]["detail"]


@pytest.mark.django_db(transaction=True)
async def test_expired_tampered_and_revoked_tokens_are_refused(
    character: Character, api_key: str, shop_origin: TenantOrigin
) -> None:
    token = (await _amint(api_key, origin=SHOP))["token"]
    key = await ApiKey.objects.aget(prefix=api_key[: ApiKey.PREFIX_LENGTH])
    expired = sign(
        BrowserToken(key.prefix, character.pk, None, SHOP, expires_at=int(time.time()) - 1)
    )
    payload, signature = token.rsplit(":", 1)
    tampered = f"{payload}x:{signature}"

    answers = [(await chat(t, SHOP))[0] for t in (expired, tampered)]
    await ApiKey.objects.filter(pk=key.pk).aupdate(revoked_at=timezone.now())
    answers.append((await chat(token, SHOP))[0])

    assert answers == [401, 401, 401]


@pytest.mark.django_db(transaction=True)
async def test_removing_an_origin_ends_its_tokens(
    character: Character, api_key: str, shop_origin: TenantOrigin
) -> None:
    token = (await _amint(api_key, origin=SHOP))["token"]
    await shop_origin.adelete()

    assert (await chat(token, SHOP))[0] == 401


@pytest.mark.django_db(transaction=True)
async def test_a_token_speaks_to_its_character_only(
    character: Character, api_key: str, shop_origin: TenantOrigin
) -> None:
    await Character.objects.acreate(tenant_id=character.tenant_id, slug="kai", name="Kai")
    token = (await _amint(api_key, origin=SHOP, character="mia"))["token"]

    response = await AsyncClient().post(
        "/chat",
        {"type": "start", "session_id": "s"},
        content_type="application/json",
        headers={"Authorization": f"Bearer {token}", "Origin": SHOP, "X-Character": "kai"},
    )

    assert response.status_code == 404


@pytest.mark.django_db(transaction=True)
async def test_the_voice_socket_takes_a_token_in_its_url(
    character: Character, api_key: str, shop_origin: TenantOrigin
) -> None:
    token = (await _amint(api_key, origin=SHOP, user_id="u1"))["token"]

    async def connect(origin: str) -> tuple[bool, WebsocketCommunicator]:
        communicator = WebsocketCommunicator(
            application, f"/ws?token={token}", headers=[(b"origin", origin.encode())]
        )
        connected, _ = await communicator.connect()
        return connected, communicator

    allowed, socket = await connect(SHOP)
    await socket.send_json_to({"type": "start", "session_id": "ws1"})
    started = await socket.receive_json_from(timeout=30)
    await socket.disconnect()
    refused, other = await connect(ELSEWHERE)
    await other.disconnect()

    assert allowed and started["type"] == "connected" and started["user_id"] == "u1"
    assert not refused


@pytest.mark.django_db
def test_the_voice_page_takes_a_token_and_may_be_framed_by_its_origin_only(
    character: Character, api_key: str, shop_origin: TenantOrigin
) -> None:
    token = mint(api_key, origin=SHOP).json()
    page = Client().get("/voice/", {"token": token["token"]})
    bad = Client().get("/voice/", {"token": token["token"] + "x"})
    with_key = Client().get("/voice/", {"token": api_key})

    assert page.status_code == 200
    assert page["Content-Security-Policy"] == f"frame-ancestors 'self' {SHOP}"
    assert "X-Frame-Options" not in page
    assert b'id="key"' not in page.content  # no API key field: the token is used
    assert (bad.status_code, with_key.status_code) == (401, 401)


@pytest.mark.django_db
def test_preflights_get_cors_headers_for_allowed_origins_only(shop_origin: TenantOrigin) -> None:
    def preflight(origin: str, path: str = "/chat") -> Any:
        return Client().options(
            path,
            HTTP_ORIGIN=origin,
            HTTP_ACCESS_CONTROL_REQUEST_METHOD="POST",
            HTTP_ACCESS_CONTROL_REQUEST_HEADERS="authorization, content-type",
        )

    allowed = preflight(SHOP)
    refused = preflight(ELSEWHERE)
    staff_api = preflight(SHOP, "/api/characters/")

    assert allowed.status_code == 200
    assert allowed["Access-Control-Allow-Origin"] == SHOP
    assert "authorization" in allowed["Access-Control-Allow-Headers"]
    assert "Access-Control-Allow-Credentials" not in allowed  # tokens, never cookies
    assert "Access-Control-Allow-Origin" not in refused
    assert "Access-Control-Allow-Origin" not in staff_api


async def _amint(api_key: str, **body: Any) -> dict[str, Any]:
    response = await AsyncClient().post(
        "/api/tokens",
        body,
        content_type="application/json",
        headers={"Authorization": f"Bearer {api_key}"},
    )
    assert response.status_code == 201, response.content
    return json.loads(response.content)
