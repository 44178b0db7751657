"""A LINE turn runs on its worker thread's kept event loop (characters/thread_loops.py), so the
LLM client and its connection carry over from one task to the next instead of being built
again per task. In process: the tasks' own function called on this thread, as a Celery worker
thread calls it, against the fake LINE platform and the fake OpenAI server."""

from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async
from django.db import connection
from pytest_django.fixtures import Settings

from characters import thread_loops
from conversations.line.handling import process_events
from conversations.line.models import LineChannel, LineEvent
from tests.conversations.line.conftest import SECRET_VARIABLE, TOKEN_VARIABLE
from tests.fakes.line_server import ACCESS_TOKEN, CHANNEL_SECRET, FakeLine, text_event
from tests.fakes.openai_server import FakeOpenAI, ScriptedReply
from tests.inprocess import InProcessApp

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def line_in_process(
    app: InProcessApp,
    fake_line: FakeLine,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> FakeLine:
    settings.LINE_API_BASE_URL = settings.LINE_API_DATA_BASE_URL = fake_line.base_url
    monkeypatch.setenv(SECRET_VARIABLE, CHANNEL_SECRET)
    monkeypatch.setenv(TOKEN_VARIABLE, ACCESS_TOKEN)
    return fake_line


def test_line_tasks_on_one_worker_thread_reuse_one_llm_connection(
    line_in_process: FakeLine, line_channel: LineChannel, fake_llm: FakeOpenAI
) -> None:
    answers = ["One.", "Two.", "Three."]
    fake_llm.script(*(ScriptedReply(text=answer) for answer in answers))

    for number, text in enumerate(("Hi", "Again", "Once more")):
        process_events(line_channel.pk, [text_event(text, reply_token=f"rt{number}")])

    assert [reply.texts for reply in line_in_process.calls.replies()] == [[a] for a in answers]
    assert len(fake_llm.requests) == 3
    assert fake_llm.connections == 1


def test_a_line_turn_gets_a_fresh_database_connection_on_the_kept_loop(
    line_in_process: FakeLine, line_channel: LineChannel, fake_llm: FakeOpenAI
) -> None:
    """The turn's database work runs on asgiref's thread, which no task boundary cleans up: a
    connection lost there between tasks must not fail the next turn."""
    process_events(line_channel.pk, [text_event("Hi", reply_token="rt1")])

    def break_connection() -> None:
        connection.ensure_connection()
        assert connection.connection is not None
        connection.connection.close()

    thread_loops.run(sync_to_async(break_connection)())  # where the turn's ORM work runs
    process_events(line_channel.pk, [text_event("Again", reply_token="rt2")])

    statuses = list(LineEvent.objects.order_by("received_at").values_list("status", flat=True))
    assert statuses == [LineEvent.Status.DONE, LineEvent.Status.DONE]
