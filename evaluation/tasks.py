"""The Celery job of an evaluation run: planned in the request (or command) that asks for it,
run by a worker once the plan is committed."""

from __future__ import annotations

from celery import shared_task
from django.db import transaction

from characters.models import Character

from . import runner
from .models import EvaluationRun, Scenario


def enqueue_run(
    character: Character, scenarios: list[Scenario], judge_model: str = ""
) -> EvaluationRun:
    run = runner.plan(character, scenarios, judge_model)
    transaction.on_commit(lambda: run_evaluation.delay(run.pk))
    return run


@shared_task(name="evaluation.tasks.run_evaluation", acks_late=True, ignore_result=True)
def run_evaluation(run_id: int) -> str:
    """Delivered twice, the run is done once: the first delivery claims it."""
    return runner.execute(run_id)
