"""An evaluation run whose worker is lost: a real Celery worker killed mid-run on the Redis
broker, the next worker resumes the run where the rows say it stopped (no turn said or judged
twice, no second result row); the beat's sweep queues again a run whose lease ran out, or fails
it with the reason once its workers were lost too often; the admin shows how many workers
took a run on."""

from __future__ import annotations

import json
import signal
import threading
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.utils import timezone
from django_celery_beat.models import PeriodicTask
from pytest_django.fixtures import Settings

from avatarsite.celery import app
from characters.models import Character
from conversations.history import resolve_end_user
from conversations.models import EVALUATION_CHANNEL, EndUser, TurnRecord
from evaluation import judge, runner
from evaluation.lease import RunLeased, retry_countdown
from evaluation.models import EvaluationRun, ScenarioResult, TurnResult
from evaluation.scenario_file import import_scenarios, parse
from evaluation.tasks import resume_lost_runs, run_evaluation
from tests.beat_entries import run_data_steps_again
from tests.conftest import server_env
from tests.evaluation.conftest import DOCUMENTED, verdict
from tests.fakes.openai_server import FakeOpenAI, ScriptedReply, message_text
from tests.processes import RedisServer, start_celery_worker, stop_process
from tests.waiting import wait_until

pytestmark = pytest.mark.django_db(transaction=True)

Status = EvaluationRun.Status
# DOCUMENTED's scenario: two turns said, two verdicts and one goal verdict.
STEPS = 5


def planned_run(character: Character) -> EvaluationRun:
    scenarios = import_scenarios(character, parse(json.dumps(DOCUMENTED)))
    return runner.plan(character, scenarios)


def asked(fake_llm: FakeOpenAI) -> list[tuple[str, str]]:
    """Each LLM request as (who asked: the judge or the character, the last user message)."""
    seen = []
    for body in fake_llm.requests:
        messages: list[dict[str, Any]] = body["messages"]
        system = message_text(messages[0]) if messages[0].get("role") == "system" else ""
        who = "judge" if system in (judge.TURN_PROMPT, judge.GOAL_PROMPT) else "character"
        last = next(message_text(m) for m in reversed(messages) if m.get("role") == "user")
        seen.append((who, last))
    return seen


def assert_finished_once(run: EvaluationRun, fake_llm: FakeOpenAI) -> None:
    """Done, every step counted once, one result row per scenario and turn, each turn said to
    completion once after the loss and judged once."""
    run.refresh_from_db()
    assert run.status == Status.DONE, run.error
    assert (run.steps_done, run.steps_total, run.leased_until) == (STEPS, STEPS, None)
    [result] = ScenarioResult.objects.filter(run=run)
    first, second = TurnResult.objects.filter(scenario_result=result).order_by("position")
    assert first.actual_output_text == "Hello there."
    # The resumed turn saw the first one in its history: two user messages.
    assert second.actual_output_text == (
        "You said: My order number is 12345. I have seen 2 user messages."
    )
    assert (first.passed, second.passed, result.goal_passed) == (True, True, True)
    judged = [last for who, last in asked(fake_llm) if who == "judge"]
    assert len(judged) == 3  # two turns and the goal, each once
    completed = TurnRecord.objects.filter(
        channel=EVALUATION_CHANNEL, status=TurnRecord.Status.COMPLETED
    )
    assert sorted(str(r.pk) for r in completed) == sorted(
        str(t.turn_record_id) for t in (first, second)
    )
    assert set(completed.values_list("context_id", flat=True)) == {result.context_id}
    assert EndUser.objects.filter(identities__channel=EVALUATION_CHANNEL).count() == 1


@pytest.mark.live
def test_a_killed_workers_run_is_resumed_by_the_next_worker_and_judged_once(
    character: Character, fake_llm: FakeOpenAI, redis_server: RedisServer, tmp_path: Path
) -> None:
    held = threading.Event()
    fake_llm.script(
        ScriptedReply(text="Hello there."),
        ScriptedReply(text="Never said.", gate=held),  # the second turn, when the kill comes
        ScriptedReply(),  # the second turn again, answered from the history it is sent
        verdict(True, "Warm."),
        verdict(True, "Mentions it."),
        verdict(True, "Achieved."),
    )
    env = server_env(
        fake_llm,
        CELERY_BROKER_URL=redis_server.url,
        # The lease (and with it the broker's visibility timeout) short enough for a test.
        EVALUATION_RUN_LEASE_SECONDS="3",
        LIFE_LEASE_SECONDS="3",
        LIFE_BUSY_RETRY_SECONDS="1",
        CELERY_UNACKED_RESTORE_SECONDS="1",
        LLM_TIMEOUT_SECONDS="120",  # the held answer must not time out before the kill
        LOG_LEVEL="INFO",
    )
    run = planned_run(character)
    first = start_celery_worker(env, tmp_path / "first.log", concurrency=1, pool="solo")
    try:
        with app.connection_for_write(redis_server.url) as connection:
            run_evaluation.apply_async((run.pk,), connection=connection)
        wait_until(lambda: len(fake_llm.requests) == 2, "the first worker's second turn")
        first.send_signal(signal.SIGKILL)  # mid-turn: the second answer is still held
        first.wait()
    finally:
        stop_process(first)
        held.set()
    run.refresh_from_db()
    assert (run.status, run.steps_done, run.attempts) == (Status.RUNNING, 1, 1)

    second = start_celery_worker(env, tmp_path / "second.log", concurrency=1, pool="solo")
    try:
        wait_until(
            lambda: EvaluationRun.objects.get(pk=run.pk).status in (Status.DONE, Status.FAILED),
            "the next worker to finish the run",
        )
    finally:
        stop_process(second)

    assert_finished_once(run, fake_llm)
    assert EvaluationRun.objects.get(pk=run.pk).attempts == 2
    said = [last for who, last in asked(fake_llm) if who == "character"]
    assert said == ["Hello", "My order number is 12345", "My order number is 12345"]
    assert "resumed (attempt 2)" in (tmp_path / "second.log").read_text()


