"""The Anthropic and Gemini choices: what only Anthropic does (its request body, history as
alternating content blocks, overloads and error events) against the fake Anthropic server
through the real `anthropic` SDK, Gemini through the fake OpenAI server, and both through
`/chat`. What every provider does is in test_provider_contract.py."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.core.exceptions import ValidationError

from characters.models import Character, LLMProvider
from conversations.llm import (
    ChatMessage,
    LLMError,
    LLMRequest,
    ToolCallRequest,
    Usage,
    key_variable,
    provider_for,
)
from conversations.llm.anthropic import AnthropicProvider
from conversations.llm.base import LLMProvider as ProviderProtocol
from conversations.llm.echo import EchoProvider
from conversations.llm.openai_compat import OpenAICompatibleProvider
from conversations.models import Context, Message, TurnRecord
from conversations.tools import Tool
from tests.conftest import ANTHROPIC_KEY_VARIABLE, LLM_KEY_VARIABLE, AsgiServer
from tests.fakes.anthropic_server import FakeAnthropic, ScriptedReply
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.openai_server import ScriptedReply as OpenAIReply
from tests.inprocess import InProcessApp
from tests.sse import post_sse

HELLO = LLMRequest(
    messages=[ChatMessage(role="system", content="Be brief."), ChatMessage("user", "Hello")],
    model="claude-haiku-4-5",
    temperature=0.3,
)

LOOKUP = Tool(
    name="lookup",
    description="Look a city up.",
    parameters={"type": "object", "properties": {"city": {"type": "string"}}},
    func=lambda context, arguments: {},
)


def provider(fake: FakeAnthropic) -> AnthropicProvider:
    return AnthropicProvider(api_key=fake.api_key, base_url=fake.base_url)


async def collect(
    provider: ProviderProtocol, request: LLMRequest
) -> list[str | ToolCallRequest | Usage]:
    return [item async for item in provider.stream(request)]


def text_of(items: list[str | ToolCallRequest | Usage]) -> str:
    return "".join(i for i in items if isinstance(i, str))


async def test_it_streams_text_deltas_without_sampling_parameters(
    fake_anthropic: FakeAnthropic,
) -> None:
    fake_anthropic.script(ScriptedReply(text="Hi there. How are you?"))

    items = await collect(provider(fake_anthropic), HELLO)

    assert text_of(items) == "Hi there. How are you?" and len(items) > 1
    assert fake_anthropic.requests[-1] == {
        "model": "claude-haiku-4-5",
        "max_tokens": 1024,
        "system": "Be brief.",
        "messages": [{"role": "user", "content": "Hello"}],
        "stream": True,
    }


async def test_it_converts_history_to_alternating_content_blocks(
    fake_anthropic: FakeAnthropic,
) -> None:
    two_calls = [
        {"id": "toolu_a", "name": "lookup", "arguments": '{"city": "Kyoto"}'},
        {"id": "toolu_b", "name": "clock", "arguments": ""},
    ]
    messages = [
        ChatMessage("system", "You are Claudia."),
        ChatMessage("user", "Hello"),
        ChatMessage("assistant", ""),  # an empty answer: dropped, so two user turns meet
        ChatMessage(
            "user",
            "Look at these",
            files=[
                {"url": "https://x/cat.png"},
                {"url": "data:image/jpeg;base64,/9j/AA=="},
                {"url": "data:,hi"},
            ],
        ),
        ChatMessage("assistant", "Two cats."),
        ChatMessage("user", "How warm is it?"),
        ChatMessage("assistant", "One moment.", tool_calls=two_calls),
        ChatMessage("tool", '{"celsius": 23}', tool_call_id="toolu_a"),
        ChatMessage("tool", '{"time": "noon"}', tool_call_id="toolu_b"),
        ChatMessage(
            "assistant",
            "",
            tool_calls=[{"id": "toolu_c", "name": "lookup", "arguments": '{"city": "Nara"}'}],
        ),
        ChatMessage("tool", '{"celsius": 21}', tool_call_id="toolu_c"),
    ]

    await collect(provider(fake_anthropic), LLMRequest(messages=messages, model="claude-x"))

    sent = fake_anthropic.requests[-1]
    assert sent["system"] == "You are Claudia."
    assert sent["messages"] == [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Hello"},
                {"type": "image", "source": {"type": "url", "url": "https://x/cat.png"}},
                {
                    "type": "image",
                    "source": {"type": "base64", "media_type": "image/jpeg", "data": "/9j/AA=="},
                },
                {
                    "type": "image",
                    "source": {"type": "base64", "media_type": "image/png", "data": "aGk="},
                },
                {"type": "text", "text": "Look at these"},
            ],
        },
        {"role": "assistant", "content": "Two cats."},
        {"role": "user", "content": "How warm is it?"},
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "One moment."},
                {"type": "tool_use", "id": "toolu_a", "name": "lookup", "input": {"city": "Kyoto"}},
                {"type": "tool_use", "id": "toolu_b", "name": "clock", "input": {}},
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_a", "content": '{"celsius": 23}'},
                {"type": "tool_result", "tool_use_id": "toolu_b", "content": '{"time": "noon"}'},
            ],
        },
        {
            "role": "assistant",
            "content": [
                {"type": "tool_use", "id": "toolu_c", "name": "lookup", "input": {"city": "Nara"}}
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_c", "content": '{"celsius": 21}'}
            ],
        },
    ]


async def test_it_retries_an_overload_then_succeeds(fake_anthropic: FakeAnthropic) -> None:
    fake_anthropic.script(ScriptedReply(status=529), ScriptedReply(text="Made it."))

    assert text_of(await collect(provider(fake_anthropic), HELLO)) == "Made it."
    assert len(fake_anthropic.requests) == 2


@pytest.mark.parametrize(
    ("fault", "message", "attempts"),
    [
        (ScriptedReply(status=529, repeat=2), "LLM provider returned HTTP 529", 2),
        (ScriptedReply(status=400), "LLM provider returned HTTP 400", 1),
        (ScriptedReply(text="One. Two. Three.", error_event_after=1), "stream broke off", 1),
        (ScriptedReply(text="One. Two.", chunk_delay=1), "LLM provider timed out", 1),
    ],
    ids=["overloaded", "bad-request", "error-event", "timeout-mid-stream"],
)
async def test_it_raises_llm_error_when_retries_run_out(
    fake_anthropic: FakeAnthropic, settings: Any, fault: ScriptedReply, message: str, attempts: int
) -> None:
    settings.LLM_TIMEOUT_SECONDS = 0.2
    settings.LLM_MAX_RETRIES = 1
    fake_anthropic.script(fault)

    with pytest.raises(LLMError, match=message):
        await collect(provider(fake_anthropic), HELLO)
    assert len(fake_anthropic.requests) == attempts


def test_it_uses_each_providers_own_key_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    for variable in ("ANTHROPIC_API_KEY", "GEMINI_API_KEY", "MY_CLAUDE_KEY"):
        monkeypatch.delenv(variable, raising=False)
    claude = Character(slug="claude", llm_provider=LLMProvider.ANTHROPIC)
    gemini = Character(slug="gemini", llm_provider=LLMProvider.GEMINI)
    assert (key_variable(claude), key_variable(gemini)) == ("ANTHROPIC_API_KEY", "GEMINI_API_KEY")
    assert isinstance(provider_for(claude), EchoProvider)

    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant")
    monkeypatch.setenv("GEMINI_API_KEY", "g-key")
    assert isinstance(provider_for(claude), AnthropicProvider)
    chosen = provider_for(gemini)
    assert isinstance(chosen, OpenAICompatibleProvider) and chosen.name == "gemini"
    assert chosen.base_url == "https://generativelanguage.googleapis.com/v1beta/openai/"

    claude.llm_api_key_env = "MY_CLAUDE_KEY"  # a name of the operator's own is used as written
    assert isinstance(provider_for(claude), EchoProvider)


async def test_it_speaks_to_gemini_through_its_openai_compatible_endpoint(
    fake_llm: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(LLM_KEY_VARIABLE, fake_llm.api_key)
    gemini = Character(
        llm_provider=LLMProvider.GEMINI,
        llm_model="gemini-2.5-flash",
        llm_base_url=fake_llm.base_url,
        llm_api_key_env=LLM_KEY_VARIABLE,
    )
    fake_llm.script(OpenAIReply(text="Hello from Gemini."))

    chosen = provider_for(gemini)
    items = await collect(chosen, LLMRequest(messages=HELLO.messages, model=gemini.llm_model))

    assert (text_of(items), chosen.name) == ("Hello from Gemini.", "gemini")
    assert fake_llm.requests[-1]["model"] == "gemini-2.5-flash"


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"llm_provider": LLMProvider.ANTHROPIC}, "llm_model"),
        ({"llm_provider": LLMProvider.GEMINI}, "llm_model"),
        (
            {
                "llm_provider": LLMProvider.ANTHROPIC,
                "llm_model": "claude-x",
                "llm_temperature": 0.5,
            },
            "llm_temperature",
        ),
    ],
    ids=["claude-with-gpt-model", "gemini-with-gpt-model", "claude-temperature"],
)
def test_it_refuses_settings_the_provider_would_reject(fields: dict[str, Any], field: str) -> None:
    character = Character(slug="c", name="C", **fields)

    with pytest.raises(ValidationError) as raised:
        character.clean()

    assert list(raised.value.message_dict) == [field]


# Through /chat: the daphne process reaches the session's fake Anthropic server.


@pytest.fixture
def claudia(fake_anthropic_server: FakeAnthropic) -> Character:
    return Character.objects.create(
        slug="claudia",
        name="Claudia",
        persona="You are Claudia.",
        llm_provider=LLMProvider.ANTHROPIC,
        llm_model="claude-haiku-4-5",
        llm_base_url=fake_anthropic_server.base_url,
        llm_api_key_env=ANTHROPIC_KEY_VARIABLE,
        is_default=True,
    )


def say(text: str, context_id: str | None = None) -> dict[str, object]:
    body: dict[str, object] = {"type": "start", "session_id": "s1", "user_id": "u1", "text": text}
    if context_id:
        body["context_id"] = context_id
    return body


@pytest.mark.django_db
def test_it_holds_a_conversation_through_chat(
    app: InProcessApp, claudia: Character, api_key: str, fake_anthropic: FakeAnthropic
) -> None:
    first = app.post_sse("/chat", say("My name is Ken."), key=api_key)
    context_id = first.events[0]["context_id"]
    second = app.post_sse("/chat", say("Who am I?", context_id), key=api_key)

    assert first.types[-1] == second.types[-1] == "final"
    assert second.events[-1]["text"] == "You said: Who am I?. I have seen 2 user messages."
    sent = fake_anthropic.requests[-1]
    # The persona comes first; the day's schedule and the local time follow it.
    assert sent["system"].startswith("You are Claudia.\n\n")
    assert sent["model"] == "claude-haiku-4-5"
    assert sent["messages"] == [
        {"role": "user", "content": "My name is Ken."},
        {"role": "assistant", "content": "You said: My name is Ken.. I have seen 1 user messages."},
        {"role": "user", "content": "Who am I?"},
    ]
    assert set(TurnRecord.objects.values_list("provider", flat=True)) == {"anthropic"}


@pytest.mark.django_db
@pytest.mark.parametrize("ending", ["eof", "garbage"])
def test_a_claude_stream_without_message_stop_is_a_failed_turn(
    app: InProcessApp,
    claudia: Character,
    api_key: str,
    fake_anthropic: FakeAnthropic,
    ending: str,
) -> None:
    claudia.apology = "Sorry, I lost my words."
    claudia.save()
    fake_anthropic.script(ScriptedReply(text="One. Two. Three.", ending=ending))

    result = app.post_sse("/chat", say("Hello"), key=api_key)

    assert result.types[-1] == "error" and "final" not in result.types
    assert result.events[-2]["text"] == "Sorry, I lost my words."
    assert TurnRecord.objects.get().status == TurnRecord.Status.FAILED
    assert not Message.objects.exists()


@pytest.mark.django_db(transaction=True)  # the test tools are the live server's (TOOL_MODULES)
def test_it_round_trips_a_tool_call_through_chat(
    asgi_server: AsgiServer, claudia: Character, api_key: str, fake_anthropic: FakeAnthropic
) -> None:
    fake_anthropic.script(
        ScriptedReply(
            tool_calls=[
                {"id": "toolu_1", "name": "check_temperature", "arguments": {"place": "Kyoto"}}
            ]
        ),
        ScriptedReply(text="It is 23 degrees."),
    )

    result = post_sse(f"{asgi_server.url}/chat", say("How warm is Kyoto?"), key=api_key)
    # The next turn sends the stored tool round back: the fake refuses unpaired tool blocks.
    context_id = result.events[0]["context_id"]
    after = post_sse(f"{asgi_server.url}/chat", say("Thanks!", context_id), key=api_key)

    assert result.types == [
        "start",
        "tool_call",
        "chunk",
        "tool_call",
        "tool_call",
        "chunk",
        "final",
    ]
    assert result.events[-1]["text"] == "Let me check.It is 23 degrees."
    offered = {t["name"]: t for t in fake_anthropic.requests[0]["tools"]}
    assert offered["check_temperature"]["input_schema"]["properties"] == {
        "place": {"type": "string"}
    }
    tool_round = [
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Let me check."},
                {
                    "type": "tool_use",
                    "id": "toolu_1",
                    "name": "check_temperature",
                    "input": {"place": "Kyoto"},
                },
            ],
        },
        {
            "role": "user",
            "content": [
                {
                    "type": "tool_result",
                    "tool_use_id": "toolu_1",
                    "content": json.dumps({"place": "Kyoto", "celsius": 23}),
                }
            ],
        },
    ]
    assert fake_anthropic.requests[1]["messages"][1:] == tool_round
    assert after.types[-1] == "final"
    assert fake_anthropic.requests[2]["messages"][1:] == [
        *tool_round,
        {"role": "assistant", "content": "It is 23 degrees."},
        {"role": "user", "content": "Thanks!"},
    ]
    assert Context.objects.get().message_count == 6
