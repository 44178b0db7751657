"""The fake Anthropic server speaks the wire format the real `anthropic` SDK expects."""

from __future__ import annotations

from collections.abc import Iterator

import anthropic
import httpx
import pytest
from anthropic.types import MessageParam

from tests.conftest import fresh
from tests.fakes.anthropic_server import FakeAnthropic, ScriptedReply

HI: list[MessageParam] = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def server() -> Iterator[FakeAnthropic]:
    with FakeAnthropic() as fake:
        yield fake


@pytest.fixture
def fake(server: FakeAnthropic) -> Iterator[FakeAnthropic]:
    yield from fresh(server)


@pytest.fixture
def sdk(fake: FakeAnthropic) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(api_key=fake.api_key, base_url=fake.base_url, max_retries=0) as sdk:
        yield sdk


def test_it_streams_events_the_sdk_accumulates_into_a_message(
    fake: FakeAnthropic, sdk: anthropic.Anthropic
) -> None:
    fake.script(
        ScriptedReply(
            text="Let me look.",
            tool_calls=[{"id": "toolu_1", "name": "lookup", "arguments": '{"city": "Kyoto"}'}],
        )
    )

    with sdk.messages.stream(model="claude-x", max_tokens=50, messages=HI) as stream:
        texts = list(stream.text_stream)
        final = stream.get_final_message()

    assert "".join(texts) == "Let me look." and len(texts) > 1
    assert [block.type for block in final.content] == ["text", "tool_use"]
    assert (final.content[1].id, final.content[1].input) == ("toolu_1", {"city": "Kyoto"})
    assert final.stop_reason == "tool_use" and final.usage.output_tokens > 0


def test_it_answers_without_streaming_from_the_history(
    fake: FakeAnthropic, sdk: anthropic.Anthropic
) -> None:
    message = sdk.messages.create(
        model="claude-x",
        max_tokens=50,
        system="Be brief.",
        messages=[
            *HI,
            {"role": "assistant", "content": "Hello."},
            {"role": "user", "content": "ok"},
        ],
    )

    assert message.content[0].text == "You said: ok. I have seen 2 user messages."
    assert (message.model, message.stop_reason) == ("claude-x", "end_turn")
    assert fake.requests[-1]["system"] == "Be brief."


@pytest.mark.parametrize(
    ("status", "error", "kind"),
    [
        (429, anthropic.RateLimitError, "rate_limit_error"),
        (529, anthropic.OverloadedError, "overloaded_error"),
        (500, anthropic.InternalServerError, "api_error"),
    ],
)
def test_it_returns_anthropic_error_bodies(
    fake: FakeAnthropic,
    sdk: anthropic.Anthropic,
    status: int,
    error: type[anthropic.APIStatusError],
    kind: str,
) -> None:
    fake.script(ScriptedReply(status=status))

    with pytest.raises(error) as raised:
        sdk.messages.create(model="claude-x", max_tokens=50, messages=HI)

    assert (raised.value.status_code, raised.value.type) == (status, kind)
    assert raised.value.request_id and raised.value.request_id.startswith("req_")


def test_it_sends_an_error_event_mid_stream(fake: FakeAnthropic, sdk: anthropic.Anthropic) -> None:
    fake.script(ScriptedReply(text="One two three.", error_event_after=1))

    stream = sdk.messages.create(model="claude-x", max_tokens=50, messages=HI, stream=True)
    with pytest.raises(anthropic.APIStatusError) as raised:
        list(stream)

    assert raised.value.type == "overloaded_error"


def test_it_refuses_a_wrong_key(fake: FakeAnthropic) -> None:
    with (
        anthropic.Anthropic(api_key="sk-wrong", base_url=fake.base_url, max_retries=0) as wrong,
        pytest.raises(anthropic.AuthenticationError),
    ):
        wrong.messages.create(model="claude-x", max_tokens=50, messages=HI)
    assert fake.requests == []


def test_it_refuses_sampling_parameters_at_the_sdks_api_version(
    fake: FakeAnthropic, sdk: anthropic.Anthropic
) -> None:
    with pytest.raises(anthropic.BadRequestError, match="temperature: Extra inputs"):
        sdk.messages.create(
            model="claude-x", max_tokens=50, messages=HI, extra_body={"temperature": 1.0}
        )


def test_it_accepts_x_api_key_and_requires_the_version_header(fake: FakeAnthropic) -> None:
    # The old API version still took a temperature.
    body = {"model": "claude-x", "max_tokens": 50, "messages": HI, "temperature": 0.5}
    url = f"{fake.base_url}/v1/messages"
    versioned = {"x-api-key": fake.api_key, "anthropic-version": "2023-06-01"}

    assert httpx.post(url, json=body, headers=versioned).status_code == 200
    unversioned = httpx.post(url, json=body, headers={"x-api-key": fake.api_key})
    assert unversioned.status_code == 400
    assert unversioned.json()["error"]["message"] == "anthropic-version: header is required"


@pytest.mark.parametrize(
    ("messages", "problem"),
    [
        ([{"role": "system", "content": "x"}, *HI], "role"),
        ([{"role": "user", "content": " "}], "non-whitespace text"),
        (
            [
                *HI,
                {
                    "role": "assistant",
                    "content": [{"type": "tool_use", "id": "t1", "name": "f", "input": {}}],
                },
                {"role": "user", "content": "no result"},
            ],
            "without `tool_result`",
        ),
        (
            [{"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t9"}]}],
            "unexpected `tool_use_id`",
        ),
    ],
    ids=["system-role", "blank-text", "unanswered-tool-use", "orphan-tool-result"],
)
def test_it_refuses_what_the_real_api_refuses(
    fake: FakeAnthropic, sdk: anthropic.Anthropic, messages: list[dict[str, object]], problem: str
) -> None:
    with pytest.raises(anthropic.BadRequestError, match=problem):
        # Deliberately malformed messages, which the SDK's types rightly refuse.
        sdk.messages.create(model="claude-x", max_tokens=50, messages=messages)  # type: ignore[arg-type]
