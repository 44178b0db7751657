"""The sockets' database housekeeping: what Channels does before every message, done only
before the work that reaches the database (docs/benchmarks.md#where-the-time-goes).

Channels' housekeeping is Django's end-of-request rule: close every connection past its
CONN_MAX_AGE, which is 0 here, so it closes them all. For PostgreSQL that hands the connection
back to the pool, which is cheap. A SQLite connection is a file opened anew: a new connection,
the WAL pragma, and the schema read again by its first query, on the one thread every socket's
database work waits for. So a working SQLite connection is kept, and one that broke or was
left mid-transaction is replaced, as before.
"""

from __future__ import annotations

import sqlite3

from django.db import connections
from django.db.backends.base.base import BaseDatabaseWrapper


def refresh_connections() -> None:
    """Before a socket's database work, on the thread that runs it: replace connections that
    can no longer be used, keep a working SQLite one."""
    for connection in connections.all(initialized_only=True):
        if connection.vendor == "sqlite" and connection.connection is not None:
            if not _sqlite_usable(connection):
                connection.close()
        else:
            connection.close_if_unusable_or_obsolete()


def _sqlite_usable(connection: BaseDatabaseWrapper) -> bool:
    if connection.errors_occurred:
        return False
    try:
        # Any attribute read checks the handle: a closed one raises.
        connection.connection.total_changes  # noqa: B018
    except sqlite3.ProgrammingError:
        return False
    return connection.get_autocommit() == connection.settings_dict["AUTOCOMMIT"]
