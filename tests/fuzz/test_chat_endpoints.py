"""The chat endpoints, fed hostile bodies with an API key, through the ASGI app in this
process (tests/fuzz/conftest.py InProcessClient); a few bodies each also cross a real daphne.

Hypothesis builds bodies from each endpoint's own fields with wrong types and junk nested in
them (lone surrogates and NUL included), plus bare JSON values and bytes that are not JSON. No
answer may be a 5xx or a hang; a 4xx must be JSON and must write nothing; a stream must end
with its API's terminal event. Every input is tried and counted (tests/fuzz/conftest.py).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from characters.models import Character
from conversations.models import ChannelIdentity, Context, EndUser, Message, TurnRecord
from tests.conftest import AsgiServer
from tests.fakes.openai_server import FakeOpenAI
from tests.fuzz.conftest import InProcessClient, examples
from tests.fuzz.report import Tally, only_in_shard, tally

pytestmark = pytest.mark.django_db(transaction=True)

EXAMPLES_PER_ENDPOINT = 40
# Over daphne, per endpoint, whatever the campaign's size.
LIVE_EXAMPLES_PER_ENDPOINT = 5
HANG_SECONDS = 20
FIELDS = {
    "/chat": [
        "type",
        "session_id",
        "user_id",
        "context_id",
        "text",
        "audio_data",
        "files",
        "system_prompt_params",
        "allow_merge",
        "wait_in_queue",
        "metadata",
    ],
    "/start": ["type", "session_id", "user_id", "context_id", "metadata"],
    "/chat-messages": ["query", "inputs", "user", "conversation_id", "response_mode", "files"],
    "/v1/chat/completions": [
        "model",
        "messages",
        "stream",
        "user",
        "temperature",
        "max_tokens",
        "stop",
        "seed",
    ],
    "/tts": ["text", "language", "style_info"],
}

# The events a stream of each endpoint may end with.
TERMINAL = {
    "/chat": {"final", "vision", "error", "cancelled", "canceled"},
    "/start": {"connected"},
    "/chat-messages": {"message_end", "error"},
    "/v1/chat/completions": {"[DONE]", "error"},
    "/tts": set(),
}

junk = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=30)
    # What no column stores, and ids longer than their columns.
    | st.sampled_from(["\udfff", "a\x00b", "\ud800\udc00\ud800", "x" * 300]),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
nested = {
    "metadata": st.fixed_dictionaries(
        {}, optional={"inline_llm_params": junk, "speech_speed": junk}
    ),
    "files": st.lists(st.dictionaries(st.sampled_from(["url", "type", "x"]), junk), max_size=3),
    "messages": st.lists(
        st.fixed_dictionaries(
            {"role": st.sampled_from(["user", "system", 1])},
            optional={
                "content": junk
                | st.lists(
                    st.fixed_dictionaries(
                        {"type": st.sampled_from(["text", "image_url"])},
                        optional={"text": junk, "image_url": junk},
                    )
                ),
            },
        ),
        max_size=3,
    ),
    "style_info": st.fixed_dictionaries({}, optional={"info": junk, "styled_text": junk}),
}


# A body each endpoint accepts: one field of it made hostile reaches past validation, into
# admission and the turn.
VALID: dict[str, dict[str, Any]] = {
    "/chat": {"type": "start", "session_id": "fz", "user_id": "fz", "text": "Hi"},
    "/start": {"type": "start", "session_id": "fz", "user_id": "fz"},
    "/chat-messages": {"query": "Hi", "user": "fz", "response_mode": "streaming"},
    "/v1/chat/completions": {
        "model": "mia",
        "messages": [{"role": "user", "content": "Hi"}],
        "stream": True,
    },
    "/tts": {"text": "Hi"},
}


def body_for(path: str) -> st.SearchStrategy[bytes]:
    fields = {name: nested.get(name, junk) | junk for name in FIELDS[path]}
    objects = st.fixed_dictionaries({}, optional=fields)
    one_bad_field = st.sampled_from(FIELDS[path]).flatmap(
        lambda name: fields[name].map(lambda value: {**VALID[path], name: value})
    )
    values = junk.map(lambda value: json.dumps(value).encode())
    return (
        (st.just(VALID[path]) | one_bad_field | objects).map(lambda b: json.dumps(b).encode())
        | values
        | st.binary(max_size=200)
        | st.just(b'{"text": "' + b"x" * 200_000 + b'"}')
    )


def rows() -> dict[str, int]:
    models = (EndUser, ChannelIdentity, Context, Message, TurnRecord)
    return {model.__name__: model.objects.count() for model in models}


def last_event(path: str, text: str) -> str | None:
    """The stream's last event, as the API names its kind; None for a stream with none."""
    # SSE lines end at CR, LF or CRLF only: str.splitlines would also cut a data line at a
    # U+2028 or U+0085 an id echoed in the event contains.
    lines = re.split(r"\r\n|\r|\n", text)
    events = [line[5:].strip() for line in lines if line.startswith("data:")]
    if not events:
        return None
    if events[-1] == "[DONE]":
        return "[DONE]"
    event = json.loads(events[-1])
    if path == "/v1/chat/completions":
        return "error" if "error" in event else "chunk"
    return str(event.get("event") or event.get("type"))


