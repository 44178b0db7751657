"""Claims: one payer per piece of work.

Every generator looks for the row it would write *before* any LLM call, and calls the LLM only
while holding the GenerationClaim lease for that row, so concurrent runs and tasks delivered
twice never duplicate a row nor pay twice. Each paid, validated LLM answer is kept on the claim
until the row is saved, so a run that takes over after a crash resumes there.

Leases are kept alive by a heartbeat while their holder works (`heartbeat`, also used for LINE
events): a killed process stops renewing, so its lease runs out and the work is handed on
soon, even when one step (an LLM call) takes longer than the lease itself.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date, timedelta

from django.conf import settings
from django.db import IntegrityError, connections, transaction
from django.utils import timezone

from ..models import Character, GenerationClaim
from .errors import GenerationBusy

logger = logging.getLogger(__name__)

MAX_BACKOFF = timedelta(hours=6)


def claim_key(character: Character, kind: str, day: date | None = None) -> str:
    """The claim key of one piece of a character's life (`kind` on `day`)."""
    return f"character:{character.pk}:{kind}" + (f":{day.isoformat()}" if day else "")


class Claim:
    """The lease this run holds on one key (see GenerationClaim)."""

    def __init__(self, row: GenerationClaim) -> None:
        self.row = row

    def paid(self, step: str, fingerprint: str) -> str | None:
        """A validated answer already paid for with exactly this input, if any."""
        saved = self.row.steps.get(step)
        if saved and saved.get("input") == fingerprint:
            return saved["output"]
        return None

    def keep(self, step: str, fingerprint: str, output: str) -> None:
        """Remember a paid answer and extend the lease."""
        self.row.steps[step] = {"input": fingerprint, "output": output}
        GenerationClaim.objects.filter(pk=self.row.pk, token=self.row.token).update(
            steps=self.row.steps, leased_until=timezone.now() + _lease()
        )

    def renew(self) -> None:
        """Extend the lease (only if it is still ours): the heartbeat while the run works."""
        GenerationClaim.objects.filter(pk=self.row.pk, token=self.row.token).update(
            leased_until=timezone.now() + _lease()
        )

    def release(self) -> None:
        """The work is saved: drop the claim (only if it is still ours)."""
        GenerationClaim.objects.filter(pk=self.row.pk, token=self.row.token).delete()

    def fail(self, exc: Exception) -> None:
        """Free the lease, keep what was paid for, and say when the beat may try again.

        Waiting for other work (GenerationBusy, e.g. the shared news digest) is no failure:
        the lease is freed without an error or a back-off.
        """
        claims = GenerationClaim.objects.filter(pk=self.row.pk, token=self.row.token)
        if isinstance(exc, GenerationBusy):
            claims.update(token=None, leased_until=None, attempts=max(self.row.attempts - 1, 0))
            return
        base = timedelta(seconds=settings.LIFE_RETRY_BASE_SECONDS)
        backoff = min(base * 2 ** max(self.row.attempts - 1, 0), MAX_BACKOFF)
        claims.update(
            token=None,
            leased_until=None,
            last_error=f"{type(exc).__name__}: {exc}"[:2000],
            retry_after=timezone.now() + backoff,
        )


@contextmanager
def heartbeat(renew: Callable[[], object], every: float) -> Iterator[None]:
    """Call `renew()` every `every` seconds while the block runs (and never after it).

    Not inside a transaction: the beat's own connection could not see the rows the block has
    not committed, and would wait on the block's locks while the block waits for the beat."""
    if connections["default"].in_atomic_block:
        yield
        return
    stop = threading.Event()

    def beat() -> None:
        try:
            while not stop.wait(every):
                try:
                    renew()
                except Exception:  # the next beat tries again; the lease may run out meanwhile
                    logger.exception("renewing a lease failed")
        finally:
            connections.close_all()  # this thread's own database connections

    thread = threading.Thread(target=beat, name="lease-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def _lease() -> timedelta:
    return timedelta(seconds=settings.LIFE_LEASE_SECONDS)


@contextmanager
def claimed(key: str, character: Character | None, *, fresh: bool = False) -> Iterator[Claim]:
    """Hold the lease on `key` for the block; raise GenerationBusy if someone else holds it.

    A lease whose holder died (a killed worker) stops being renewed and expires, and the next
    run takes over
    with the answers the dead one already paid for, unless `fresh` (overwriting) asks for new
    ones. A failure inside the block frees the lease and records the error.
    """
    with transaction.atomic():
        row = GenerationClaim.objects.select_for_update().filter(key=key).first()
        if row is None:
            try:
                with transaction.atomic():
                    row = GenerationClaim.objects.create(key=key, character=character)
            except IntegrityError:  # created by a concurrent run since we looked
                row = GenerationClaim.objects.select_for_update().get(key=key)
        now = timezone.now()
        if row.token is not None and row.leased_until and row.leased_until > now:
            raise GenerationBusy(f"{key} is being generated by another run")
        row.token = uuid.uuid4()
        row.leased_until = now + _lease()
        row.attempts += 1
        if fresh:
            row.steps = {}
        row.save()
    claim = Claim(row)
    try:
        # Renewed while the block runs, so the lease can be much shorter than one LLM call:
        # a killed run's work is taken over soon after its heartbeat stops.
        with heartbeat(claim.renew, every=_lease().total_seconds() / 3):
            yield claim
    except Exception as exc:
        claim.fail(exc)
        raise
