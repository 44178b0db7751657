"""Shared fixtures: the fake LLM, a real daphne server in its own process, and data.

The server runs as a separate process on 127.0.0.1 against the test database, exactly as
`make run` would run it, so these tests cross a real socket, a real ASGI server and a real
OpenAI SDK talking to a fake OpenAI server.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
import types
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

import pytest
from asgiref.sync import SyncToAsync
from celery.contrib.testing.worker import start_worker
from django.conf import settings
from django.core.cache import cache
from django.core.cache.backends.locmem import LocMemCache
from django.db import connections
from pytest_django.fixtures import Settings

from avatarsite.celery import app as celery_app
from characters.models import Character
from conversations.models import ApiKey
from conversations.pipeline.shaping import _validators
from tests.fakes.anthropic_server import FakeAnthropic
from tests.fakes.dify_server import FakeDify
from tests.fakes.line_server import FakeLine
from tests.fakes.openai_server import FakeOpenAI, ScriptedFake
from tests.fakes.voicevox_server import FakeVoicevox
from tests.inprocess import InProcessApp
from tests.processes import RedisServer, start_daphne, stop_process

IN_CI = os.environ.get("CI") == "1"

# aiavatar (AIAvatarKit's clients, which tests run against us) imports torch at module level for
# its Silero VAD only; those tests give its clients a volume-based VAD or none, so a bare module
# stands in when torch is absent (its real dependency would pull torch and CUDA in). Set once,
# here, before any test module imports aiavatar.
if importlib.util.find_spec("torch") is None:
    sys.modules["torch"] = types.ModuleType("torch")
LLM_KEY_VARIABLE = "FAKE_OPENAI_API_KEY"
ANTHROPIC_KEY_VARIABLE = "FAKE_ANTHROPIC_API_KEY"
DIFY_KEY_VARIABLE = "FAKE_DIFY_API_KEY"
# The test deployment's platform variables that tenants may name (PROVIDER_ENV_ALLOWLIST): the
# fakes' keys. Everything else in the environment stays out of reach, as in production.
PLATFORM_KEY_VARIABLES = [
    *settings.PROVIDER_ENV_ALLOWLIST,
    LLM_KEY_VARIABLE,
    ANTHROPIC_KEY_VARIABLE,
    DIFY_KEY_VARIABLE,
    "FAKE_MCP_AUTH",
    "AVATARSITE_TEST_KEY",
    "LINE_TEST_CHANNEL_SECRET",
    "LINE_TEST_ACCESS_TOKEN",
]
# The app as the tests run it, in a live server (SERVER_ENV) or in process (the `app` fixture).
# Short enough for quick timeout and ping tests, long enough that the slow fake replies
# (chunks a second apart) never hit the timeout on a loaded machine.
SERVER_SETTINGS: dict[str, Any] = {
    "SSE_PING_INTERVAL_SECONDS": 0.3,
    "LLM_TIMEOUT_SECONDS": 3.0,
    "LLM_MAX_RETRIES": 1,
    "REQUEST_VALIDATORS": ["tests.conversations.plugins_for_tests.refuse_secrets"],
    # Each speech test sees its provider called; the cache has its own tests.
    "TTS_CACHE_DIR": "",
    "STT_RETRY_BACKOFF_SECONDS": 0.01,
    "MCP_TIMEOUT_SECONDS": 10.0,
    "PROVIDER_ENV_ALLOWLIST": PLATFORM_KEY_VARIABLES,
}
SERVER_ENV = {
    **{
        name: ",".join(value) if isinstance(value, list) else str(value)
        for name, value in SERVER_SETTINGS.items()
    },
    "LOG_LEVEL": "WARNING",
    "TOOL_MODULES": "tests.conversations.plugins_for_tests",
    # What the MCP tests' HTTP server gets as its Authorization header (by variable name).
    "FAKE_MCP_AUTH": "Bearer mcp-test-token",
}


def give_back_asgiref_thread_connections() -> None:
    """Close the database connections of asgiref's shared thread (back to the pool).

    An async test's ORM work (`acreate`, `sync_to_async`) runs on that one thread, never on
    the test's own, so its connection outlives the test; the psycopg pool cannot take back a
    connection another thread holds, and PostgreSQL then refuses to drop the test database at
    the end of the run ("being accessed by other users"). (Such tests use
    `django_db(transaction=True)`: the test's transaction lives on its own thread's connection,
    which that thread cannot see.)"""
    # Bounded: a call some test left hanging on that thread must not hang the whole run.
    SyncToAsync.single_thread_executor.submit(connections.close_all).result(timeout=60)


@pytest.fixture(autouse=True)
def _asgiref_thread_connections_given_back() -> Iterator[None]:
    yield
    give_back_asgiref_thread_connections()


@pytest.fixture(autouse=True)
def fresh_session_data() -> None:
    """Per-session settings in this process's memory start empty: SQLite test databases give
    the next test's end users the same ids. (A Redis cache has this run's own key prefix, and
    PostgreSQL never reuses ids.)"""
    if isinstance(cache, LocMemCache):
        cache.clear()


@pytest.fixture(autouse=True, scope="session")
def platform_key_variables() -> None:
    """This process's allow-list, as SERVER_ENV gives it to the servers."""
    settings.PROVIDER_ENV_ALLOWLIST = PLATFORM_KEY_VARIABLES


