"""PostgreSQL as the test run uses it: the project's backend, with a cheaper flush.

Every `django_db(transaction=True)` test ends in a flush of the whole database. Django's
flush on PostgreSQL is one TRUNCATE of every table (some 55), which gives each table a new
file and costs seconds per test, and afterwards post_migrate rebuilds every content type and
permission it has just removed. The test tables hold a handful of rows, so deleting them costs
milliseconds; the content types and permissions, which only migrations change, are kept, so
post_migrate finds them all in place. Foreign keys are deferred on PostgreSQL, so the order of
the deletions does not matter within the flush's transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.db.backends.postgresql import base, operations

# What migrations create and no test changes: kept across flushes.
KEPT_TABLES = frozenset({"django_content_type", "auth_permission"})


class DatabaseOperations(operations.DatabaseOperations):
    def sql_flush(
        self,
        style: Any,
        tables: Sequence[str],
        *,
        reset_sequences: bool = False,
        allow_cascade: bool = False,
    ) -> list[str]:
        if reset_sequences:  # only a TRUNCATE can restart the sequences with the rows
            return super().sql_flush(
                style, tables, reset_sequences=reset_sequences, allow_cascade=allow_cascade
            )
        return [
            f"{style.SQL_KEYWORD('DELETE')} {style.SQL_KEYWORD('FROM')} "
            f"{style.SQL_FIELD(self.quote_name(table))};"
            for table in tables
            if table not in KEPT_TABLES
        ]


class DatabaseWrapper(base.DatabaseWrapper):
    ops_class = DatabaseOperations
