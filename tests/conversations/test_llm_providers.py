"""The provider layer against the fake OpenAI server, through the real `openai` SDK."""

from __future__ import annotations

from typing import Any

import pytest

from characters.models import Character, LLMProvider
from conversations.llm import (
    ECHO_MARK,
    ChatMessage,
    LLMError,
    LLMRequest,
    ToolCallRequest,
    provider_for,
)
from conversations.llm.echo import EchoProvider
from conversations.llm.openai_compat import OpenAICompatibleProvider
from conversations.tools import Tool
from tests.fakes.openai_server import FakeOpenAI, ScriptedReply

HELLO = LLMRequest(
    messages=[
        ChatMessage(role="system", content="Be brief."),
        ChatMessage(role="user", content="Hello", files=[{"url": "https://x/cat.png"}]),
    ],
    model="gpt-4o-mini",
    temperature=0.3,
)

LOOKUP = Tool(
    name="lookup",
    description="Look a city up.",
    parameters={"type": "object", "properties": {"city": {"type": "string"}}},
    func=lambda context, arguments: {},
)


def provider(fake: FakeOpenAI) -> OpenAICompatibleProvider:
    return OpenAICompatibleProvider(api_key=fake.api_key, base_url=fake.base_url)


async def collect(provider: OpenAICompatibleProvider | EchoProvider, request: LLMRequest) -> str:
    return "".join([delta async for delta in provider.stream(request) if isinstance(delta, str)])


async def test_it_streams_text_deltas(fake_llm: FakeOpenAI) -> None:
    fake_llm.script(ScriptedReply(text="Hi there. How are you?"))

    deltas: list[Any] = [d async for d in provider(fake_llm).stream(HELLO)]

    assert "".join(deltas) == "Hi there. How are you?" and len(deltas) > 1
    sent = fake_llm.requests[-1]
    assert (sent["model"], sent["temperature"], sent["stream"]) == ("gpt-4o-mini", 0.3, True)
    assert sent["messages"][1]["content"][0] == {
        "type": "image_url",
        "image_url": {"url": "https://x/cat.png"},
    }


async def test_it_retries_a_429_then_succeeds(fake_llm: FakeOpenAI) -> None:
    fake_llm.script(ScriptedReply(status=429), ScriptedReply(text="Made it."))

    assert await collect(provider(fake_llm), HELLO) == "Made it."
    assert len(fake_llm.requests) == 2


@pytest.mark.parametrize(
    ("fault", "message"),
    [
        (ScriptedReply(status=500, repeat=3), "LLM provider returned HTTP 500"),
        (ScriptedReply(text="One. Two. Three.", cut_after=1), "LLM provider stream broke off"),
    ],
)
async def test_it_raises_llm_error_when_retries_run_out(
    fake_llm: FakeOpenAI, fault: ScriptedReply, message: str
) -> None:
    fake_llm.script(fault)

    with pytest.raises(LLMError, match=message):
        await collect(provider(fake_llm), HELLO)


async def test_it_raises_llm_error_when_unreachable() -> None:
    unreachable = OpenAICompatibleProvider(api_key="k", base_url="http://127.0.0.1:9/v1")

    with pytest.raises(LLMError, match="unreachable"):
        await collect(unreachable, HELLO)


async def test_the_echo_provider_marks_its_replies() -> None:
    reply = await collect(EchoProvider(), HELLO)

    assert reply == f"{ECHO_MARK} You said: Hello"


def test_it_falls_back_to_echo_without_a_key(monkeypatch: pytest.MonkeyPatch) -> None:
    character = Character(llm_api_key_env="AVATARSITE_TEST_KEY")
    monkeypatch.delenv("AVATARSITE_TEST_KEY", raising=False)
    assert isinstance(provider_for(character), EchoProvider)

    monkeypatch.setenv("AVATARSITE_TEST_KEY", "sk-test")
    assert isinstance(provider_for(character), OpenAICompatibleProvider)

    character.llm_provider = LLMProvider.ECHO
    assert isinstance(provider_for(character), EchoProvider)


async def test_it_joins_streamed_tool_call_pieces(fake_llm: FakeOpenAI) -> None:
    fake_llm.script(
        ScriptedReply(
            text="One moment.",
            tool_calls=[
                {"id": "call_a", "name": "lookup", "arguments": '{"city": "Tokyo", "days": 3}'},
                {"id": "call_b", "name": "clock", "arguments": ""},
            ],
        )
    )
    request = LLMRequest(messages=HELLO.messages, model="m", tools=[LOOKUP])

    items = [item async for item in provider(fake_llm).stream(request)]

    assert "".join(i for i in items if isinstance(i, str)) == "One moment."
    assert [i for i in items if isinstance(i, ToolCallRequest)] == [
        ToolCallRequest(id="call_a", name="lookup", arguments='{"city": "Tokyo", "days": 3}'),
        ToolCallRequest(id="call_b", name="clock", arguments=""),
    ]
    assert fake_llm.requests[-1]["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "lookup",
                "description": "Look a city up.",
                "parameters": LOOKUP.parameters,
            },
        }
    ]
