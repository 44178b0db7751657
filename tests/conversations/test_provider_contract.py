"""What every LLM provider promises the pipeline, run against each one through its real SDK or
HTTP client and its fake server: OpenAI-compatible, Gemini (OpenAI-compatible endpoint),
Anthropic, Dify and the development echo provider.

Each provider's own wire format (what its request body holds, how history is converted) is
tested beside it; this suite is the behaviour they share: streamed text, retries on 429 and
5xx, one LLMError wording for every failure (a stream ending without its terminator, empty or
with a line that is not JSON included), and tool calls joined from streamed pieces.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from pytest_django.fixtures import Settings

from characters.models import Character, LLMProvider
from conversations.llm import (
    ECHO_MARK,
    ChatMessage,
    LLMError,
    LLMRequest,
    ToolCallRequest,
    Usage,
    provider_for,
)
from conversations.llm.base import LLMProvider as Provider
from conversations.tools import Tool
from tests.conftest import ANTHROPIC_KEY_VARIABLE, DIFY_KEY_VARIABLE, LLM_KEY_VARIABLE
from tests.fakes import anthropic_server
from tests.fakes.anthropic_server import FakeAnthropic
from tests.fakes.dify_server import FakeDify
from tests.fakes.openai_server import FakeOpenAI, ScriptedReply

HELLO = [ChatMessage(role="system", content="Be brief."), ChatMessage(role="user", content="Hello")]

LOOKUP = Tool(
    name="lookup",
    description="Look a city up.",
    parameters={"type": "object", "properties": {"city": {"type": "string"}}},
    func=lambda context, arguments: {},
)


def openai_tool(tool: Tool) -> dict[str, Any]:
    return {
        "type": "function",
        "function": {
            "name": tool.name,
            "description": tool.description,
            "parameters": tool.parameters,
        },
    }


def anthropic_tool(tool: Tool) -> dict[str, Any]:
    return {"name": tool.name, "description": tool.description, "input_schema": tool.parameters}


@dataclass(frozen=True)
class Case:
    """One provider as a character chooses it, and the fake that answers for it."""

    choice: LLMProvider
    model: str
    fake_fixture: str | None  # None: the echo provider, which calls nothing
    key_variable: str = LLM_KEY_VARIABLE
    reply: type[ScriptedReply] = ScriptedReply  # the fake's own script type
    tool_on_the_wire: Callable[[Tool], dict[str, Any]] | None = None  # None: no tools


CASES = {
    "openai": Case(LLMProvider.OPENAI, "gpt-4o-mini", "fake_llm", tool_on_the_wire=openai_tool),
    "gemini": Case(
        LLMProvider.GEMINI, "gemini-2.5-flash", "fake_llm", tool_on_the_wire=openai_tool
    ),
    "anthropic": Case(
        LLMProvider.ANTHROPIC,
        "claude-haiku-4-5",
        "fake_anthropic",
        ANTHROPIC_KEY_VARIABLE,
        anthropic_server.ScriptedReply,
        anthropic_tool,
    ),
    "dify": Case(LLMProvider.DIFY, "dify-app", "fake_dify", DIFY_KEY_VARIABLE),
    "echo": Case(LLMProvider.ECHO, "echo", None),
}
SCRIPTED = [name for name, case in CASES.items() if case.fake_fixture]
WITH_TOOLS = [name for name, case in CASES.items() if case.tool_on_the_wire]


@dataclass
class Subject:
    case: Case
    fake: FakeOpenAI | FakeAnthropic | FakeDify | None
    character: Character
    monkeypatch: pytest.MonkeyPatch

    def provider(self, *, api_key: str | None = None, base_url: str | None = None) -> Provider:
        """The provider `provider_for` builds, with the fake's key and URL unless given."""
        if self.fake is not None:
            self.monkeypatch.setenv(self.case.key_variable, api_key or self.fake.api_key)
            self.character.llm_base_url = base_url or self.fake.base_url
        return provider_for(self.character)

    def request(self, **fields: Any) -> LLMRequest:
        return LLMRequest(messages=HELLO, model=self.case.model, **fields)

    def script(self, **fields: Any) -> None:
        assert self.fake is not None
        self.fake.script(self.case.reply(**fields))

    @property
    def requests(self) -> list[dict[str, Any]]:
        assert self.fake is not None
        return self.fake.requests


