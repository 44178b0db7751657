"""A Celery worker killed while handling a LINE event: the event is failed once its lease runs
out and the user gets the character's apology by push, exactly once. A worker that is only slow
keeps its lease alive, and an answer that went out before its worker died gets no apology."""

from __future__ import annotations

import signal
import subprocess
import threading
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.utils import timezone
from pytest_django.fixtures import Settings

from characters.models import Character
from conversations.line.lost import fail_lost_events
from conversations.line.models import LineChannel, LineEvent
from conversations.line.tasks import process_events
from tests.conftest import server_env
from tests.conversations.line.conftest import SECRET_VARIABLE, TOKEN_VARIABLE
from tests.fakes.line_server import ACCESS_TOKEN, CHANNEL_SECRET, FakeLine, text_event, user_id
from tests.fakes.openai_server import FakeOpenAI, ScriptedReply
from tests.processes import start_celery_worker, stop_process
from tests.waiting import wait_until

pytestmark = pytest.mark.django_db(transaction=True)

LEASE_SECONDS = 2
APOLOGY = "Sorry, my thoughts got lost. Please say that again?"


@pytest.fixture
def sweeping(settings: Settings, fake_line: FakeLine, monkeypatch: pytest.MonkeyPatch) -> FakeLine:
    """This process runs the sweep, as the beat's worker would, against the fake LINE."""
    settings.LINE_API_BASE_URL = settings.LINE_API_DATA_BASE_URL = fake_line.base_url
    monkeypatch.setenv(TOKEN_VARIABLE, ACCESS_TOKEN)
    return fake_line


def start_worker(
    fake_llm: FakeOpenAI, fake_line: FakeLine, queue: str, log: Path
) -> subprocess.Popen[bytes]:
    """A worker with the solo pool (killing it kills the task it runs), on a queue of its own
    that no other worker of the run reads."""
    env = server_env(
        fake_llm,
        CELERY_QUEUE=queue,
        LINE_API_BASE_URL=fake_line.base_url,
        LINE_API_DATA_BASE_URL=fake_line.base_url,
        LINE_EVENT_LEASE_SECONDS=str(LEASE_SECONDS),
        LLM_TIMEOUT_SECONDS="120",  # a held answer must outlast several leases
        LOG_LEVEL="INFO",
        **{SECRET_VARIABLE: CHANNEL_SECRET, TOKEN_VARIABLE: ACCESS_TOKEN},
    )
    return start_celery_worker(env, log, concurrency=1, pool="solo")


def row_of(sent: dict[str, Any]) -> LineEvent | None:
    return LineEvent.objects.filter(webhook_event_id=sent["webhookEventId"]).first()


@pytest.mark.live
def test_a_killed_workers_event_is_failed_and_apologised_for_once(
    character: Character,
    line_channel: LineChannel,
    sweeping: FakeLine,
    fake_llm: FakeOpenAI,
    tmp_path: Path,
) -> None:
    character.apology = APOLOGY
    character.save(update_fields=["apology"])
    slow, lost = threading.Event(), threading.Event()
    fake_llm.script(ScriptedReply(text="Here I am.", gate=slow))
    fake_llm.script(ScriptedReply(text="Never said.", gate=lost))
    queue = f"lost-{uuid.uuid4().hex}"
    worker = start_worker(fake_llm, sweeping, queue, tmp_path / "worker.log")
    try:
        # A slow answer, several leases long: the worker's heartbeat keeps the event its own.
        first = text_event("Are you there?", user=user_id(1))
        process_events.apply_async((line_channel.pk, [first]), queue=queue)
        wait_until(lambda: len(fake_llm.requests) == 1, "the worker to ask the LLM")
        row = row_of(first)
        assert row is not None and row.leased_until is not None
        claimed_until = row.leased_until
        wait_until(
            lambda: (
                LineEvent.objects.get(pk=row.pk).leased_until > claimed_until
                and timezone.now() > claimed_until
            ),
            "the worker to renew its lease past the first one",
        )
        assert fail_lost_events() == 0
        slow.set()
        wait_until(
            lambda: LineEvent.objects.get(pk=row.pk).status == LineEvent.Status.DONE,
            "the slow answer",
        )

        # The next event's worker is killed while the LLM is still writing.
        second = text_event("And now?", user=user_id(2))
        process_events.apply_async((line_channel.pk, [second]), queue=queue)
        wait_until(lambda: len(fake_llm.requests) == 2, "the worker to ask the LLM again")
        worker.send_signal(signal.SIGKILL)
        worker.wait()
    finally:
        stop_process(worker)
        slow.set()
        lost.set()
    killed = row_of(second)
    assert killed is not None and killed.status == LineEvent.Status.PROCESSING
    assert killed.answer == LineEvent.Answer.OWED

    wait_until(lambda: fail_lost_events() == 1, "the killed worker's lease to run out")
    assert fail_lost_events() == 0  # a later sweep finds nothing more to do

    killed.refresh_from_db()
    assert killed.status == LineEvent.Status.FAILED
    assert "lost" in killed.outcome and "apology pushed" in killed.outcome
    delivered = sweeping.calls.delivered()
    assert [(c.path.rsplit("/", 1)[-1], c.texts) for c in delivered] == [
        ("reply", ["Here I am."]),
        ("push", [APOLOGY]),
    ]
    assert delivered[1].body is not None and delivered[1].body["to"] == user_id(2)
    assert LineEvent.objects.get(pk=row.pk).answer == LineEvent.Answer.SENT


def test_an_answer_sent_before_the_worker_died_gets_no_apology(
    line_channel: LineChannel, sweeping: FakeLine
) -> None:
    gone = timezone.now() - timedelta(seconds=1)
    answered, silent, unanswered = (
        LineEvent.objects.create(
            channel=line_channel,
            webhook_event_id=f"ev-{answer or 'none'}",
            event_type="message",
            source_type="user",
            source_id=user_id(3),
            status=LineEvent.Status.PROCESSING,
            answer=answer,
            leased_until=gone,
        )
        for answer in (LineEvent.Answer.SENT, LineEvent.Answer.NONE, LineEvent.Answer.OWED)
    )
    alive = LineEvent.objects.create(
        channel=line_channel,
        webhook_event_id="ev-alive",
        event_type="message",
        status=LineEvent.Status.PROCESSING,
        answer=LineEvent.Answer.OWED,
        leased_until=timezone.now() + timedelta(minutes=1),
    )

    assert fail_lost_events() == 3

    statuses = dict(LineEvent.objects.values_list("webhook_event_id", "status"))
    assert statuses == {
        answered.webhook_event_id: LineEvent.Status.DONE,
        silent.webhook_event_id: LineEvent.Status.FAILED,
        unanswered.webhook_event_id: LineEvent.Status.FAILED,
        alive.webhook_event_id: LineEvent.Status.PROCESSING,
    }
    [push] = sweeping.calls.pushes()
    assert push.body is not None and push.body["to"] == user_id(3)
    assert push.texts == [line_channel.character.apology]