# A test that uses one of these runs a real server or worker: it belongs to the `live` layer
# (`pytest -m "not live"` runs the in-process layers alone).
LIVE_FIXTURES = frozenset({"asgi_server", "line_stack", "worker"})


# The longest tests, each minutes on a loaded machine: in a parallel run collected first, so
# the workers start on them and the short tests fill in around them, instead of one worker
# running them alone at the end (docs/testing.md#parallel-runs). Not in one process: there the
# fuzzers' LINE stack would be up before the LINE tests start theirs, and two Celery workers
# on the run's one queue take each other's events.
LONGEST_FIRST = ("tests/test_benchmarks.py::", "tests/fuzz/")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if LIVE_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.live)
    if config.getoption("numprocesses", default=None):
        items.sort(key=lambda item: not item.nodeid.startswith(LONGEST_FIRST))


def require_service(name: str, available: bool) -> None:
    """Skip outside CI when a service is not configured; in CI a missing service fails."""
    if available:
        return
    if IN_CI:
        pytest.fail(f"{name} is required in CI but is not configured")
    pytest.skip(f"{name} is not configured")


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A Redis of the test's own, never the shared one: tests stop it, or fill its queues."""
    require_service("redis-server", shutil.which("redis-server") is not None)
    server = RedisServer(tmp_path)
    try:
        yield server
    finally:
        server.stop()


Fake = TypeVar("Fake", bound=ScriptedFake | FakeVoicevox | FakeLine)


def fresh(fake: Fake) -> Iterator[Fake]:
    """A session's shared fake, cleared of scripts and records before and after a test."""
    fake.reset()
    yield fake
    fake.reset()


@pytest.fixture(scope="session")
def fake_openai() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as fake:
        yield fake


@pytest.fixture
def fake_llm(fake_openai: FakeOpenAI) -> Iterator[FakeOpenAI]:
    yield from fresh(fake_openai)


@pytest.fixture(scope="session")
def fake_voicevox_engine() -> Iterator[FakeVoicevox]:
    with FakeVoicevox() as engine:
        yield engine


@pytest.fixture
def fake_voicevox(fake_voicevox_engine: FakeVoicevox) -> Iterator[FakeVoicevox]:
    yield from fresh(fake_voicevox_engine)


@pytest.fixture(scope="session")
def fake_anthropic_server() -> Iterator[FakeAnthropic]:
    with FakeAnthropic() as fake:
        yield fake


@pytest.fixture
def fake_anthropic(fake_anthropic_server: FakeAnthropic) -> Iterator[FakeAnthropic]:
    yield from fresh(fake_anthropic_server)