def lost_after_first_turn(character: Character, attempts: int) -> EvaluationRun:
    """A run as a killed worker leaves it: its first turn said, its lease run out."""
    run = planned_run(character)
    result = run.results.get()
    first = result.turns.get(position=1)
    # The scenario's end user, as the lost worker's admission made it.
    end_user = resolve_end_user(
        character.tenant_id, EVALUATION_CHANNEL, f"run-{run.pk}-scenario-{result.pk}"
    )
    record = TurnRecord.objects.create(
        character=character,
        end_user=end_user,
        context_id=uuid.uuid4(),
        channel=EVALUATION_CHANNEL,
        status=TurnRecord.Status.COMPLETED,
        request_text=first.input_text,
        response_text="Hello there.",
        tenant_id=character.tenant_id,
    )
    first.actual_output_text, first.turn_record_id = "Hello there.", record.pk
    first.save()
    result.context_id, result.end_user = record.context_id, record.end_user
    result.save()
    EvaluationRun.objects.filter(pk=run.pk).update(
        status=Status.RUNNING,
        attempts=attempts,
        steps_done=1,
        started_at=timezone.now(),
        leased_until=timezone.now() - timedelta(seconds=1),
    )
    return run


@pytest.mark.usefixtures("eager_celery")
def test_the_sweep_queues_a_lost_run_again_and_it_resumes_from_its_rows(
    character: Character, fake_llm: FakeOpenAI
) -> None:
    run = lost_after_first_turn(character, attempts=1)
    alive = planned_run(character)
    EvaluationRun.objects.filter(pk=alive.pk).update(
        status=Status.RUNNING, attempts=1, leased_until=timezone.now() + timedelta(minutes=1)
    )
    fake_llm.script(
        ScriptedReply(),
        verdict(True, "Warm."),
        verdict(True, "Mentions it."),
        verdict(True, "Achieved."),
    )

    assert resume_lost_runs() == 1  # the eager app runs it at once
    assert resume_lost_runs() == 0

    said = [last for who, last in asked(fake_llm) if who == "character"]
    assert said == ["My order number is 12345"]
    assert_finished_once(run, fake_llm)
    assert EvaluationRun.objects.get(pk=run.pk).attempts == 2
    assert EvaluationRun.objects.get(pk=alive.pk).status == Status.RUNNING


def test_a_run_whose_workers_were_lost_too_often_is_failed_with_the_reason(
    character: Character, fake_llm: FakeOpenAI, settings: Settings
) -> None:
    settings.EVALUATION_RUN_ATTEMPTS = 2
    run = lost_after_first_turn(character, attempts=2)

    assert resume_lost_runs() == 0

    run.refresh_from_db()
    assert run.status == Status.FAILED
    assert run.error == (
        "The worker running it was lost 2 time(s) (its lease ran out); not tried again."
    )
    assert run.finished_at is not None and run.leased_until is None
    assert not fake_llm.requests
    assert runner.execute(run.pk) == "nothing to do"  # a late delivery leaves it failed


def test_a_delivery_finding_the_run_leased_raises_instead_of_running_it_twice(
    character: Character, fake_llm: FakeOpenAI
) -> None:
    run = planned_run(character)
    until = timezone.now() + timedelta(seconds=20)
    EvaluationRun.objects.filter(pk=run.pk).update(
        status=Status.RUNNING, attempts=1, leased_until=until
    )
    with pytest.raises(RunLeased) as leased:
        runner.execute(run.pk)
    assert 1 <= retry_countdown(leased.value) <= 20
    assert not fake_llm.requests
    assert EvaluationRun.objects.get(pk=run.pk).attempts == 1


def test_the_admin_shows_how_many_workers_took_a_run_on(character: Character) -> None:
    run = lost_after_first_turn(character, attempts=2)
    admin = get_user_model().objects.create_superuser("root", "root@example.com", "pw")
    client = Client()
    client.force_login(admin)

    listing = client.get("/admin/evaluation/evaluationrun/").content.decode()
    page = client.get(f"/admin/evaluation/evaluationrun/{run.pk}/change/").content.decode()

    assert "2 (resumed after 1 lost)" in listing
    assert '<strong id="run-workers">2</strong>worker(s) took it on: resumed after 1 lost' in page


@pytest.mark.django_db
def test_the_sweep_is_on_the_beat_every_minute() -> None:
    run_data_steps_again("evaluation.migrations.0002_run_lease_and_provider_state")
    entry = PeriodicTask.objects.get(task="evaluation.tasks.resume_lost_runs")
    assert (entry.name, entry.enabled) == ("Evaluation runs of lost workers", True)
    assert (entry.interval.every, entry.interval.period) == (1, "minutes")