def problem(path: str, response: httpx.Response, before: dict[str, int]) -> str | None:
    """What is wrong with the answer to one hostile body, or None."""
    if response.status_code >= 500:
        return f"{response.status_code}: {response.text[:200]}"
    if response.status_code >= 400:
        if not response.headers["content-type"].startswith("application/json"):
            return f"{response.status_code} is not JSON"
        response.json()
        return "a refused request wrote rows" if rows() != before else None
    streamed = response.headers["content-type"].startswith("text/event-stream")
    if streamed and (end := last_event(path, response.text)) not in TERMINAL[path]:
        return f"the stream ended without a terminal event (last: {end})"
    return None


def fuzz_endpoint(
    path: str,
    api_key: str,
    inputs: int,
    post: Callable[[str, bytes, dict[str, str]], httpx.Response],
) -> Tally:
    """Send `inputs` hostile bodies to `path` with `post`, counting each answer."""
    # Apart from the schema-fuzzed operation of the same path, whose inputs carry no key.
    counted = tally(f"POST {path} (API key)")

    @given(body=body_for(path), key=st.sampled_from([api_key] * 8 + ["none", "wrong"]))
    @settings(
        max_examples=inputs,
        derandomize=True,
        deadline=None,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    def run(body: bytes, key: str) -> None:
        headers = {
            "Content-Type": "application/json",
            "Authorization": f"Bearer {key}" if key != "none" else "",
        }
        before = rows()
        try:
            response = post(path, body, headers)
        except (TimeoutError, httpx.TimeoutException):
            counted.record("hang", f"no answer within {HANG_SECONDS} s: {body[:300]!r}")
            return
        found = problem(path, response, before)
        counted.record(str(response.status_code), found and f"{found}: {body[:300]!r}")

    run()
    return counted


# This run's chat endpoints (tests/fuzz/report.py shards).
PATHS = [pytest.param(path, marks=only_in_shard(i)) for i, path in enumerate(FIELDS)]


@pytest.mark.parametrize("path", PATHS)
def test_it_answers_hostile_bodies_without_a_server_error(
    path: str,
    inprocess_client: InProcessClient,
    character: Character,
    api_key: str,
    fake_llm: FakeOpenAI,
) -> None:
    # The endpoint's share, less what goes over daphne.
    inputs = max(examples(EXAMPLES_PER_ENDPOINT) - LIVE_EXAMPLES_PER_ENDPOINT, 1)

    def post(path: str, body: bytes, headers: dict[str, str]) -> httpx.Response:
        return inprocess_client.post(path, body, headers, timeout=HANG_SECONDS)

    counted = fuzz_endpoint(path, api_key, inputs, post)
    assert counted.failures == 0, counted.examples


@pytest.mark.parametrize("path", PATHS)
def test_it_answers_hostile_bodies_over_daphne_too(
    path: str, asgi_server: AsgiServer, character: Character, api_key: str, fake_llm: FakeOpenAI
) -> None:

    def post(path: str, body: bytes, headers: dict[str, str]) -> httpx.Response:
        return httpx.post(
            f"{asgi_server.url}{path}", content=body, headers=headers, timeout=HANG_SECONDS
        )

    counted = fuzz_endpoint(path, api_key, LIVE_EXAMPLES_PER_ENDPOINT, post)
    assert counted.failures == 0, counted.examples


def test_the_stream_reader_keeps_data_lines_holding_unicode_line_separators() -> None:
    """A session id with U+2028 or U+0085 is echoed raw in the events' JSON; SSE still ends
    lines at CR/LF only (a campaign of 2,000 /chat bodies met one)."""
    stream = 'data: {"type": "chunk"}\n\ndata: {"type": "final", "session_id": "a\u2028b\x85c"}\n\n'
    assert last_event("/chat", stream) == "final"
