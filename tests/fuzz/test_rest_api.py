"""The staff REST API fuzzed from its own OpenAPI schema.

Schemathesis generates valid and invalid requests for every operation (bounded and
deterministic); none may get a 5xx, every 4xx must be JSON, and a 4xx writes nothing. The
campaign calls the ASGI app in this process (schemathesis' in-process transport: no socket
and no server process per input); a few inputs per operation and mode also cross a real
daphne, whose HTTP parsing then sees them.
"""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from django.conf import settings
from django.contrib.auth.models import User
from django.test import Client
from django.utils.crypto import get_random_string
from hypothesis import HealthCheck, Phase, given
from hypothesis import settings as hypothesis_settings
from pytest_django.fixtures import Settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error

from avatarsite.asgi import application
from channels_app.models import LiveSession
from characters.models import Character
from conversations.models import ApiKey, ChannelIdentity, Context, EndUser, Message
from tests.conftest import AsgiServer
from tests.fuzz.conftest import examples, row_counts
from tests.fuzz.report import Tally, in_shard, save, tally

pytestmark = pytest.mark.django_db(transaction=True)

EXAMPLES_PER_OPERATION = 40  # both modes together
# Over daphne, per operation and mode, whatever the campaign's size.
LIVE_EXAMPLES_PER_OPERATION = 2
WRITABLE = (Character, EndUser, ChannelIdentity, Context, Message, ApiKey, LiveSession, User)


@pytest.fixture
def staff_auth(django_user_model: type[User]) -> dict[str, str]:
    """A staff session (cookie plus CSRF pair): HTTP Basic would hash the password on every
    request, which costs more than the request itself."""
    client = Client()
    client.force_login(django_user_model.objects.create_superuser("fuzz", password="unused"))
    session = client.cookies[settings.SESSION_COOKIE_NAME].value
    csrf = get_random_string(32)
    return {
        "Cookie": f"{settings.SESSION_COOKIE_NAME}={session}; {settings.CSRF_COOKIE_NAME}={csrf}",
        "X-CSRFToken": csrf,
    }


def check_case(case: Any, base_url: str | None, auth: dict[str, str]) -> int:
    """The status of one generated request, sent to `base_url` (None: the app in this
    process); AssertionError (or schemathesis' own failure) when the answer breaks a rule."""
    before = row_counts(WRITABLE)

    response = case.call(base_url=base_url, headers=auth, timeout=10)

    case.validate_response(response, checks=[not_a_server_error])
    # A path that is not UTF-8 is refused by Django's ASGI handler before any view or URL
    # resolution, with an empty 400: nothing of ours runs, so there is nothing to shape.
    refused_before_routing = response.status_code == 400 and not response.content
    if 400 <= response.status_code < 500 and not refused_before_routing:
        content_type = response.headers.get("content-type", [""])[0]
        assert content_type.startswith("application/json"), (
            case.as_curl_command(),
            response.status_code,
            response.text[:300],
        )
        response.json()
        assert row_counts(WRITABLE) == before, case.as_curl_command()
    return int(response.status_code)


def fuzz_operation(
    operation: Any,
    mode: GenerationMode,
    counted: Tally,
    base_url: str | None,
    auth: dict[str, str],
    inputs: int,
) -> None:
    """Send `inputs` generated requests of `mode` to the operation, counting each answer."""

    @given(case=operation.as_strategy(generation_mode=mode))
    @hypothesis_settings(
        max_examples=inputs,
        derandomize=True,
        deadline=None,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    def run(case: Any) -> None:
        try:
            status = check_case(case, base_url, auth)
        # Counted, so the campaign tries every input. Schemathesis reports its checks' failures
        # as a FailureGroup, a BaseExceptionGroup: `except Exception` let one end the run.
        except (Exception, BaseExceptionGroup) as exc:
            counted.record("failed", f"{type(exc).__name__}: {exc} {case.as_curl_command()}")
        else:
            counted.record(str(status))

    run()


def fuzz_schema(schema: Any, base_url: str | None, auth: dict[str, str], inputs: int) -> None:
    """Fuzz every operation of this shard with `inputs` requests of each mode."""
    # Something to read, update and delete, so operations on ids reach the serializers.
    Character.objects.create(slug="mia", name="Mia", persona="You are Mia.")
    EndUser.objects.create(display_name="Ada")
    schema.config.generation.update(allow_x00=True)
    operations = 0
    counted: dict[str, Tally] = {}

    for position, result in enumerate(schema.get_all_operations()):
        operation = result.ok()
        operations += 1
        if not in_shard(position):
            continue
        counted[operation.label] = tally(operation.label)
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            fuzz_operation(operation, mode, counted[operation.label], base_url, auth, inputs)
        save()  # the campaign spends minutes per operation

    assert operations >= 20
    failures = {name: t.examples for name, t in counted.items() if t.failures}
    assert not failures, failures


def test_it_answers_every_generated_request_without_a_server_error(
    server_settings: Settings, staff_auth: dict[str, str]
) -> None:
    schema = schemathesis.openapi.from_asgi("/api/schema/", application, headers=staff_auth)
    # The operation's share, half of it each way, less what goes over daphne.
    inputs = examples(EXAMPLES_PER_OPERATION) // 2 - LIVE_EXAMPLES_PER_OPERATION
    fuzz_schema(schema, None, staff_auth, max(inputs, 1))


def test_it_answers_generated_requests_over_daphne_too(
    asgi_server: AsgiServer, staff_auth: dict[str, str]
) -> None:
    schema = schemathesis.openapi.from_url(f"{asgi_server.url}/api/schema/", headers=staff_auth)
    fuzz_schema(schema, asgi_server.url, staff_auth, LIVE_EXAMPLES_PER_OPERATION)
