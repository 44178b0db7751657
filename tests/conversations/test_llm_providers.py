"""The OpenAI-compatible provider's own wire format, and choosing a provider; what every
provider does (streaming, retries, errors, tool calls) is in test_provider_contract.py."""

from __future__ import annotations

from typing import Any

import pytest

from characters.models import Character, LLMProvider
from conversations.llm import (
    ChatMessage,
    LLMError,
    LLMRequest,
    Usage,
    provider_for,
)
from conversations.llm.echo import EchoProvider
from conversations.llm.openai_compat import OpenAICompatibleProvider
from tests.fakes.openai_server import FakeOpenAI, ScriptedReply

HELLO = LLMRequest(
    messages=[
        ChatMessage(role="system", content="Be brief."),
        ChatMessage(role="user", content="Hello", files=[{"url": "https://x/cat.png"}]),
    ],
    model="gpt-4o-mini",
    temperature=0.3,
)


def provider(fake: FakeOpenAI) -> OpenAICompatibleProvider:
    return OpenAICompatibleProvider(api_key=fake.api_key, base_url=fake.base_url)


async def test_it_streams_text_deltas(fake_llm: FakeOpenAI) -> None:
    fake_llm.script(ScriptedReply(text="Hi there. How are you?"))

    items: list[Any] = [d async for d in provider(fake_llm).stream(HELLO)]
    deltas = [d for d in items if isinstance(d, str)]

    assert "".join(deltas) == "Hi there. How are you?" and len(deltas) > 1
    # The call's token counts come last, as the API reported them.
    assert items[-1] == Usage(prompt_tokens=items[-1].prompt_tokens, completion_tokens=len(deltas))
    sent = fake_llm.requests[-1]
    assert sent["stream_options"] == {"include_usage": True}
    assert (sent["model"], sent["temperature"], sent["stream"]) == ("gpt-4o-mini", 0.3, True)
    assert sent["messages"][1]["content"][0] == {
        "type": "image_url",
        "image_url": {"url": "https://x/cat.png"},
    }


@pytest.mark.parametrize("ending", ["garbage", "misshapen"])
async def test_a_stream_event_that_is_no_chunk_breaks_the_stream_off(
    fake_llm: FakeOpenAI, ending: str
) -> None:
    fake_llm.script(ScriptedReply(text="One. Two.", ending=ending))

    items: list[Any] = []
    with pytest.raises(LLMError, match="LLM provider stream broke off"):
        async for item in provider(fake_llm).stream(HELLO):
            items.append(item)
    # The text before the bad event, and nothing of the event itself (a number is no text).
    assert "".join(items) == "One. Two."


def test_it_falls_back_to_echo_without_a_key(monkeypatch: pytest.MonkeyPatch) -> None:
    character = Character(llm_api_key_env="AVATARSITE_TEST_KEY")
    monkeypatch.delenv("AVATARSITE_TEST_KEY", raising=False)
    assert isinstance(provider_for(character), EchoProvider)

    monkeypatch.setenv("AVATARSITE_TEST_KEY", "sk-test")
    assert isinstance(provider_for(character), OpenAICompatibleProvider)

    character.llm_provider = LLMProvider.ECHO
    assert isinstance(provider_for(character), EchoProvider)
