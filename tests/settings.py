"""The test run's settings: the project's own, isolated from the machine it runs on.

- A developer's `.env` is not read: tests see the environment they set up, nothing else.
- Celery tasks go to a queue of this run's own, so a `make run` worker on the same broker
  (or another test run) neither takes this run's tasks nor hands it theirs.

Both travel as environment variables, so the daphne servers and Celery workers that tests
start (they inherit this environment and these settings) agree with the test process.
"""

import atexit
import os
import shutil
import sys
import tempfile
import uuid

os.environ["DJANGO_ENV_FILE"] = ""
# The pytest process names the run's queue; the processes it starts inherit that name (or the
# one a benchmark gives its own server and worker).
if "pytest" in sys.modules or "CELERY_QUEUE" not in os.environ:
    os.environ["CELERY_QUEUE"] = f"tests-{uuid.uuid4().hex}"
    # Likewise the cache's keys (per-session settings), when the cache is a shared Redis.
    os.environ["CACHE_PREFIX"] = f"tests-{uuid.uuid4().hex}"

# Recorded audio goes to a directory of the run's own, which the servers it starts share.
if "pytest" in sys.modules or "DJANGO_MEDIA_ROOT" not in os.environ:
    os.environ["DJANGO_MEDIA_ROOT"] = tempfile.mkdtemp(prefix="avatarsite-test-media-")
    atexit.register(shutil.rmtree, os.environ["DJANGO_MEDIA_ROOT"], ignore_errors=True)

from avatarsite.settings import *  # noqa: F403

# Shards of the fuzz campaign run side by side (tests/fuzz/report.py), each on a test database
# of its own.
if _fuzz_shard := os.environ.get("FUZZ_SHARD", "").split("/")[0]:
    _database = DATABASES["default"]  # noqa: F405
    if _database["ENGINE"] == "django.db.backends.sqlite3":
        _database["TEST"] = {"NAME": str(VAR_DIR / f"test-fuzz{_fuzz_shard}.sqlite3")}  # noqa: F405
    else:
        _database["TEST"] = {"NAME": f"test_{_database['NAME']}_fuzz{_fuzz_shard}"}
