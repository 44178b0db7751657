"""The Celery jobs of evaluation runs: a run, planned in the request (or command) that asks for
it and run by a worker once the plan is committed; and the beat's sweep that hands on the runs
of lost workers (docs/evaluation.md#lost-workers)."""

from __future__ import annotations

from celery import shared_task
from celery.app.task import Task
from django.db import transaction

from characters.models import Character

from . import lease, runner
from .models import EvaluationRun, Scenario


def enqueue_run(
    character: Character, scenarios: list[Scenario], judge_model: str = ""
) -> EvaluationRun:
    run = runner.plan(character, scenarios, judge_model)
    transaction.on_commit(lambda: run_evaluation.delay(run.pk))
    return run


@shared_task(
    name="evaluation.tasks.run_evaluation",
    bind=True,
    acks_late=True,
    max_retries=None,
    ignore_result=True,
)
def run_evaluation(self: Task, run_id: int) -> str:
    """Delivered twice, the run is done once: the first delivery takes its lease. A delivery
    that finds the lease held looks again when it runs out: the holder may be dead."""
    try:
        return runner.execute(run_id)
    except lease.RunLeased as leased:
        raise self.retry(countdown=lease.retry_countdown(leased)) from None


@shared_task(name="evaluation.tasks.resume_lost_runs", ignore_result=True)
def resume_lost_runs() -> int:
    """The beat entry (every minute): runs whose worker's lease ran out are queued again, or
    failed once out of attempts. Returns how many were queued."""
    queued = lease.take_back_lost_runs()
    for run_id in queued:
        run_evaluation.delay(run_id)
    return len(queued)
