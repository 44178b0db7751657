"""`manage.py evaluate` with a real Celery worker (live layer): the command queues the run on
the broker, the worker runs it, the command follows its progress and prints the verdicts."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from characters.models import Character
from evaluation.models import EvaluationRun
from tests.evaluation.conftest import DOCUMENTED, character_says, verdict
from tests.fakes.openai_server import FakeOpenAI

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_worker_runs_the_commands_evaluation(
    character: Character,
    fake_llm: FakeOpenAI,
    scenario_file: Callable[..., Path],
    worker: None,
) -> None:
    fake_llm.script(
        character_says(2), verdict(True, "Warm."), verdict(True, "Yes."), verdict(False, "No.")
    )
    out, err = io.StringIO(), io.StringIO()

    with pytest.raises(CommandError, match=r"^1 verdict\(s\) failed\.$"):
        call_command(
            "evaluate", str(scenario_file(DOCUMENTED)), "--character", "mia", stdout=out, stderr=err
        )

    assert "  goal     FAIL  Basic greeting and assistance" in out.getvalue().splitlines()
    progress = err.getvalue().splitlines()
    assert progress[0].startswith("Run ") and progress[0].endswith("of 1 scenario(s) queued.")
    assert progress[-1] == "  done: 5/5 steps"
    assert EvaluationRun.objects.get().status == "done"
