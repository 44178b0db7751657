"""The tenant wall, endpoint by endpoint: tenant B's credentials with tenant A's ids get the
answer an unknown id gets, see nothing of A and write nothing; two tenants' users with the same
ids talk at once without touching each other; a key revoked mid-stream finishes its stream."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from django.utils import timezone

from avatarsite.tenants.models import Tenant
from channels_app import live
from channels_app.models import LiveSession
from characters.models import Character
from conversations.history import resolve_end_user
from conversations.line.models import LineChannel
from conversations.models import ApiKey, EndUser, TurnRecord
from tests.conftest import LLM_KEY_VARIABLE, AsgiServer
from tests.fakes.openai_server import FakeOpenAI, ScriptedReply
from tests.realtime.ws import Socket, types
from tests.sse import SSEResult, post_sse

pytestmark = pytest.mark.django_db(transaction=True)

SLOW = ScriptedReply(chunks=["One. ", "Two. ", "Three."], chunk_delay=0.5)


@dataclass
class Side:
    tenant: Tenant
    key: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}


def _character(tenant: Tenant, slug: str, fake: FakeOpenAI, **fields: Any) -> Character:
    return Character.objects.create(
        tenant=tenant,
        slug=slug,
        name=slug.title(),
        persona=f"You are {slug}.",
        llm_model="gpt-4o-mini",
        llm_base_url=fake.base_url,
        llm_api_key_env=LLM_KEY_VARIABLE,
        **fields,
    )


@pytest.fixture
def acme(fake_llm: FakeOpenAI) -> Side:
    tenant = Tenant.named("acme")
    _character(tenant, "mia", fake_llm, is_default=True)
    _character(tenant, "kai", fake_llm)  # a slug only acme has
    return Side(tenant, ApiKey.issue("acme web", tenant)[1])


@pytest.fixture
def globex(fake_llm: FakeOpenAI) -> Side:
    tenant = Tenant.named("globex")
    _character(tenant, "mia", fake_llm, is_default=True)  # the same slug as acme's
    return Side(tenant, ApiKey.issue("globex web", tenant)[1])


def chat(server: AsgiServer, side: Side, path: str = "/chat", **fields: Any) -> SSEResult:
    body = {"type": "start", "session_id": "s1", "user_id": "u1", "text": "Hello", **fields}
    return post_sse(f"{server.url}{path}", body, key=side.key)


def dify(server: AsgiServer, side: Side, **fields: Any) -> SSEResult:
    body = {"inputs": {}, "query": "Hello", "user": "u1", "response_mode": "streaming", **fields}
    return post_sse(f"{server.url}/v1/chat-messages", body, key=side.key)


def same_answer(foreign: Any, unknown: Any, foreign_id: str, unknown_id: str) -> bool:
    """Whether a refusal of a foreign id says exactly what the refusal of an unknown one says
    (each names the id it was given)."""
    return json.dumps(foreign).replace(foreign_id, "<id>") == json.dumps(unknown).replace(
        unknown_id, "<id>"
    )


def globex_wrote_nothing(globex: Side) -> bool:
    return not (
        EndUser.objects.filter(tenant=globex.tenant).exists()
        or TurnRecord.objects.filter(tenant=globex.tenant).exists()
    )


def test_a_foreign_context_id_is_an_unknown_one(
    asgi_server: AsgiServer, acme: Side, globex: Side, fake_llm: FakeOpenAI
) -> None:
    fake_llm.script(ScriptedReply(text="Acme's secret plan."))
    context_id = chat(asgi_server, acme).events[-1]["context_id"]
    made_up = str(uuid.uuid4())

    foreign = chat(asgi_server, globex, context_id=context_id)
    unknown = chat(asgi_server, globex, context_id=made_up)

    assert (foreign.status, unknown.status) == (404, 404)
    assert same_answer(foreign.body, unknown.body, context_id, made_up)
    assert globex_wrote_nothing(globex)
    assert len(fake_llm.requests) == 1  # acme's history never reached an LLM for globex


def test_a_foreign_dify_conversation_is_an_unknown_one(
    asgi_server: AsgiServer, acme: Side, globex: Side, fake_llm: FakeOpenAI
) -> None:
    events = dify(asgi_server, acme).events
    conversation_id = events[-1]["conversation_id"]
    made_up = str(uuid.uuid4())

    foreign = dify(asgi_server, globex, conversation_id=conversation_id)
    unknown = dify(asgi_server, globex, conversation_id=made_up)

    assert (foreign.status, unknown.status) == (404, 404)
    assert same_answer(foreign.body, unknown.body, conversation_id, made_up)
    assert globex_wrote_nothing(globex)


def test_another_end_user_of_the_same_tenant_cannot_continue_a_conversation(
    asgi_server: AsgiServer, acme: Side
) -> None:
    context_id = chat(asgi_server, acme).events[-1]["context_id"]

    other_user = chat(asgi_server, acme, user_id="u2", context_id=context_id)

    assert other_user.status == 404
    assert not EndUser.objects.filter(identities__external_id="u2").exists()


@pytest.mark.parametrize(
    "ask",
    [
        pytest.param(
            lambda server, side, slug: chat(server, side, path=f"/characters/{slug}/chat"),
            id="/chat",
        ),
        pytest.param(
            lambda server, side, slug: chat(server, side, path=f"/characters/{slug}/start"),
            id="/start",
        ),
        pytest.param(
            lambda server, side, slug: post_sse(
                f"{server.url}/v1/chat-messages",
                {"query": "Hi", "user": "u1", "response_mode": "streaming"},
                key=side.key,
                headers={"X-Character": slug},
            ),
            id="/chat-messages",
        ),
        pytest.param(
            lambda server, side, slug: post_sse(
                f"{server.url}/v1/chat/completions",
                {"model": slug, "messages": [{"role": "user", "content": "Hi"}]},
                key=side.key,
            ),
            id="/v1/chat/completions",
        ),
        pytest.param(
            lambda server, side, slug: post_sse(
                f"{server.url}/tts", {"text": "Hi"}, key=side.key, headers={"X-Character": slug}
            ),
            id="/tts",
        ),
    ],
)
def test_a_foreign_character_slug_is_an_unknown_one(
    asgi_server: AsgiServer,
    acme: Side,
    globex: Side,
    ask: Callable[[AsgiServer, Side, str], SSEResult],
) -> None:
    foreign = ask(asgi_server, globex, "kai")
    unknown = ask(asgi_server, globex, "nobody")

    assert (foreign.status, unknown.status) == (404, 404)
    assert same_answer(foreign.body, unknown.body, "kai", "nobody")
    assert globex_wrote_nothing(globex)


def test_the_models_list_shows_only_the_callers_characters(
    asgi_server: AsgiServer, acme: Side, globex: Side
) -> None:
    listed = httpx.get(f"{asgi_server.url}/v1/models", headers=globex.headers).json()

    assert [model["id"] for model in listed["data"]] == ["mia"]


def test_a_key_limited_to_some_characters_reaches_no_other(
    asgi_server: AsgiServer, acme: Side, fake_llm: FakeOpenAI
) -> None:
    key, raw = ApiKey.issue("kai only", acme.tenant)
    key.characters.set(Character.objects.filter(tenant=acme.tenant, slug="kai"))
    limited = Side(acme.tenant, raw)

    allowed = chat(asgi_server, limited, path="/characters/kai/chat")
    refused = chat(asgi_server, limited, path="/characters/mia/chat")
    no_default = chat(asgi_server, limited)  # acme's default is mia

    assert allowed.events[-1]["type"] == "final"
    assert (refused.status, no_default.status) == (404, 404)


def test_a_foreign_live_session_is_not_listed(
    asgi_server: AsgiServer, acme: Side, globex: Side
) -> None:
    character = Character.objects.get(tenant=acme.tenant, slug="mia")
    LiveSession.objects.create(
        channel_name="acme-socket",
        session_id="acme-session",
        user_id="u1",
        end_user=resolve_end_user(acme.tenant.pk, "websocket", "u1"),
        character=character,
    )

    def ask(side: Side) -> Any:
        url = f"{asgi_server.url}/ws/sessions"
        return httpx.get(url, params={"user_id": "u1"}, headers=side.headers).json()

    assert ask(acme)["session_id"] == "acme-session"
    assert ask(globex) == {"session_id": None}
    assert globex_wrote_nothing(globex)


def test_a_foreign_line_channel_is_an_unknown_one(
    asgi_server: AsgiServer, acme: Side, globex: Side
) -> None:
    LineChannel.objects.create(
        character=Character.objects.get(tenant=acme.tenant, slug="mia"),
        slug="acme-line",
        channel_secret_env="UNSET_SECRET",
        access_token_env="UNSET_TOKEN",
    )
    body = {"to": "U" + "0" * 32, "text": "Hi from globex"}

    def push(slug: str) -> httpx.Response:
        url = f"{asgi_server.url}/line/{slug}/push"
        return httpx.post(url, json=body, headers=globex.headers)

    foreign, unknown = push("acme-line"), push("nowhere")

    assert (foreign.status_code, unknown.status_code) == (404, 404)
    assert same_answer(foreign.json(), unknown.json(), "acme-line", "nowhere")


def test_two_tenants_users_with_the_same_ids_talk_at_once(
    asgi_server: AsgiServer, acme: Side, globex: Side, fake_llm: FakeOpenAI
) -> None:
    fake_llm.script(ScriptedReply(chunks=SLOW.chunks, chunk_delay=0.5, repeat=2))
    results: dict[str, SSEResult] = {}
    threads = [
        threading.Thread(target=lambda s=side, n=name: results.__setitem__(n, chat(asgi_server, s)))
        for name, side in (("acme", acme), ("globex", globex))
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    for name in ("acme", "globex"):
        final = results[name].events[-1]
        assert final["type"] == "final", name
        assert final["text"] == "One. Two. Three.", name  # neither cut the other short
        assert final["metadata"].get("interrupted") is not True, name
    assert EndUser.objects.filter(identities__external_id="u1").count() == 2


def test_a_key_revoked_mid_stream_finishes_the_stream_then_gets_401(
    asgi_server: AsgiServer, acme: Side, fake_llm: FakeOpenAI
) -> None:
    fake_llm.script(SLOW)
    key, raw = ApiKey.issue("soon revoked", acme.tenant)
    side = Side(acme.tenant, raw)
    events: list[dict[str, Any]] = []
    streaming = threading.Event()

    def listen() -> None:
        body = {"type": "start", "session_id": "s9", "user_id": "u9", "text": "Talk"}
        with (
            httpx.Client(timeout=30) as client,
            client.stream("POST", f"{asgi_server.url}/chat", json=body, headers=side.headers) as r,
        ):
            for line in r.iter_lines():
                if line.startswith("data:"):
                    events.append(json.loads(line[5:]))
                    if events[-1]["type"] == "chunk":
                        streaming.set()

    listener = threading.Thread(target=listen)
    listener.start()
    assert streaming.wait(timeout=30)
    key.revoked_at = timezone.now()  # as the admin and the REST API revoke: saved, so cached
    key.save(update_fields=["revoked_at"])  # copies of the key in every process are dropped
    listener.join(timeout=30)

    assert events[-1]["type"] == "final" and events[-1]["text"] == "One. Two. Three."
    assert chat(asgi_server, side).status == 401


async def test_a_foreign_character_on_the_socket_is_an_unknown_one(
    asgi_server: AsgiServer, acme: Side, globex: Side
) -> None:
    async def refusal(slug: str) -> tuple[dict[str, Any], int | None]:
        socket = await Socket.open(asgi_server.url, globex.key, query=f"character={slug}")
        error = await socket.expect("error")
        await socket.connection.wait_closed()
        return error, socket.connection.close_code

    foreign, unknown = await refusal("kai"), await refusal("nobody")

    assert foreign[1] == unknown[1] == 4404
    assert same_answer(foreign[0], unknown[0], "kai", "nobody")


def test_live_control_reaches_only_the_admitted_session(acme: Side, globex: Side) -> None:
    rows = [
        LiveSession.objects.create(
            channel_name=f"{side.tenant.slug}-socket",
            session_id="same-session",
            user_id="u1",
            end_user=resolve_end_user(side.tenant.pk, "websocket", "u1"),
            character=Character.objects.get(tenant=side.tenant, slug="mia"),
        )
        for side in (acme, globex)
    ]

    assert live.session_group_of(rows[0]) != live.session_group_of(rows[1])


async def test_two_tenants_sockets_with_the_same_ids_talk_at_once(
    asgi_server: AsgiServer, acme: Side, globex: Side, fake_llm: FakeOpenAI
) -> None:
    fake_llm.script(ScriptedReply(chunks=SLOW.chunks, chunk_delay=0.5, repeat=2))
    sockets = [await Socket.open(asgi_server.url, side.key) for side in (acme, globex)]
    try:
        for socket in sockets:
            await socket.start(user_id="u1")  # the same session id ("ws1") and user id
        for socket in sockets:
            await socket.send("invoke", text="Tell me a story")
        turns = [await socket.until("final") for socket in sockets]
    finally:
        for socket in sockets:
            await socket.close()

    for messages in turns:
        answer = types(messages)[types(messages).index("start") :]
        assert answer == ["start", "chunk", "chunk", "chunk", "final"]  # no one cut it short
        assert messages[-1]["text"] == "One. Two. Three."
        assert messages[-1]["metadata"].get("interrupted") is not True
