"""A test run is isolated from the machine: its own Celery queue, no `.env` of the
developer's, and a Redis database per pytest-xdist worker (tests/settings.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from django.conf import settings

from avatarsite.celery import app as celery_app
from characters.tasks import run_generation_job
from tests.processes import BASE_DIR
from tests.settings import worker_redis_url


def fresh_process_output(code: str, env: dict[str, str]) -> str:
    """What `code` prints in a fresh interpreter (like a server the tests start) with `env`."""
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=BASE_DIR,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


def settings_value(name: str, module: str, *, env: dict[str, str], preamble: str = "") -> str:
    """`name` from settings `module` as a fresh process sees it."""
    return fresh_process_output(f"{preamble}import {module} as s; print(s.{name})", env)


def test_the_developers_env_file_is_not_read(tmp_path: Path) -> None:
    dotenv = tmp_path / ".env"
    dotenv.write_text("LIFE_BACKFILL_DAYS=42\n")
    env = {"DJANGO_ENV_FILE": str(dotenv), "DJANGO_SECRET_KEY": settings.SECRET_KEY}
    assert "LIFE_BACKFILL_DAYS" not in os.environ

    # The project's settings read the file; the test run's settings do not.
    assert settings_value("LIFE_BACKFILL_DAYS", "avatarsite.settings", env=env) == "42"
    assert settings_value("LIFE_BACKFILL_DAYS", "tests.settings", env=env) == "7"
    assert os.environ["DJANGO_ENV_FILE"] == ""


def test_tasks_go_to_a_queue_of_this_runs_own() -> None:
    queue = settings.CELERY_TASK_DEFAULT_QUEUE
    routed = celery_app.amqp.router.route({}, run_generation_job.name)["queue"].name

    assert queue.startswith("tests-") and routed == queue
    # A server or worker this run starts shares the queue; another run gets another one.
    assert settings_value("CELERY_TASK_DEFAULT_QUEUE", "tests.settings", env={}) == queue
    other_run = settings_value(
        "CELERY_TASK_DEFAULT_QUEUE", "tests.settings", env={}, preamble="import pytest; "
    )
    assert other_run.startswith("tests-") and other_run != queue


def test_it_gives_each_xdist_worker_a_redis_database_of_its_own() -> None:
    assert worker_redis_url("redis://127.0.0.1:6379/5", 0) == "redis://127.0.0.1:6379/5"
    assert worker_redis_url("redis://127.0.0.1:6379/5", 2) == "redis://127.0.0.1:6379/7"
    assert worker_redis_url("redis://:pw@redis:6379", 1) == "redis://:pw@redis:6379/1"
    assert worker_redis_url("redis://127.0.0.1:6379/15", 1) == "redis://127.0.0.1:6379/0"

    # Worker gw2 moves the URLs once; the servers and workers it starts keep them as they are.
    configured = {
        "REDIS_URL": "redis://127.0.0.1:6379/3",
        "CELERY_BROKER_URL": "redis://127.0.0.1:6379/3",
        "RATE_LIMIT_STORAGE_URL": "memory://",
        "PYTEST_XDIST_WORKER": "gw2",
        "REDIS_MOVED_FOR": "",
    }
    worker = redis_environment(configured)
    assert worker == {
        **configured,
        "REDIS_URL": "redis://127.0.0.1:6379/5",
        "CELERY_BROKER_URL": "redis://127.0.0.1:6379/5",
        "REDIS_MOVED_FOR": "gw2",
    }
    assert redis_environment(worker) == worker  # a process the worker starts


def redis_environment(env: dict[str, str]) -> dict[str, str]:
    """The variables in `env` as a process that loads tests.settings with `env` ends up."""
    code = (
        "import json, os, tests.settings; "
        f"print(json.dumps({{name: os.environ[name] for name in {sorted(env)!r}}}))"
    )
    return json.loads(fresh_process_output(code, env))


def test_the_filesystem_broker_keeps_its_exchange_tables_under_var() -> None:
    """kombu's filesystem transport writes exchange tables to `control_folder`, by default
    `control/` in the working directory (how they once got committed)."""
    code = (
        "import django; django.setup(); from avatarsite.celery import app; "
        "print(app.connection_for_write().default_channel.control_folder)"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("CELERY_BROKER_URL", "REDIS_URL")}
    folder = subprocess.run(
        [sys.executable, "-c", code], cwd=BASE_DIR, env=env, capture_output=True, text=True
    )

    assert folder.returncode == 0, folder.stderr
    assert Path(folder.stdout.strip()).is_relative_to(settings.VAR_DIR)
