"""The ChatMemory API fed hostile bodies and query strings, in process: every answer is JSON,
never a 5xx, and a refused request writes no memory."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

import pytest
from django.test import Client
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from characters.models import Character
from memory.models import MemoryItem
from tests.fuzz.test_chat_endpoints import junk

pytestmark = pytest.mark.django_db

EXAMPLES = 40
BODIES: dict[str, dict[str, Any]] = {
    "history": {
        "user_id": "u_mia",
        "session_id": "s",
        "messages": [{"role": "user", "content": "hi"}],
    },
    "search": {"user_id": ["u_mia", "mia"], "query": "hi", "since": "2026-08-01"},
    "diary": {"user_id": "mia", "diary_date": "2026-08-02", "content": "A day."},
    "knowledge": {"user_id": "u_mia", "knowledge": "Likes tea."},
}
QUERY_FIELDS = ["user_id", "session_id", "channel", "within_seconds", "since", "until", "limit"]


def body(path: str) -> st.SearchStrategy[bytes]:
    valid = BODIES[path]
    one_bad_field = st.sampled_from(sorted(valid)).flatmap(
        lambda name: junk.map(lambda value: {**valid, name: value})
    )
    return (st.just(valid) | one_bad_field).map(lambda b: json.dumps(b).encode()) | junk.map(
        lambda value: json.dumps(value).encode()
    )


@pytest.mark.parametrize("path", sorted(BODIES))
def test_hostile_bodies_get_json_4xx_and_write_nothing(
    path: str, character: Character, api_key: str
) -> None:
    client = Client(HTTP_AUTHORIZATION=f"Bearer {api_key}")

    @given(raw=body(path))
    @settings(
        max_examples=EXAMPLES,
        derandomize=True,
        deadline=None,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    def run(raw: bytes) -> None:
        before = MemoryItem.objects.count()
        response = client.post(f"/memory/{path}", raw, "application/json")
        assert response.status_code < 500, (raw, response.content)
        response.json()
        if response.status_code >= 400:
            assert MemoryItem.objects.count() == before, raw

    run()


@pytest.mark.parametrize("path", ["history", "history/sessions", "summary", "knowledge", "diary"])
def test_hostile_query_strings_get_json_answers(
    path: str, character: Character, api_key: str
) -> None:
    client = Client(HTTP_AUTHORIZATION=f"Bearer {api_key}")
    text = st.text(max_size=20) | st.sampled_from(["-1", "1e309", "2026-02-30", "x" * 300])

    @given(query=st.dictionaries(st.sampled_from(QUERY_FIELDS), text, max_size=4))
    @settings(
        max_examples=EXAMPLES,
        derandomize=True,
        deadline=None,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    def run(query: dict[str, str]) -> None:
        for method in (client.get, client.delete):
            response = method(f"/memory/{path}?{urlencode(query)}")
            assert response.status_code < 500, (query, response.content)
            response.json()

    run()
