"""The test run's settings: the project's own, isolated from the machine it runs on.

- A developer's `.env` is not read: tests see the environment they set up, nothing else.
- Celery tasks go to a queue of this run's own, so a `make run` worker on the same broker
  (or another test run) neither takes this run's tasks nor hands it theirs.

- Under pytest-xdist each worker process takes a Redis database of its own (the configured one
  plus the worker's number), so channel groups, rate limits and Celery's Redis keys of one
  worker's test database never meet another worker's (their rows' ids are the same).

All travel as environment variables, so the daphne servers and Celery workers that tests
start (they inherit this environment and these settings) agree with the test process.
"""

import atexit
import os
import shutil
import sys
import tempfile
import uuid
from urllib.parse import urlsplit, urlunsplit

os.environ["DJANGO_ENV_FILE"] = ""
# The pytest process names the run's queue; the processes it starts inherit that name (or the
# one a benchmark gives its own server and worker).
if "pytest" in sys.modules or "CELERY_QUEUE" not in os.environ:
    os.environ["CELERY_QUEUE"] = f"tests-{uuid.uuid4().hex}"
    # Likewise the cache's keys (per-session settings), when the cache is a shared Redis.
    os.environ["CACHE_PREFIX"] = f"tests-{uuid.uuid4().hex}"

REDIS_DATABASES = 16  # Redis's default `databases`
REDIS_URL_VARIABLES = ("REDIS_URL", "CELERY_BROKER_URL", "RATE_LIMIT_STORAGE_URL")


def worker_redis_url(url: str, worker: int) -> str:
    """`url` moved `worker` databases on from the one it names (0 when it names none)."""
    parts = urlsplit(url)
    database = int(parts.path.strip("/") or 0)
    return urlunsplit(parts._replace(path=f"/{(database + worker) % REDIS_DATABASES}"))


# pytest-xdist names its workers gw0, gw1, ...; gw0 keeps the configured database. The worker
# moves the URLs once; the processes it starts inherit them moved (REDIS_MOVED_FOR says so).
xdist_worker = os.environ.get("PYTEST_XDIST_WORKER", "")
if xdist_worker.startswith("gw") and os.environ.get("REDIS_MOVED_FOR") != xdist_worker:
    for variable in REDIS_URL_VARIABLES:
        if os.environ.get(variable, "").startswith(("redis://", "rediss://")):
            os.environ[variable] = worker_redis_url(os.environ[variable], int(xdist_worker[2:]))
    os.environ["REDIS_MOVED_FOR"] = xdist_worker

# Recorded audio goes to a directory of the run's own, which the servers it starts share.
if "pytest" in sys.modules or "DJANGO_MEDIA_ROOT" not in os.environ:
    os.environ["DJANGO_MEDIA_ROOT"] = tempfile.mkdtemp(prefix="avatarsite-test-media-")
    atexit.register(shutil.rmtree, os.environ["DJANGO_MEDIA_ROOT"], ignore_errors=True)

# The variables above are set before the project's settings read them.
from avatarsite.settings import *  # noqa: E402, F403

# PostgreSQL with a flush between transactional tests that deletes rows instead of truncating
# every table (tests/postgresql/base.py).
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":  # noqa: F405
    DATABASES["default"]["ENGINE"] = "tests.postgresql"  # noqa: F405

# Shards of the fuzz campaign run side by side (tests/fuzz/report.py), each on a test database
# of its own.
if _fuzz_shard := os.environ.get("FUZZ_SHARD", "").split("/")[0]:
    _database = DATABASES["default"]  # noqa: F405
    if _database["ENGINE"] == "django.db.backends.sqlite3":
        _database["TEST"] = {"NAME": str(VAR_DIR / f"test-fuzz{_fuzz_shard}.sqlite3")}  # noqa: F405
    else:
        _database["TEST"] = {"NAME": f"test_{_database['NAME']}_fuzz{_fuzz_shard}"}
