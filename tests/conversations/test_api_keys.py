"""API keys: stored hashed, compared in constant time, revocable."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import call_command
from django.utils import timezone

from conversations.models import ApiKey
from conversations.transports.base import bearer_token

pytestmark = pytest.mark.django_db


def test_it_stores_only_a_hash() -> None:
    key, raw = ApiKey.issue("frontend")

    assert raw.startswith("ak_") and len(raw) > 40
    assert raw not in (key.key_hash, key.prefix) and raw.startswith(key.prefix)


def test_it_authenticates_the_right_key_and_notes_its_use() -> None:
    key, raw = ApiKey.issue("frontend")

    assert ApiKey.authenticate(raw) == key
    key.refresh_from_db()
    assert key.last_used_at is not None


@pytest.mark.parametrize("mangle", [lambda raw: raw[:-1] + "x", lambda raw: raw[:12], str.upper])
def test_it_refuses_a_wrong_key(mangle) -> None:
    _, raw = ApiKey.issue("frontend")

    assert ApiKey.authenticate(mangle(raw)) is None


def test_it_refuses_a_revoked_key() -> None:
    key, raw = ApiKey.issue("frontend")
    key.revoked_at = timezone.now()
    key.save()

    assert ApiKey.authenticate(raw) is None


def test_createapikey_prints_a_working_key_once() -> None:
    out, err = StringIO(), StringIO()

    call_command("createapikey", "ops", stdout=out, stderr=err)

    raw = out.getvalue().strip()
    assert ApiKey.authenticate(raw).name == "ops"
    assert "shown only once" in err.getvalue()


@pytest.mark.parametrize(
    ("header", "token"),
    [("Bearer abc", "abc"), ("bearer abc", "abc"), ("BEARER  abc ", "abc"), ("Basic abc", "")],
)
def test_it_reads_bearer_tokens(header: str, token: str) -> None:
    assert bearer_token({"Authorization": header}) == token
