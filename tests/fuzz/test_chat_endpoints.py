"""The chat endpoints outside the OpenAPI schema, fed hostile bodies over a real daphne.

Hypothesis builds bodies from each endpoint's own fields with wrong types and junk nested in
them, plus bare JSON values and bytes that are not JSON. No answer may be a 5xx; a 4xx must be
JSON and must write nothing.
"""

from __future__ import annotations

import json

import httpx
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from characters.models import Character
from conversations.models import ChannelIdentity, Context, EndUser, Message, TurnRecord
from tests.conftest import AsgiServer
from tests.fakes.openai_server import FakeOpenAI

pytestmark = pytest.mark.django_db(transaction=True)

EXAMPLES_PER_ENDPOINT = 40
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

junk = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30),
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


def body_for(path: str) -> st.SearchStrategy[bytes]:
    fields = {name: nested.get(name, junk) | junk for name in FIELDS[path]}
    objects = st.fixed_dictionaries({}, optional=fields).map(lambda body: json.dumps(body).encode())
    values = junk.map(lambda value: json.dumps(value).encode())
    return (
        objects | values | st.binary(max_size=200) | st.just(b'{"text": "' + b"x" * 200_000 + b'"}')
    )


def rows() -> dict[str, int]:
    models = (EndUser, ChannelIdentity, Context, Message, TurnRecord)
    return {model.__name__: model.objects.count() for model in models}


@pytest.mark.parametrize("path", list(FIELDS))
def test_it_answers_hostile_bodies_without_a_server_error(
    path: str, asgi_server: AsgiServer, character: Character, api_key: str, fake_llm: FakeOpenAI
) -> None:
    headers = {"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"}

    @given(body=body_for(path), key=st.sampled_from([api_key] * 8 + ["none", "wrong"]))
    @settings(
        max_examples=EXAMPLES_PER_ENDPOINT,
        derandomize=True,
        deadline=None,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    def run(body: bytes, key: str) -> None:
        before = rows()
        with httpx.Client(timeout=20) as client:
            response = client.post(
                f"{asgi_server.url}{path}",
                content=body,
                headers={**headers, "Authorization": f"Bearer {key}" if key != "none" else ""},
            )
        assert response.status_code < 500, (body[:300], response.status_code, response.text[:300])
        if response.status_code >= 400:
            assert response.headers["content-type"].startswith("application/json"), body[:300]
            response.json()
            assert rows() == before, body[:300]

    run()
