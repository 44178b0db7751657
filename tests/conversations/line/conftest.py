"""The LINE stack as production runs it: daphne takes the webhooks, a Celery worker (its own
process, prefork, on the configured broker) handles the events, and the real line-bot-sdk
talks to a fake LINE platform on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from characters.models import Character
from conversations.line.models import LineChannel, LineEvent
from tests.conftest import fresh, server_env
from tests.fakes.line_server import ACCESS_TOKEN, CHANNEL_SECRET, FakeLine
from tests.fakes.openai_server import FakeOpenAI
from tests.processes import start_celery_worker, start_daphne, stop_process
from tests.waiting import wait_until

SECRET_VARIABLE = "LINE_TEST_CHANNEL_SECRET"
TOKEN_VARIABLE = "LINE_TEST_ACCESS_TOKEN"


@dataclass(frozen=True)
class LineStack:
    url: str
    daphne_log: Path
    worker_log: Path

    def webhook_url(self, slug: str | None = "mia") -> str:
        return f"{self.url}/line/{slug}/webhook" if slug else f"{self.url}/webhook"

    def logs(self) -> str:
        return self.daphne_log.read_text(errors="replace") + self.worker_log.read_text(
            errors="replace"
        )


@pytest.fixture(scope="session")
def fake_line_server() -> Iterator[FakeLine]:
    with FakeLine() as fake:
        yield fake


@pytest.fixture
def fake_line(fake_line_server: FakeLine) -> Iterator[FakeLine]:
    yield from fresh(fake_line_server)


@pytest.fixture(scope="session")
def line_stack(
    django_db_setup: None,
    fake_openai: FakeOpenAI,
    fake_line_server: FakeLine,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[LineStack]:
    env = server_env(
        fake_openai,
        LINE_API_BASE_URL=fake_line_server.base_url,
        LINE_API_DATA_BASE_URL=fake_line_server.base_url,
        **{SECRET_VARIABLE: CHANNEL_SECRET, TOKEN_VARIABLE: ACCESS_TOKEN},
        LOG_LEVEL="INFO",
    )
    logs = tmp_path_factory.mktemp("line")
    # Both take seconds to import Django and the rest: start them side by side.
    with ThreadPoolExecutor(2) as pool:
        worker = pool.submit(start_celery_worker, env, logs / "worker.log")
        daphne = pool.submit(start_daphne, env, logs / "daphne.log")
    running = [] if worker.exception() else [worker.result()]
    running += [] if daphne.exception() else [daphne.result()[0]]
    try:
        worker.result()  # raises a start-up failure, after the finally stops the other
        yield LineStack(daphne.result()[1], logs / "daphne.log", logs / "worker.log")
    finally:
        for process in running:
            stop_process(process)


@pytest.fixture
def line_channel(character: Character) -> LineChannel:
    return LineChannel.objects.create(
        character=character,
        slug="mia",
        channel_secret_env=SECRET_VARIABLE,
        access_token_env=TOKEN_VARIABLE,
        is_default=True,
    )


def wait_for_events(count: int) -> list[LineEvent]:
    """Until `count` events exist and none is still being handled."""
    wait_until(
        lambda: (
            LineEvent.objects.count() >= count
            and not LineEvent.objects.filter(status=LineEvent.Status.PROCESSING).exists()
        ),
        f"{count} LINE event(s) to be handled",
    )
    return list(LineEvent.objects.order_by("received_at"))