@pytest.fixture
def subject(
    request: pytest.FixtureRequest, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Subject]:
    """The provider named by the test's parameter, built by `provider_for` as a turn builds it,
    with one retry and a short timeout."""
    case = CASES[request.param]
    settings.LLM_MAX_RETRIES = 1
    settings.LLM_TIMEOUT_SECONDS = 0.5
    fake = request.getfixturevalue(case.fake_fixture) if case.fake_fixture else None
    character = Character(
        slug=f"contract-{request.param}",
        llm_provider=case.choice,
        llm_model=case.model,
        llm_api_key_env=case.key_variable,
    )
    yield Subject(case, fake, character, monkeypatch)


async def collect(provider: Provider, request: LLMRequest) -> list[str | ToolCallRequest | Usage]:
    return [item async for item in provider.stream(request)]


def text_of(items: list[str | ToolCallRequest | Usage]) -> str:
    return "".join(i for i in items if isinstance(i, str))


@pytest.mark.parametrize("subject", SCRIPTED, indirect=True)
async def test_it_streams_the_answer_in_several_deltas(subject: Subject) -> None:
    subject.script(text="Hi there. How are you?")

    items = await collect(subject.provider(), subject.request())

    assert text_of(items) == "Hi there. How are you?" and len(items) > 1
    assert len(subject.requests) == 1


@pytest.mark.parametrize("subject", ["echo"], indirect=True)
async def test_the_echo_provider_marks_its_replies(subject: Subject) -> None:
    items = await collect(subject.provider(), subject.request())

    assert text_of(items) == f"{ECHO_MARK} You said: Hello"


@pytest.mark.parametrize("subject", SCRIPTED, indirect=True)
async def test_it_retries_a_429_then_succeeds(subject: Subject) -> None:
    assert subject.fake is not None
    subject.fake.script(subject.case.reply(status=429), subject.case.reply(text="Made it."))

    assert text_of(await collect(subject.provider(), subject.request())) == "Made it."
    assert len(subject.requests) == 2


@pytest.mark.parametrize("subject", SCRIPTED, indirect=True)
@pytest.mark.parametrize(
    ("fault", "message", "attempts"),
    [
        ({"status": 500, "repeat": 2}, "LLM provider returned HTTP 500", 2),
        ({"text": "One. Two. Three.", "cut_after": 1}, "LLM provider stream broke off", 1),
        ({"delay": 2, "repeat": 2}, "LLM provider timed out", 2),
        ({"text": "One. Two.", "ending": "eof"}, "LLM provider stream broke off", 1),
        ({"text": "One. Two.", "ending": "garbage"}, "LLM provider stream broke off", 1),
        ({"ending": "empty"}, "LLM provider stream broke off", 1),
    ],
    ids=["server-error", "cut", "timeout", "eof", "garbage", "empty"],
)
async def test_it_raises_llm_error_when_retries_run_out(
    subject: Subject, fault: dict[str, Any], message: str, attempts: int
) -> None:
    subject.script(**fault)

    with pytest.raises(LLMError, match=message):
        await collect(subject.provider(), subject.request())
    assert len(subject.requests) == attempts


@pytest.mark.parametrize("subject", SCRIPTED, indirect=True)
async def test_it_raises_llm_error_on_a_wrong_key(subject: Subject) -> None:
    wrong = subject.provider(api_key="wrong-key")

    with pytest.raises(LLMError, match="LLM provider returned HTTP 401"):
        await collect(wrong, subject.request())


@pytest.mark.parametrize("subject", SCRIPTED, indirect=True)
async def test_it_raises_llm_error_when_unreachable(subject: Subject) -> None:
    unreachable = subject.provider(base_url="http://127.0.0.1:9/v1")

    with pytest.raises(LLMError, match="LLM provider is unreachable"):
        await collect(unreachable, subject.request())


@pytest.mark.parametrize("subject", WITH_TOOLS, indirect=True)
async def test_it_joins_streamed_tool_call_pieces(subject: Subject) -> None:
    assert subject.case.tool_on_the_wire is not None
    subject.script(
        text="One moment.",
        tool_calls=[
            {"id": "call_a", "name": "lookup", "arguments": '{"city": "Tokyo", "days": 3}'},
            {"id": "call_b", "name": "clock", "arguments": ""},
        ],
    )

    items = await collect(subject.provider(), subject.request(tools=[LOOKUP]))

    assert text_of(items) == "One moment."
    assert [i for i in items if isinstance(i, ToolCallRequest)] == [
        ToolCallRequest(id="call_a", name="lookup", arguments='{"city": "Tokyo", "days": 3}'),
        ToolCallRequest(id="call_b", name="clock", arguments=""),
    ]
    assert subject.requests[-1]["tools"] == [subject.case.tool_on_the_wire(LOOKUP)]
