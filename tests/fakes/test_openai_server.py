"""Tests of the fake OpenAI server, driven through the real `openai` SDK.

The fake is only useful if the SDK treats it like the real API, so every
behaviour is checked from the SDK's side: what a project test would observe.
"""

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from openai.types.chat import ChatCompletionChunk, ChatCompletionMessageParam

from tests.fakes.openai_server import MODELS, THREAD_NAME_PREFIX, FakeOpenAI, ScriptedReply

MODEL = "gpt-4o-mini"
HELLO: list[ChatCompletionMessageParam] = [{"role": "user", "content": "Hello"}]


@pytest.fixture
def fake() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as server:
        yield server


def async_client(fake: FakeOpenAI, **options: Any) -> openai.AsyncOpenAI:
    """No retries unless a test asks: a retry would hide the behaviour under test."""
    return openai.AsyncOpenAI(
        base_url=fake.base_url, api_key=fake.api_key, **{"max_retries": 0, **options}
    )


def sync_client(fake: FakeOpenAI, **options: Any) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=fake.base_url, api_key=fake.api_key, **{"max_retries": 0, **options}
    )


async def stream_chunks(
    client: openai.AsyncOpenAI,
    messages: list[ChatCompletionMessageParam] = HELLO,
    model: str = MODEL,
    **options: Any,
) -> list[ChatCompletionChunk]:
    stream = await client.chat.completions.create(
        model=model, messages=messages, stream=True, **options
    )
    return [chunk async for chunk in stream]


def content_deltas(chunks: list[ChatCompletionChunk]) -> list[str]:
    return [
        choice.delta.content for chunk in chunks for choice in chunk.choices if choice.delta.content
    ]


async def stream_text(client: openai.AsyncOpenAI, **options: Any) -> str:
    return "".join(content_deltas(await stream_chunks(client, **options)))


@pytest.mark.asyncio
async def test_it_streams_a_default_reply_built_from_the_history(fake: FakeOpenAI) -> None:
    messages: list[ChatCompletionMessageParam] = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "How are you?"},
    ]
    async with async_client(fake) as client:
        chunks = await stream_chunks(
            client, messages, model="gpt-test", stream_options={"include_usage": True}
        )

    deltas = content_deltas(chunks)
    assert "".join(deltas) == "You said: How are you?. I have seen 2 user messages."
    assert len(deltas) > 5, "content should arrive in word-sized deltas"
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-2].choices[0].finish_reason == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert {(chunk.id, chunk.model) for chunk in chunks} == {(chunks[0].id, "gpt-test")}
    assert fake.requests[0]["messages"] == messages


@pytest.mark.asyncio
async def test_it_consumes_the_script_in_order_then_falls_back_to_the_default(
    fake: FakeOpenAI,
) -> None:
    fake.script(
        ScriptedReply(text="Hi there. Bye.", repeat=2),
        ScriptedReply(chunks=["Exact", " chunks"]),
    )
    async with async_client(fake) as client:
        repeated = [await stream_text(client) for _ in range(2)]
        exact = content_deltas(await stream_chunks(client))
        default = await stream_text(client)

    assert repeated == ["Hi there. Bye.", "Hi there. Bye."]
    assert exact == ["Exact", " chunks"]
    assert default == "You said: Hello. I have seen 1 user messages."
    assert len(fake.requests) == 4


def test_it_answers_without_streaming(fake: FakeOpenAI) -> None:
    with sync_client(fake) as client:
        completion = client.chat.completions.create(
            model=MODEL,
            messages=[
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "Look"},
                        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA=="}},
                        {"type": "text", "text": "at this"},
                    ],
                }
            ],
        )

    assert completion.object == "chat.completion"
    assert completion.choices[0].message.content == (
        "You said: Look at this. I have seen 1 user messages."
    )
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None and completion.usage.total_tokens > 0


@pytest.mark.asyncio
async def test_it_streams_tool_call_arguments_in_pieces(fake: FakeOpenAI) -> None:
    arguments = '{"city": "Tokyo", "unit": "celsius"}'
    fake.script(
        ScriptedReply(tool_calls=[{"id": "call_1", "name": "get_weather", "arguments": arguments}])
    )
    tool: Any = {
        "type": "function",
        "function": {
            "name": "get_weather",
            "strict": True,
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}, "unit": {"type": "string"}},
                "required": ["city", "unit"],
                "additionalProperties": False,
            },
        },
    }
    async with (
        async_client(fake) as client,
        client.chat.completions.stream(model=MODEL, messages=HELLO, tools=[tool]) as stream,
    ):
        event_types = [event.type async for event in stream]
        final = await stream.get_final_completion()

    assert event_types.count("tool_calls.function.arguments.delta") > 1
    (call,) = final.choices[0].message.tool_calls or []
    assert (call.id, call.function.name, call.function.arguments) == (
        "call_1",
        "get_weather",
        arguments,
    )
    assert call.function.parsed_arguments == {"city": "Tokyo", "unit": "celsius"}
    assert final.choices[0].finish_reason == "tool_calls"


