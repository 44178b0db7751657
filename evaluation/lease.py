"""The lease a worker holds on the evaluation run it works on (docs/evaluation.md#lost-workers).

A worker takes a run by a conditional update that gives the run a token of its own and a lease
(`EVALUATION_RUN_LEASE_SECONDS`), renewed by the heartbeat the generation claims and LINE events
use while the worker runs it. Every step the worker records names its token, so a worker whose
lease was taken over stops instead of writing beside its successor. A killed worker stops
renewing: once its lease has run out, the broker's redelivery (or the beat's sweep, when the
broker lost the message) hands the run to another worker, which resumes where the rows say the
dead one stopped. A run whose workers were lost `EVALUATION_RUN_ATTEMPTS` times is failed, with
the reason, instead of being tried again.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import F, Q
from django.db.models.functions import Coalesce
from django.utils import timezone

from characters.life.lease import heartbeat

from .models import EvaluationRun

Status = EvaluationRun.Status


class RunLeased(Exception):
    """The run is held by another worker's unexpired lease (that worker may be dead: RabbitMQ
    hands a killed worker's message on at once, before its lease has run out)."""

    def __init__(self, run_id: int, seconds_left: float) -> None:
        super().__init__(f"evaluation run {run_id} is leased for {seconds_left:.1f} s more")
        self.seconds_left = seconds_left


class LeaseLost(Exception):
    """This worker's lease ran out and another worker took the run over."""


def lease_length() -> timedelta:
    return timedelta(seconds=settings.EVALUATION_RUN_LEASE_SECONDS)


def _lapsed(now: datetime) -> Q:
    # A run left `running` without any lease predates leases: its worker is long gone.
    return Q(leased_until__lt=now) | Q(leased_until__isnull=True)


def take(run_id: int) -> uuid.UUID | None:
    """Take a queued run, or a running one whose worker's lease ran out; the token of the lease,
    or None when there is nothing to take (finished, or out of attempts: the sweep fails it).
    Raises RunLeased while another worker's lease holds."""
    now = timezone.now()
    token = uuid.uuid4()
    lost = Q(status=Status.RUNNING, attempts__lt=settings.EVALUATION_RUN_ATTEMPTS) & _lapsed(now)
    taken = EvaluationRun.objects.filter(Q(status=Status.QUEUED) | lost, pk=run_id).update(
        status=Status.RUNNING,
        lease_token=token,
        leased_until=now + lease_length(),
        attempts=F("attempts") + 1,
        started_at=Coalesce("started_at", now),
    )
    if taken:
        return token
    held = EvaluationRun.objects.filter(
        pk=run_id, status=Status.RUNNING, leased_until__gt=now
    ).first()
    if held is not None and held.leased_until is not None:
        raise RunLeased(run_id, (held.leased_until - now).total_seconds())
    return None


def retry_countdown(leased: RunLeased) -> int:
    """Whole seconds until the lease that refused a delivery runs out (at least one).

    Never more than the lease, so on Redis the retry's message is run before the broker's
    visibility timeout (which follows the lease) would hand it out a second time."""
    return max(1, min(math.ceil(leased.seconds_left), settings.EVALUATION_RUN_LEASE_SECONDS))


@contextmanager
def held(run_id: int, token: uuid.UUID) -> Iterator[None]:
    """Renew the lease while the block runs (a third of the lease between renewals)."""

    def renew() -> None:
        EvaluationRun.objects.filter(pk=run_id, lease_token=token, status=Status.RUNNING).update(
            leased_until=timezone.now() + lease_length()
        )

    with heartbeat(renew, every=lease_length().total_seconds() / 3):
        yield


def ours(run_id: int, token: uuid.UUID) -> Q:
    """The run, only while this worker's lease on it is the current one."""
    return Q(pk=run_id, lease_token=token, status=Status.RUNNING)


def take_back_lost_runs() -> list[int]:
    """The beat's sweep: every running run whose lease ran out is queued again (its id
    returned, for the caller to enqueue), or failed with the reason once its workers were lost
    `EVALUATION_RUN_ATTEMPTS` times. Conditional on the lease seen, so of concurrent sweeps
    (and a worker taking the run meanwhile) one wins."""
    now = timezone.now()
    lost = EvaluationRun.objects.filter(_lapsed(now), status=Status.RUNNING)
    queued = []
    for run in lost.only("pk", "attempts", "lease_token"):
        still_lost = EvaluationRun.objects.filter(
            _lapsed(now), pk=run.pk, status=Status.RUNNING, lease_token=run.lease_token
        )
        if run.attempts >= settings.EVALUATION_RUN_ATTEMPTS:
            still_lost.update(
                status=Status.FAILED,
                error=f"The worker running it was lost {run.attempts} time(s) (its lease ran "
                "out); not tried again.",
                finished_at=now,
                leased_until=None,
            )
        elif still_lost.update(status=Status.QUEUED, leased_until=None):
            queued.append(run.pk)
    return queued
