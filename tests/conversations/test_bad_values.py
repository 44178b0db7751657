"""Values the audits found reaching the LLM, or a server error, refused in each API's shape:
unknown `/chat` types, mistyped or out-of-bounds LLM parameters, a Dify request without
`query`, OpenAI requests for several choices or client tools, and methods the chat endpoints
do not serve."""

from __future__ import annotations

from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.test import AsyncClient

from characters.models import Character
from conversations.models import EndUser
from tests.fakes.openai_server import FakeOpenAI
from tests.inprocess import InProcessApp

pytestmark = pytest.mark.django_db


def hello(**fields: Any) -> dict[str, Any]:
    return {"type": "start", "session_id": "s1", "user_id": "u1", "text": "Hello", **fields}


def params(**values: Any) -> dict[str, Any]:
    return hello(metadata={"inline_llm_params": values})


def test_an_unknown_chat_type_is_refused(
    app: InProcessApp, character: Character, api_key: str, fake_llm: FakeOpenAI
) -> None:
    result = app.post_sse("/chat", hello(type="dance"), key=api_key)
    invoked = app.post_sse("/chat", hello(type="invoke"), key=api_key)

    assert result.status == 422
    assert result.body["detail"][0]["loc"] == ["body", "type"]
    assert invoked.types[-1] == "final"  # the socket's word for a turn means the same here
    assert len(fake_llm.requests) == 1


@pytest.mark.parametrize(
    ("values", "named"),
    [
        ({"temperature": "hot"}, "inline_llm_params.temperature must be a number from 0 to 2"),
        ({"temperature": 9}, "inline_llm_params.temperature"),
        ({"top_p": True}, "inline_llm_params.top_p"),
        ({"max_tokens": 0}, "inline_llm_params.max_tokens must be a whole number"),
        ({"max_tokens": 1.5}, "inline_llm_params.max_tokens"),
        ({"seed": "7"}, "inline_llm_params.seed"),
        ({"stop": [1]}, "inline_llm_params.stop"),
        ({"reasoning_effort": "extreme"}, "inline_llm_params.reasoning_effort"),
        ({"model": ""}, "inline_llm_params.model"),
    ],
)
def test_mistyped_llm_params_are_refused_naming_the_field(
    app: InProcessApp,
    character: Character,
    api_key: str,
    fake_llm: FakeOpenAI,
    values: dict[str, Any],
    named: str,
) -> None:
    result = app.post_sse("/chat", params(**values), key=api_key)

    assert result.status == 422
    assert named in result.body["detail"][0]["msg"]
    assert fake_llm.requests == [] and not EndUser.objects.exists()


def test_model_and_max_tokens_stay_within_what_the_character_allows(
    app: InProcessApp, character: Character, api_key: str, fake_llm: FakeOpenAI
) -> None:
    character.llm_allowed_models = "gpt-4.1, gpt-4.1-mini"
    character.llm_max_tokens = 256
    character.save()

    foreign = app.post_sse("/chat", params(model="o3-pro"), key=api_key)
    greedy = app.post_sse("/chat", params(max_completion_tokens=100_000), key=api_key)
    allowed = app.post_sse("/chat", params(model="gpt-4.1", max_tokens=256), key=api_key)

    assert foreign.status == greedy.status == 422
    assert (
        "not one this character may use (gpt-4.1, gpt-4.1-mini, gpt-4o-mini)"
        in (foreign.body["detail"][0]["msg"])
    )
    assert "max_completion_tokens may be at most 256" in greedy.body["detail"][0]["msg"]
    assert allowed.types[-1] == "final"
    assert [(r["model"], r["max_tokens"]) for r in fake_llm.requests] == [("gpt-4.1", 256)]


def test_dify_requires_query(app: InProcessApp, character: Character, api_key: str) -> None:
    result = app.post_sse("/chat-messages", {"user": "u1"}, key=api_key)

    assert result.status == 400
    assert result.body["code"] == "invalid_param" and "query" in result.body["message"]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"n": 2}, "n: only one choice"),
        ({"tools": [{"type": "function", "function": {"name": "f"}}]}, "tools:"),
        ({"functions": [{"name": "f"}]}, "tools:"),
        ({"temperature": "warm"}, "body.temperature must be a number"),
        ({"max_tokens": 10**9}, "max_tokens may be at most 4096"),
    ],
)
def test_openai_refuses_what_it_would_otherwise_ignore(
    app: InProcessApp,
    character: Character,
    api_key: str,
    fake_llm: FakeOpenAI,
    extra: dict[str, Any],
    message: str,
) -> None:
    body = {"model": "mia", "messages": [{"role": "user", "content": "Hi"}], **extra}

    result = app.post_sse("/v1/chat/completions", body, key=api_key)

    assert result.status == 400
    assert result.body["error"]["type"] == "invalid_request_error"
    assert message in result.body["error"]["message"]
    assert fake_llm.requests == []


async def _call(method: str, path: str) -> tuple[int, str, Any]:
    response = await AsyncClient().generic(method, path)
    return response.status_code, response.get("Allow", ""), response.json()


@pytest.mark.parametrize(
    ("method", "path", "allow", "shape"),
    [
        ("GET", "/chat", "POST", "detail"),
        ("OPTIONS", "/start", "POST", "detail"),
        ("GET", "/characters/mia/chat", "POST", "detail"),
        ("GET", "/chat-messages", "POST", "code"),
        ("GET", "/v1/chat/completions", "POST", "error"),
        ("POST", "/v1/models", "GET", "error"),
        ("GET", "/tts", "POST", "detail"),
    ],
)
def test_chat_endpoints_answer_other_methods_with_a_json_405(
    character: Character, method: str, path: str, allow: str, shape: str
) -> None:
    status, allowed, body = async_to_sync(_call)(method, path)

    assert (status, allowed) == (405, allow)
    assert shape in body


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"text": "Hi", "language": "not a language"}, "language"),
        ({"text": "Hi", "language": "-x"}, "language"),  # would reach the synthesizer as an option
        ({"text": "x" * 5001}, "text"),
    ],
)
def test_tts_refuses_what_the_synthesizer_would_fail_on(
    app: InProcessApp, character: Character, api_key: str, body: dict[str, Any], field: str
) -> None:
    result = app.post_sse("/tts", body, key=api_key)

    assert result.status == 422
    assert result.body["detail"][0]["loc"] == ["body", field]
