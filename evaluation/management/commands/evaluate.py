"""`manage.py evaluate FILE --character SLUG [--tenant SLUG] [--judge-model MODEL]`

Imports the scenarios of an AIAvatarKit scenario file into the character (replacing those of
the same names), queues a run of them on Celery, follows its progress and prints pass or fail
per turn and per goal. Exits non-zero when a verdict failed or the run did, so it can gate a
deployment.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from avatarsite.tenants.models import DEFAULT_TENANT_SLUG
from characters.models import Character
from evaluation.models import EvaluationRun
from evaluation.results import compared
from evaluation.scenario_file import ScenarioFileError, import_scenarios, parse
from evaluation.tasks import enqueue_run

POLL_SECONDS = 0.5
FINISHED = (EvaluationRun.Status.DONE, EvaluationRun.Status.FAILED)


def _mark(passed: bool | None) -> str:
    return {True: "PASS", False: "FAIL", None: "----"}[passed]


class Command(BaseCommand):
    help = "Evaluate a character on the scenarios of an AIAvatarKit scenario file."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", help="AIAvatarKit scenario JSON file")
        parser.add_argument("--character", required=True, help="the character's slug")
        parser.add_argument(
            "--tenant", default=DEFAULT_TENANT_SLUG, help="its tenant's slug (default: default)"
        )
        parser.add_argument(
            "--judge-model", default="", help="the judge's model (default: the character's)"
        )
        parser.add_argument(
            "--timeout",
            type=float,
            default=3600.0,
            help="seconds to wait for a worker to finish the run (default: 3600)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if not 0 < options["timeout"] < math.inf:
            raise CommandError(
                f"--timeout must be a number of seconds above 0, not {options['timeout']}."
            )
        path = Path(options["file"])
        try:
            specs = parse(path.read_bytes(), source=path.stem)
        except OSError as exc:
            raise CommandError(f"Cannot read {path}: {exc.strerror}") from None
        except ScenarioFileError as exc:
            raise CommandError(f"{path}: {exc}") from None
        character = Character.objects.filter(
            tenant__slug=options["tenant"], slug=options["character"]
        ).first()
        if character is None:
            raise CommandError(
                f"No character with the slug {options['character']!r} "
                f"in the tenant {options['tenant']!r}."
            )
        scenarios = import_scenarios(character, specs)
        run = enqueue_run(character, scenarios, options["judge_model"])
        self.stderr.write(f"Run {run.pk} of {len(scenarios)} scenario(s) queued.")
        run = self.wait(run, options["timeout"])
        failures = self.report(run)
        if run.status == EvaluationRun.Status.FAILED:
            raise CommandError(f"Run {run.pk} failed: {run.error}")
        if failures:
            raise CommandError(f"{failures} verdict(s) failed.")

    def wait(self, run: EvaluationRun, timeout: float) -> EvaluationRun:
        deadline = time.monotonic() + timeout
        shown = ""
        while True:
            run.refresh_from_db()
            if (now := f"  {run.status}: {run.progress} steps") != shown:
                shown = now
                self.stderr.write(shown)
            if run.status in FINISHED:
                return run
            if time.monotonic() > deadline:
                raise CommandError(
                    f"Run {run.pk} is still {run.status} after {timeout:g} s (is a Celery "
                    "worker running?); it goes on, and its results will be in the admin."
                )
            time.sleep(POLL_SECONDS)

    def report(self, run: EvaluationRun) -> int:
        """Print every verdict; the number that failed."""
        failures = 0
        turns = goals = turns_passed = goals_passed = 0
        for row in compared(run):
            result = row.result
            self.stdout.write(f"Scenario {result.name!r}")
            for turn in (r.turn for r in row.turns):
                mark = _mark(turn.passed)
                self.stdout.write(f"  turn {turn.position:<3} {mark}  {turn.input_text}")
                if turn.actual_output_text:
                    self.stdout.write(f"           answer: {turn.actual_output_text}")
                if turn.reason or turn.error:
                    self.stdout.write(f"           {turn.reason or turn.error}")
                if turn.passed is not None:
                    turns += 1
                    turns_passed += turn.passed
                failures += turn.passed is False
            if result.goal:
                self.stdout.write(f"  goal     {_mark(result.goal_passed)}  {result.goal}")
                if result.goal_reason:
                    self.stdout.write(f"           {result.goal_reason}")
                goals += result.goal_passed is not None
                goals_passed += result.goal_passed is True
                failures += result.goal_passed is False
            if result.error:
                self.stdout.write(f"  error    {result.error}")
                failures += 1
        took = (run.finished_at or timezone.now()) - (run.started_at or run.created_at)
        self.stdout.write(
            f"Run {run.pk}: {turns_passed}/{turns} judged turn(s) passed, "
            f"{goals_passed}/{goals} goal(s) achieved, in {took.total_seconds():.1f} s."
        )
        return failures