def test_it_lets_the_sdk_retry_a_500(fake: FakeOpenAI) -> None:
    fake.script(ScriptedReply(status=500))
    with sync_client(fake, max_retries=1) as client:
        completion = client.chat.completions.create(model=MODEL, messages=HELLO)

    assert completion.choices[0].message.content
    assert len(fake.requests) == 2


def test_it_raises_rate_limit_error_on_429(fake: FakeOpenAI) -> None:
    fake.script(ScriptedReply(status=429))
    with sync_client(fake) as client, pytest.raises(openai.RateLimitError) as excinfo:
        client.chat.completions.create(model=MODEL, messages=HELLO)

    assert excinfo.value.code == "rate_limit_exceeded"


@pytest.mark.asyncio
async def test_it_breaks_the_stream_after_cut_after_chunks(fake: FakeOpenAI) -> None:
    fake.script(ScriptedReply(text="One. Two. Three.", cut_after=2))
    received: list[ChatCompletionChunk] = []
    async with async_client(fake) as client:
        stream = await client.chat.completions.create(model=MODEL, messages=HELLO, stream=True)
        with pytest.raises(openai.APIConnectionError) as excinfo:
            async for chunk in stream:
                received.append(chunk)

    assert not isinstance(excinfo.value, openai.APITimeoutError)
    # The SDK wraps the transport error; its class lives in httpx2 (openai>=3)
    # or httpx (older SDKs), hence the check by name.
    assert type(excinfo.value.__cause__).__name__ == "RemoteProtocolError"
    assert "".join(content_deltas(received)) == "One. Two."


@pytest.mark.asyncio
async def test_it_delays_past_the_client_timeout(fake: FakeOpenAI) -> None:
    fake.script(ScriptedReply(delay=5.0))
    async with async_client(fake, timeout=0.2) as client:
        with pytest.raises(openai.APITimeoutError):
            await stream_text(client)


def test_it_rejects_a_wrong_api_key(fake: FakeOpenAI) -> None:
    with (
        openai.OpenAI(base_url=fake.base_url, api_key="sk-wrong", max_retries=0) as client,
        pytest.raises(openai.AuthenticationError),
    ):
        client.models.list()

    assert fake.requests == []


def test_it_lists_models(fake: FakeOpenAI) -> None:
    with sync_client(fake) as client:
        assert [model.id for model in client.models.list()] == list(MODELS)


def test_it_returns_openai_errors_for_unknown_routes_and_bad_json(fake: FakeOpenAI) -> None:
    headers = {"Authorization": f"Bearer {fake.api_key}"}
    with httpx.Client(base_url=fake.base_url, headers=headers) as client:
        missing = client.get("/nope")
        bad_json = client.post(
            "/chat/completions", content=b"{not json", headers={"Content-Type": "application/json"}
        )

    assert (missing.status_code, missing.json()["error"]["code"]) == (404, "unknown_url")
    assert bad_json.status_code == 400
    assert bad_json.json()["error"]["type"] == "invalid_request_error"


@pytest.mark.asyncio
async def test_it_serves_concurrent_streams_in_parallel(fake: FakeOpenAI) -> None:
    fake.default_chunk_delay = 0.02  # streams overlap only if the server is concurrent
    async with async_client(fake) as client:
        texts = await asyncio.gather(
            *(
                stream_text(client, messages=[{"role": "user", "content": f"n{i}"}])
                for i in range(50)
            )
        )

    assert texts == [f"You said: n{i}. I have seen 1 user messages." for i in range(50)]


def fake_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name.startswith(THREAD_NAME_PREFIX)}


def test_it_stops_cleanly_with_open_and_streaming_connections() -> None:
    # Other fakes (the test session's shared one) may be running: watch only this one's.
    others = fake_threads()
    fake = FakeOpenAI().start()
    fake.script(ScriptedReply(chunk_delay=30.0))
    with sync_client(fake) as client:
        client.models.list()  # leaves an idle keep-alive connection behind
        stream = client.chat.completions.create(model=MODEL, messages=HELLO, stream=True)
        next(iter(stream))  # the handler is now sleeping before the next delta

        fake.stop()

        assert fake_threads() <= others
        with pytest.raises(openai.APIConnectionError):
            list(stream)
