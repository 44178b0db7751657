"""A worker killed in the middle of a generation job, on Redis and on RabbitMQ: the job is
handed to the next worker once its lease runs out and is done exactly once. (Redis hands the
killed worker's message on after its visibility timeout, RabbitMQ at once, and the job then
waits for the lease.)"""

from __future__ import annotations

import signal
import socket
import threading
import uuid
from datetime import date
from pathlib import Path

import pytest

from avatarsite.celery import app
from characters.models import DailySchedule, GenerationClaim, GenerationJob
from characters.tasks import run_generation_job
from tests.characters.conftest import answers, make_character
from tests.conftest import require_service, server_env
from tests.fakes.life_replies import life_reply
from tests.fakes.openai_server import FakeOpenAI, ScriptedReply
from tests.processes import RedisServer, start_celery_worker, stop_process
from tests.waiting import wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.live]

DAY = date(2026, 1, 16)


RABBITMQ_URL = "amqp://guest:guest@127.0.0.1:5672//"


def rabbitmq_runs() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 5672), timeout=1):
            return True
    except OSError:
        return False


@pytest.fixture(params=["redis", "rabbitmq"])
def broker_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A Redis of the test's own, or the machine's RabbitMQ (the test uses a queue of its
    own there)."""
    if request.param == "rabbitmq":
        require_service("RabbitMQ on 127.0.0.1:5672", rabbitmq_runs())
        return RABBITMQ_URL
    server: RedisServer = request.getfixturevalue("redis_server")
    return server.url


def test_a_killed_workers_job_is_finished_once_by_the_next_worker(
    fake_llm: FakeOpenAI, broker_url: str, tmp_path: Path
) -> None:
    character = make_character(fake_llm, "hana")
    held = threading.Event()
    fake_llm.script(ScriptedReply(chunks=[life_reply("lost")], gate=held))
    fake_llm.script(answers(life_reply("kept"), repeat=10))
    queue = f"killed-{uuid.uuid4().hex}"
    env = server_env(
        fake_llm,
        CELERY_BROKER_URL=broker_url,
        CELERY_QUEUE=queue,
        # The lease (and with it the broker's visibility timeout) short enough for a test.
        LIFE_LEASE_SECONDS="3",
        LIFE_BUSY_RETRY_SECONDS="1",
        CELERY_UNACKED_RESTORE_SECONDS="1",
        LLM_TIMEOUT_SECONDS="120",  # the held answer must not time out before the kill
        LOG_LEVEL="INFO",
    )
    first = start_celery_worker(env, tmp_path / "first.log", concurrency=1, pool="solo")
    job = GenerationJob.objects.create(
        character=character, kind=GenerationJob.Kind.SCHEDULE, date_from=DAY, date_to=DAY
    )
    try:
        with app.connection_for_write(broker_url) as connection:
            run_generation_job.apply_async((job.pk,), connection=connection, queue=queue)
        wait_until(lambda: len(fake_llm.requests) == 1, "the first worker to ask the LLM")
        first.send_signal(signal.SIGKILL)  # mid-job: the answer is still held
        first.wait()
    finally:
        stop_process(first)
        held.set()
    assert GenerationJob.objects.get(pk=job.pk).status == GenerationJob.Status.RUNNING

    second = start_celery_worker(env, tmp_path / "second.log", concurrency=1, pool="solo")
    try:
        wait_until(
            lambda: GenerationJob.objects.get(pk=job.pk).status not in GenerationJob.UNFINISHED,
            "the next worker to finish the job",
        )
    finally:
        stop_process(second)
        with app.connection_for_write(broker_url) as connection:
            connection.default_channel.queue_delete(queue)  # a shared RabbitMQ keeps queues

    job.refresh_from_db()
    assert job.status == GenerationJob.Status.SUCCEEDED, job.error
    [schedule] = DailySchedule.objects.all()
    assert schedule.schedule_date == DAY
    assert "kept" in schedule.content and "lost" not in schedule.content
    assert not GenerationClaim.objects.exists()
    assert "run_generation_job" in (tmp_path / "second.log").read_text()
