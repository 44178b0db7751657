"""The production environment `.env.example` documents passes `manage.py check --deploy`
without a single warning (docs/operations.md#production)."""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys

from tests.processes import BASE_DIR

SETTING = re.compile(r"^# ([A-Z][A-Z0-9_]*)=(.*)$")


def production_environment() -> dict[str, str]:
    """The commented `NAME=value` lines of the example's production block."""
    lines = (BASE_DIR / ".env.example").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("# Production services"))
    block = lines[start + 1 : lines.index("", start)]
    return {m[1]: m[2] for line in block if (m := SETTING.match(line))}


def test_check_deploy_is_clean_with_the_documented_production_environment() -> None:
    production = production_environment()
    assert production["DJANGO_SECURE_HSTS_SECONDS"] and production["DJANGO_SECURE_SSL_REDIRECT"]
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "DATABASE_"))},
        **production,
        "DJANGO_ENV_FILE": "",
        # The example's placeholder, as an operator replaces it: 50 random characters.
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
    }

    checked = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "System check identified no issues" in checked.stdout
