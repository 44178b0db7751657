"""At least 200 hostile requests against a daphne on PostgreSQL whose database pool holds 5
connections, then normal turns: a request that fails, at the wire or mid-stream, must give its
connection back, and a stream that fails must end with its API's error event.

Before the text rule, each `/start` with a lone surrogate in `session_id` failed mid-stream
and kept one pooled connection; the sixth left every later request waiting for the pool. The
text rule now refuses such input at the wire, so the mid-stream failures are made by the
fake LLM (an error status, a stream cut off, one ending without its terminator, an empty one,
on each chat API) and by clients hanging up mid-answer.

Every case is sent POOL_SIZE + 1 times, so a path that kept one connection per request would
empty the pool, and the turns after them would wait out DATABASE_POOL_TIMEOUT_SECONDS and
fail. (A turn gives its connection back between its database trips, so turns at once are no
detector: 6 at once pass on a pool of 5.)
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from django.db import connection

from characters.models import Character
from conversations.models import Message, TurnRecord
from tests.conftest import require_service, server_env
from tests.fakes.openai_server import FakeOpenAI, ScriptedReply
from tests.processes import start_daphne, stop_process
from tests.sse import SSEResult, post_sse
from tests.waiting import wait_until

pytestmark = pytest.mark.django_db(transaction=True)

POOL_SIZE = 5
HOSTILE_REQUESTS = 200
BAD_TEXTS = ["\udfff", "\ud800x", "a\x00b", "\x00"]
# How the fake LLM fails a turn mid-stream; each is sent more times than the pool has room.
LLM_FAILURES = {
    "status 500": ScriptedReply(status=500),
    "cut off": ScriptedReply(text="Half an answer that", cut_after=2),
    "no terminator": ScriptedReply(text="An answer", ending="eof"),
    "empty": ScriptedReply(ending="empty"),
}
ROUNDS = POOL_SIZE + 1
LLM_ATTEMPTS = 2  # the tests' LLM_MAX_RETRIES is 1


@pytest.fixture
def small_pool_server(fake_llm: FakeOpenAI, tmp_path: Path) -> Iterator[str]:
    require_service("PostgreSQL", connection.vendor == "postgresql")
    env = server_env(
        fake_llm,
        DATABASE_POOL_MIN_SIZE="1",
        DATABASE_POOL_MAX_SIZE=str(POOL_SIZE),
        DATABASE_POOL_TIMEOUT_SECONDS="5",
    )
    process, url = start_daphne(env, tmp_path / "daphne.log")
    try:
        yield url
    finally:
        stop_process(process)


def hostile() -> list[tuple[str, str, bytes]]:
    """(method, path, body): every field of every chat endpoint with a bad text, too-long ids,
    and query strings with a NUL."""
    bodies: dict[str, dict[str, Any]] = {
        "/start": {"type": "start", "session_id": "s", "user_id": "u"},
        "/chat": {"type": "start", "session_id": "s", "user_id": "u", "text": "hi"},
        "/chat-messages": {"query": "hi", "user": "u", "inputs": {"k": "v"}},
        "/v1/chat/completions": {
            "model": "mia",
            "messages": [{"role": "user", "content": "hi"}],
            "user": "u",
            "stream": True,
        },
        "/tts": {"text": "hi"},
    }
    cases: list[tuple[str, str, bytes]] = []
    for path, body in bodies.items():
        for field, bad in itertools.product(body, BAD_TEXTS):
            if isinstance(body[field], str):
                cases.append(("POST", path, json.dumps({**body, field: bad}).encode()))
        for field in ("session_id", "user_id", "user"):
            if field in body:
                cases.append(("POST", path, json.dumps({**body, field: "x" * 300}).encode()))
    for query in ("user_id=%00", "user_id=a%00b"):
        cases.append(("GET", f"/ws/sessions?{query}", b""))
    cases.append(("GET", "/v1/models?x=%00", b""))
    return cases


def stream_lines(client: httpx.Client, path: str, body: dict[str, Any]) -> list[str]:
    """The `data:` payloads of a streamed answer, read to its end."""
    with client.stream("POST", path, json=body) as response:
        assert response.status_code == 200, response.read()[:300]
        return [line[5:].strip() for line in response.iter_lines() if line.startswith("data:")]


# Each chat API's streamed answer, and whether its last event is the API's error event.
STREAMS: dict[str, tuple[dict[str, Any], Callable[[dict[str, Any]], bool]]] = {
    "/chat": (
        {"type": "start", "session_id": "s", "user_id": "u", "text": "Hi"},
        lambda last: last.get("type") == "error",
    ),
    "/chat-messages": (
        {"query": "Hi", "user": "u", "inputs": {}, "response_mode": "streaming"},
        lambda last: last.get("event") == "error",
    ),
    "/v1/chat/completions": (
        {"model": "mia", "messages": [{"role": "user", "content": "Hi"}], "stream": True},
        lambda last: "error" in last,
    ),
}


def fail_mid_stream(client: httpx.Client, fake_llm: FakeOpenAI) -> int:
    """Each LLM failure on each chat API; every stream must end with the API's error event.
    Returns the requests sent."""
    sent = 0
    for name, reply in LLM_FAILURES.items():
        for path, (body, is_error) in STREAMS.items():
            fake_llm.reset()  # this failure for every attempt of this request, nothing after
            fake_llm.script(dataclasses.replace(reply, repeat=LLM_ATTEMPTS))
            with client.stream("POST", path, json=body) as response:
                assert response.status_code == 200, (name, path, response.read()[:300])
                data = [line[5:] for line in response.iter_lines() if line.startswith("data:")]
            assert data and is_error(json.loads(data[-1])), (name, path, data[-3:])
            sent += 1
    fake_llm.reset()
    return sent


def hang_up_mid_answer(url: str, api_key: str, fake_llm: FakeOpenAI, round_: int) -> None:
    """A client that reads the first chunk and goes away while the LLM is still writing."""
    resume = threading.Event()
    fake_llm.script(ScriptedReply(text="One. Two. Three.", pause_after=2, resume=resume))
    user = f"leaving-{round_}"
    body = {"type": "start", "session_id": user, "user_id": user, "text": "Hi"}
    headers = {"Authorization": f"Bearer {api_key}"}
    interrupted = TurnRecord.objects.filter(status=TurnRecord.Status.INTERRUPTED)
    before = interrupted.count()
    try:
        with (
            httpx.Client(base_url=url, headers=headers, timeout=30) as client,
            client.stream("POST", "/chat", json=body) as response,
        ):
            for line in response.iter_lines():
                if line.startswith("data:") and json.loads(line[5:])["type"] == "chunk":
                    break  # leave mid-answer
        wait_until(lambda: interrupted.count() == before + 1, "the server to see the client go")
    finally:
        resume.set()


def turns_at_once(url: str, api_key: str, fake_llm: FakeOpenAI, turns: int) -> list[SSEResult]:
    """`turns` normal turns at once: each held at the LLM until every one has reached it, so
    they all need the pool in the same moments."""
    held = threading.Event()
    asked = len(fake_llm.requests)
    fake_llm.script(ScriptedReply(text="Fine, thanks.", gate=held, repeat=turns))
    results: list[SSEResult] = []

    def turn(n: int) -> None:
        body = {"type": "start", "session_id": f"after-{n}", "user_id": f"u{n}", "text": "Hello"}
        results.append(post_sse(f"{url}/chat", body, key=api_key, timeout=60))

    threads = [threading.Thread(target=turn, args=(n,)) for n in range(turns)]
    for thread in threads:
        thread.start()
    try:
        wait_until(lambda: len(fake_llm.requests) == asked + turns, f"{turns} turns at the LLM")
    finally:
        held.set()
        for thread in threads:
            thread.join()
    return results


def test_hostile_requests_leave_the_pool_whole(
    small_pool_server: str, character: Character, api_key: str, fake_llm: FakeOpenAI
) -> None:
    headers = {"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"}
    statuses: list[int] = []
    mid_stream = 0
    with httpx.Client(base_url=small_pool_server, headers=headers, timeout=30) as client:
        for round_ in range(ROUNDS):
            mid_stream += fail_mid_stream(client, fake_llm)
            hang_up_mid_answer(small_pool_server, api_key, fake_llm, round_)
            mid_stream += 1
        for method, path, body in hostile() * ROUNDS:
            response = client.request(method, path, content=body)
            assert response.status_code < 500, (path, body[:200], response.text[:300])
            assert response.headers["content-type"].startswith("application/json"), path
            statuses.append(response.status_code)
        health = client.get("/healthz")

    results = turns_at_once(small_pool_server, api_key, fake_llm, POOL_SIZE)

    assert len(statuses) + mid_stream >= HOSTILE_REQUESTS and set(statuses) <= {400, 404, 422}
    assert health.json()["checks"]["database"] == "ok"
    assert [result.types[-1] for result in results] == ["final"] * POOL_SIZE
    assert Message.objects.count() == 2 * POOL_SIZE  # the normal turns only
