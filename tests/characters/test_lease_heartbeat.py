"""A run holding a generation lease renews it while it works, so the lease can be far shorter
than one LLM answer: the work is never taken from a live run, and a killed run's lease (no
more renewals) runs out soon (tests/characters/test_worker_killed.py)."""

from __future__ import annotations

import pytest
from django.utils import timezone
from pytest_django.fixtures import Settings

from characters.life.errors import GenerationBusy
from characters.life.lease import claimed
from characters.models import GenerationClaim
from tests.waiting import wait_until

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_working_run_keeps_its_lease_past_the_lease_time(settings: Settings) -> None:
    settings.LIFE_LEASE_SECONDS = 1
    with claimed("news:jp:ja:2026-01-16", None) as claim:
        first = claim.row.leased_until
        assert first is not None
        wait_until(
            lambda: (
                timezone.now() > first
                and GenerationClaim.objects.get(pk=claim.row.pk).leased_until > first
            ),
            "the heartbeat to renew the lease past its first end",
        )
        with pytest.raises(GenerationBusy), claimed("news:jp:ja:2026-01-16", None):
            pass
        claim.release()
    assert not GenerationClaim.objects.exists()
