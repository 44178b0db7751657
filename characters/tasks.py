"""Celery tasks of a character's life: the beat tick and the generation jobs it enqueues.

Thin on purpose: the decisions live in characters.life; these only move work onto workers and
record each job's progress where operators can see it (the admin's generation jobs).
"""

from __future__ import annotations

import logging
from datetime import date, datetime, timedelta

from celery import shared_task
from celery.app.task import Task
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from .life import days
from .models import Character, GenerationJob

logger = logging.getLogger("avatarsite.life")

OVERWRITES: dict[str, frozenset[str]] = {
    GenerationJob.Kind.SCHEDULE: frozenset({days.SCHEDULE}),
    GenerationJob.Kind.DIARY: frozenset({days.DIARY}),
    GenerationJob.Kind.RANGE: frozenset({days.SCHEDULE, days.DIARY}),
}


def enqueue_job(
    character: Character,
    kind: str,
    date_from: date,
    date_to: date | None = None,
    *,
    overwrite: bool = False,
) -> GenerationJob:
    """Record a job and hand it to a worker once the record is committed."""
    job = GenerationJob.objects.create(
        character=character,
        kind=kind,
        date_from=date_from,
        date_to=date_to or date_from,
        overwrite=overwrite,
    )
    transaction.on_commit(lambda: run_generation_job.delay(job.pk))
    return job


def enqueue_due(now: datetime) -> list[GenerationJob]:
    """One job per character and local date whose schedule or diary is due and missing."""
    jobs = []
    for due in days.due_days(now):
        kind = GenerationJob.Kind.DAY if due.diary else GenerationJob.Kind.SCHEDULE
        jobs.append(enqueue_job(due.character, kind, due.date))
    if jobs:
        logger.info("life tick at %s: %d job(s) enqueued", now.isoformat(), len(jobs))
    return jobs


def _forget_old_jobs(now: datetime) -> None:
    """Drop the beat's own finished jobs after a while; operators' jobs stay."""
    GenerationJob.objects.filter(
        kind__in=(GenerationJob.Kind.DAY, GenerationJob.Kind.SCHEDULE),
        status=GenerationJob.Status.SUCCEEDED,
        finished_at__lt=now - timedelta(days=settings.LIFE_JOB_RETENTION_DAYS),
    ).delete()
    # Jobs nobody finished (their worker died and the broker lost them) are marked as such, so
    # the next tick enqueues the date again.
    GenerationJob.objects.filter(
        status__in=GenerationJob.UNFINISHED,
        created_at__lte=now - timedelta(seconds=settings.LIFE_JOB_STALE_SECONDS),
    ).update(status=GenerationJob.Status.FAILED, error="abandoned: no worker finished it")


@shared_task(name="characters.tasks.life_tick", ignore_result=True)
def life_tick() -> int:
    """The beat entry (every few minutes): enqueue what is due on each character's clock."""
    now = timezone.now()
    _forget_old_jobs(now)
    return len(enqueue_due(now))


@shared_task(
    name="characters.tasks.run_generation_job",
    bind=True,
    max_retries=None,
    acks_late=True,
    ignore_result=True,
)
def run_generation_job(self: Task, job_id: int) -> str:
    """Run one job; delivered twice or after a crash, it only does what is still missing."""
    job = GenerationJob.objects.select_related("character").filter(pk=job_id).first()
    if job is None or job.status not in GenerationJob.UNFINISHED:
        return "nothing to do"
    GenerationJob.objects.filter(pk=job.pk).update(
        status=GenerationJob.Status.RUNNING, started_at=job.started_at or timezone.now()
    )
    done: dict[str, dict[str, object]] = {entry["date"]: entry for entry in job.result}

    def progress(result: days.DayResult) -> None:
        done[result.date.isoformat()] = result.as_json()
        GenerationJob.objects.filter(pk=job.pk).update(result=sorted(done.values(), key=_by_date))

    pending = [
        day
        for day in days.date_range(job.date_from, job.date_to)
        if day.isoformat() not in done or done[day.isoformat()]["error"]
    ]
    results = days.generate_dates(
        job.character,
        pending,
        diary=job.kind != GenerationJob.Kind.SCHEDULE,
        overwrite=OVERWRITES.get(job.kind, frozenset()) if job.overwrite else frozenset(),
        on_day=progress,
    )
    if any(result.busy for result in results) and self.request.retries < settings.LIFE_BUSY_RETRIES:
        # Another run is writing some of these dates; look again once it should be done.
        raise self.retry(countdown=settings.LIFE_BUSY_RETRY_SECONDS)
    failed = [entry for entry in done.values() if entry["error"]]
    status = (
        GenerationJob.Status.SUCCEEDED
        if not failed
        else GenerationJob.Status.FAILED
        if len(failed) == len(done)
        else GenerationJob.Status.PARTIAL
    )
    GenerationJob.objects.filter(pk=job.pk).update(
        status=status,
        error="\n".join(f"{entry['date']}: {entry['error']}" for entry in failed),
        finished_at=timezone.now(),
    )
    return status


def _by_date(entry: dict[str, object]) -> str:
    return str(entry["date"])
