"""The beat entries that migrations create, for the tests that look at them."""

from __future__ import annotations

import importlib
from typing import Any, cast

from django.apps import apps
from django.db import connection, migrations


def run_data_steps_again(migration: str) -> None:
    """Run the data steps (RunPython) of `migration` ("app.migrations.0001_name") again.

    A transactional test's flush empties every table, so rows a migration created are gone for
    the tests after it; the steps keep what exists, so running them again is harmless."""
    module = importlib.import_module(migration)
    with connection.schema_editor() as editor:
        for operation in module.Migration.operations:
            if isinstance(operation, migrations.RunPython):
                operation.code(cast(Any, apps), editor)
