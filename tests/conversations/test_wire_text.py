"""The text-sanity rule at the wire (conversations/transports/text.py): a lone surrogate, a NUL
or an id longer than its column is refused in each API's own error shape, before anything is
written; a stream that fails mid-way still ends with its `error` event."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.test import AsyncClient

from characters.models import Character
from conversations.models import ChannelIdentity, Context, EndUser, Message, TurnRecord
from conversations.transports.sse import sse_response
from conversations.transports.text import json_problem, text_problem
from tests.fakes.openai_server import FakeOpenAI
from tests.inprocess import InProcessApp

pytestmark = pytest.mark.django_db

SURROGATE = "\udfff"
NUL = "\x00"


def rows() -> dict[str, int]:
    models = (EndUser, ChannelIdentity, Context, Message, TurnRecord)
    return {model.__name__: model.objects.count() for model in models}


def raw_json(body: dict[str, Any]) -> bytes:
    """JSON as a client writes it: a lone surrogate travels as its `\\u` escape."""
    return json.dumps(body).encode()


def test_it_finds_unstorable_text_anywhere_in_a_value() -> None:
    assert text_problem("fine 😀 日本語") is None
    assert text_problem(f"a{NUL}b") == "contains a NUL character"
    assert text_problem(SURROGATE) == "contains an unpaired UTF-16 surrogate"
    assert json_problem({"a": [1, {"b": ["ok", SURROGATE]}]}, "body") == (
        "body.a[1].b[1]: contains an unpaired UTF-16 surrogate"
    )
    assert json_problem({NUL: 1}, "body") == "body: a key contains a NUL character"
    assert json_problem([None, 1.5, True, "ok"], "body") is None


@pytest.mark.parametrize(
    "body",
    [
        {"type": "start", "session_id": SURROGATE, "text": "hi"},
        {"type": "start", "session_id": "s1", "text": f"hi{NUL}"},
        {"type": "start", "session_id": "s1", "text": "hi", "metadata": {SURROGATE: 1}},
        {"type": "start", "session_id": "s1", "system_prompt_params": {"x": [NUL]}},
    ],
)
@pytest.mark.parametrize("path", ["/chat", "/start"])
def test_aiavatar_refuses_unstorable_text_with_its_422(
    app: InProcessApp, character: Character, api_key: str, path: str, body: dict[str, Any]
) -> None:
    before = rows()

    result = app.post_sse(path, None, key=api_key, content=raw_json(body))

    assert result.status == 422
    (problem,) = result.body["detail"]
    assert problem["type"] == "invalid_text" and problem["msg"].startswith("body.")
    assert rows() == before


@pytest.mark.parametrize("field", ["session_id", "user_id"])
def test_aiavatar_refuses_ids_longer_than_their_columns(
    app: InProcessApp, character: Character, api_key: str, field: str
) -> None:
    body = {"type": "start", "session_id": "s1", "text": "hi", field: "x" * 201}

    result = app.post_sse("/chat", body, key=api_key)

    assert result.status == 422
    assert result.body["detail"][0]["loc"] == ["body", field]
    assert "at most 200 characters" in result.body["detail"][0]["msg"]
    assert not EndUser.objects.exists()


@pytest.mark.parametrize(
    "body",
    [
        {"query": f"hi{NUL}", "user": "u1"},
        {"query": "hi", "user": SURROGATE},
        {"query": "hi", "user": "u1", "inputs": {"name": NUL}},
    ],
)
def test_dify_refuses_unstorable_text_with_its_400(
    app: InProcessApp, character: Character, api_key: str, body: dict[str, Any]
) -> None:
    result = app.post_sse("/chat-messages", None, key=api_key, content=raw_json(body))

    assert result.status == 400
    assert result.body["status"] == 400 and result.body["code"] == "invalid_param"
    assert result.body["message"].startswith("body.")
    assert not EndUser.objects.exists()


def test_dify_refuses_a_user_longer_than_its_column(
    app: InProcessApp, character: Character, api_key: str
) -> None:
    result = app.post_sse("/chat-messages", {"query": "hi", "user": "u" * 201}, key=api_key)

    assert result.status == 400 and result.body["code"] == "invalid_param"
    assert "user" in result.body["message"]


@pytest.mark.parametrize(
    "body",
    [
        {"model": "mia", "messages": [{"role": "user", "content": SURROGATE}]},
        {"model": f"mia{NUL}", "messages": [{"role": "user", "content": "hi"}]},
        {"model": "mia", "messages": [{"role": "user", "content": "hi"}], "user": "u" * 201},
    ],
)
def test_openai_refuses_unusable_text_with_its_400(
    app: InProcessApp, character: Character, api_key: str, body: dict[str, Any]
) -> None:
    result = app.post_sse("/v1/chat/completions", None, key=api_key, content=raw_json(body))

    assert result.status == 400
    assert result.body["error"]["type"] == "invalid_request_error"
    assert not EndUser.objects.exists()


def test_tts_refuses_unstorable_text(app: InProcessApp, character: Character, api_key: str) -> None:
    result = app.post_sse("/tts", None, key=api_key, content=raw_json({"text": f"a{NUL}"}))

    assert result.status == 422 and result.body["detail"][0]["type"] == "invalid_text"


async def _get(path: str, **headers: str) -> tuple[int, Any]:
    response = await AsyncClient(raise_request_exception=False).get(path, headers=headers)
    return response.status_code, json.loads(response.content)


@pytest.mark.parametrize(
    ("path", "headers", "status", "shape"),
    [
        ("/api/characters/?character=%00", {}, 400, "detail"),
        ("/ws/sessions?user_id=a%00", {}, 422, "detail"),
        ("/v1/models?x=%00", {}, 400, "error"),
        ("/chat-messages?user=%00", {}, 400, "code"),
        ("/admin/?q=%00", {}, 400, "detail"),
        ("/ws/sessions", {"X-Character": "mia\x00"}, 422, "detail"),
        ("/voice/?token=%00", {}, 422, "detail"),
    ],
)
def test_a_nul_in_the_query_or_headers_is_refused_before_any_view(
    character: Character, path: str, headers: dict[str, str], status: int, shape: str
) -> None:
    got, body = async_to_sync(_get)(path, **headers)

    assert got == status and shape in body
    if path.startswith("/ws/sessions?"):
        assert body["detail"][0]["loc"] == ["query", "user_id"]


def test_a_name_no_slug_can_have_is_an_unknown_character(
    app: InProcessApp, character: Character, api_key: str
) -> None:
    body = {"type": "start", "session_id": "s1", "text": "hi"}

    result = app.post_sse("/chat", body, key=api_key, headers={"X-Character": "m" * 5000})

    assert result.status == 404 and "Unknown character" in result.body["detail"]


def test_a_credential_that_is_not_printable_ascii_is_no_credential(
    app: InProcessApp, character: Character
) -> None:
    body = {"type": "start", "session_id": "s1", "text": "hi"}

    result = app.post_sse("/chat", body, key="ak_\x7fÿ")

    assert result.status == 401


async def _broken_events() -> Any:
    yield '{"n": 1}'
    raise RuntimeError("a bug half-way through a stream")


async def _stream_of(events: Any) -> list[str]:
    response = sse_response(events, failed=lambda: '{"error": "internal"}')
    parts = [part async for part in response.streaming_content]
    return [bytes(part).decode() for part in parts]


def test_a_stream_that_breaks_ends_with_its_error_event_instead_of_raising(
    settings: Any,
) -> None:
    settings.SSE_PING_INTERVAL_SECONDS = 30
    parts = asyncio.run(_stream_of(_broken_events()))

    assert parts == ['data: {"n": 1}\r\n\r\n', 'data: {"error": "internal"}\r\n\r\n']


def test_after_refusals_a_normal_turn_completes(
    app: InProcessApp, character: Character, api_key: str, fake_llm: FakeOpenAI
) -> None:
    for body in ({"type": "start", "session_id": SURROGATE}, {"type": "start", "text": NUL}):
        assert app.post_sse("/chat", None, key=api_key, content=raw_json(body)).status == 422

    result = app.post_sse("/chat", {"type": "start", "session_id": "s1", "text": "Hi"}, key=api_key)

    assert result.types[-1] == "final"
    assert TurnRecord.objects.get().status == "completed"