@pytest.fixture(scope="session")
def fake_dify_server() -> Iterator[FakeDify]:
    with FakeDify() as fake:
        yield fake


@pytest.fixture
def fake_dify(fake_dify_server: FakeDify) -> Iterator[FakeDify]:
    yield from fresh(fake_dify_server)


@dataclass(frozen=True)
class AsgiServer:
    url: str
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def _test_database_url() -> str:
    db = settings.DATABASES["default"]
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{db['NAME']}"
    credentials = quote(db["USER"]) + (f":{quote(db['PASSWORD'])}" if db["PASSWORD"] else "")
    return f"postgres://{credentials}@{db['HOST']}:{db['PORT'] or 5432}/{db['NAME']}"


def server_env(fake: FakeOpenAI, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        **SERVER_ENV,
        "DATABASE_URL": _test_database_url(),
        "DJANGO_SECRET_KEY": settings.SECRET_KEY,
        LLM_KEY_VARIABLE: fake.api_key,
        ANTHROPIC_KEY_VARIABLE: FakeAnthropic.api_key,
        DIFY_KEY_VARIABLE: FakeDify.api_key,
        **extra,
    }


@pytest.fixture(scope="session")
def asgi_server(
    django_db_setup: None, fake_openai: FakeOpenAI, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[AsgiServer]:
    log_path = tmp_path_factory.mktemp("daphne") / "daphne.log"
    process, url = start_daphne(server_env(fake_openai), log_path)
    try:
        yield AsgiServer(url=url, log_path=log_path)
    finally:
        stop_process(process)


@pytest.fixture
def server_settings(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, fake_openai: FakeOpenAI
) -> Iterator[Settings]:
    """This process set up as the live server is (without TOOL_MODULES: tests that need the
    test tools use `asgi_server`), for the app run in process."""
    for name, value in SERVER_SETTINGS.items():
        setattr(settings, name, value)
    for variable, value in server_env(fake_openai).items():
        if variable.startswith("FAKE_"):
            monkeypatch.setenv(variable, value)
    _validators.cache_clear()  # they are read once per process
    yield settings
    _validators.cache_clear()


@pytest.fixture
def app(server_settings: Settings) -> InProcessApp:
    """The app in this process (Django's async test client), set up as the live server is."""
    # One process needs no shared layer. With Redis (and PostgreSQL), closing a request's event
    # loop (async_to_sync runs one per request) hung cancelling its leftover tasks; the Redis
    # layer has its own tests, across processes, in the live layer.
    server_settings.CHANNEL_LAYERS = {
        "default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}
    }
    return InProcessApp()


@pytest.fixture
def character(fake_openai: FakeOpenAI) -> Character:
    """The default character, speaking through the fake OpenAI server."""
    return Character.objects.create(
        slug="mia",
        name="Mia",
        persona="You are Mia.",
        llm_model="gpt-4o-mini",
        llm_base_url=fake_openai.base_url,
        llm_api_key_env=LLM_KEY_VARIABLE,
        is_default=True,
    )


@pytest.fixture
def eager_celery() -> Iterator[None]:
    """Run enqueued tasks at once, in the test's thread (no broker, no worker)."""
    previous = celery_app.conf.task_always_eager
    celery_app.conf.task_always_eager = True
    try:
        yield
    finally:
        celery_app.conf.task_always_eager = previous


@pytest.fixture(scope="module")
def worker() -> Iterator[None]:
    """A real Celery worker in this process (threads), on the configured broker (Redis in
    CI) and this run's own queue."""
    if IN_CI:
        require_service("Redis broker", settings.CELERY_BROKER_URL.startswith("redis://"))
    celery_app.control.purge()  # messages left by an interrupted run would name other databases
    with start_worker(celery_app, pool="threads", concurrency=2, perform_ping_check=False):
        yield
    connections.close_all()


@pytest.fixture
def api_key() -> str:
    return ApiKey.issue("tests")[1]
