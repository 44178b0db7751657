"""Per-session concurrency: interrupting, queueing and cancelling turns, across processes too."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from django.conf import settings

from characters.models import Character
from conversations.models import Context, Message, TurnRecord
from tests.conftest import AsgiServer, require_service, server_env
from tests.fakes.openai_server import FakeOpenAI, ScriptedReply
from tests.processes import start_daphne, stop_process
from tests.sse import SSEResult, post_sse

pytestmark = pytest.mark.django_db(transaction=True)

SLOW = ScriptedReply(chunks=["One. ", "Two. ", "Three. ", "Four."], chunk_delay=1.0)


def ask(session: str = "s1", text: str = "Hello", **fields: object) -> dict[str, object]:
    return {"type": "start", "session_id": session, "user_id": "u1", "text": text, **fields}


class Background:
    """A /chat request streaming in a thread; `first_chunk` is set when its first chunk came."""

    def __init__(self, url: str, key: str, body: dict[str, object]) -> None:
        self.answering = threading.Event()  # the server accepted it and started its stream
        self.first_chunk = threading.Event()
        self.events: list[dict] = []
        self._thread = threading.Thread(target=self._run, args=(url, key, body))
        self._thread.start()

    def _run(self, url: str, key: str, body: dict[str, object]) -> None:
        headers = {"Authorization": f"Bearer {key}"}
        with (
            httpx.Client(timeout=30) as client,
            client.stream("POST", f"{url}/chat", json=body, headers=headers) as response,
        ):
            self.answering.set()
            for line in response.iter_lines():
                if line.startswith("data:"):
                    event = json.loads(line[5:])
                    self.events.append(event)
                    if event["type"] == "chunk":
                        self.first_chunk.set()

    def result(self) -> list[dict]:
        self._thread.join(timeout=30)
        assert not self._thread.is_alive()
        return self.events


def wait_for_first_chunk(request: Background) -> None:
    assert request.first_chunk.wait(timeout=20), "the first request never streamed a chunk"


def test_it_interrupts_the_running_turn_of_the_same_session(
    asgi_server: AsgiServer, character: Character, api_key: str, fake_llm: FakeOpenAI
) -> None:
    fake_llm.script(SLOW, ScriptedReply(text="Newer answer."))
    first = Background(asgi_server.url, api_key, ask(text="Tell me a long story"))
    wait_for_first_chunk(first)

    second = post_sse(f"{asgi_server.url}/chat", ask(text="Stop, please"), key=api_key)
    interrupted = first.result()

    assert second.events[-1]["text"] == "Newer answer."
    last = interrupted[-1]
    assert (last["type"], last["metadata"]) == ("final", {"interrupted": True})
    assert last["text"] == "One. "  # cut at once: the slow stream had three more sentences
    statuses = sorted(TurnRecord.objects.values_list("status", flat=True))
    assert statuses == ["completed", "interrupted"]
    assert list(Message.objects.values_list("content", flat=True)) == [
        "Stop, please",
        "Newer answer.",
    ]


def test_it_leaves_other_sessions_alone(
    asgi_server: AsgiServer, character: Character, api_key: str, fake_llm: FakeOpenAI
) -> None:
    fake_llm.script(
        ScriptedReply(chunks=["One. ", "Two."], chunk_delay=0.5), ScriptedReply(text="Other.")
    )
    first = Background(asgi_server.url, api_key, ask(session="a"))
    wait_for_first_chunk(first)

    post_sse(f"{asgi_server.url}/chat", ask(session="b"), key=api_key)

    assert first.result()[-1]["text"] == "One. Two."
    assert set(TurnRecord.objects.values_list("status", flat=True)) == {"completed"}


def test_queued_requests_wait_their_turn_and_see_its_history(
    asgi_server: AsgiServer, character: Character, api_key: str, fake_llm: FakeOpenAI
) -> None:
    character.use_turn_queue = True
    character.save()
    opening = post_sse(f"{asgi_server.url}/chat", ask(text="Hi"), key=api_key)
    context_id = opening.events[0]["context_id"]
    fake_llm.script(ScriptedReply(chunks=["One. ", "Two."], chunk_delay=0.5))
    first = Background(asgi_server.url, api_key, ask(text="First", context_id=context_id))
    wait_for_first_chunk(first)

    queued = post_sse(
        f"{asgi_server.url}/chat",
        ask(text="Second", context_id=context_id, wait_in_queue=True),
        key=api_key,
    )

    assert first.result()[-1]["text"] == "One. Two."
    assert queued.events[-1]["text"] == "You said: Second. I have seen 3 user messages."
    assert Context.objects.get().message_count == 6


def test_an_interrupting_request_cancels_the_queued_ones(
    asgi_server: AsgiServer, character: Character, api_key: str, fake_llm: FakeOpenAI
) -> None:
    character.use_turn_queue = True
    character.save()
    fake_llm.script(SLOW)
    running = Background(asgi_server.url, api_key, ask(text="First"))
    wait_for_first_chunk(running)
    queued = Background(asgi_server.url, api_key, ask(text="Second", wait_in_queue=True))
    assert queued.answering.wait(timeout=20)
    # Its stream has begun; let the server file it behind the running turn.
    threading.Event().wait(0.3)

    latest = post_sse(f"{asgi_server.url}/chat", ask(text="Third"), key=api_key)

    assert latest.events[-1]["type"] == "final"
    assert running.result()[-1]["metadata"] == {"interrupted": True}
    assert [e["type"] for e in queued.result()] == ["cancelled"]
    assert [m["messages"][-1]["content"] for m in fake_llm.requests] == ["First", "Third"]


@pytest.fixture
def second_server(fake_openai: FakeOpenAI, tmp_path: Path) -> Iterator[str]:
    require_service("Redis (REDIS_URL), to share a channel layer", bool(settings.REDIS_URL))
    process, url = start_daphne(server_env(fake_openai), tmp_path / "second.log")
    try:
        yield url
    finally:
        stop_process(process)


def test_it_interrupts_a_turn_running_in_another_server_process(
    asgi_server: AsgiServer,
    second_server: str,
    character: Character,
    api_key: str,
    fake_llm: FakeOpenAI,
) -> None:
    fake_llm.script(SLOW, ScriptedReply(text="From the other process."))
    first = Background(asgi_server.url, api_key, ask(text="Long story"))
    wait_for_first_chunk(first)

    second: SSEResult = post_sse(f"{second_server}/chat", ask(text="Stop"), key=api_key)

    assert second.events[-1]["text"] == "From the other process."
    assert first.result()[-1]["metadata"] == {"interrupted": True}
    assert TurnRecord.objects.filter(status="interrupted").count() == 1
