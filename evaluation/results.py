"""A run's results as operators read them: next to the previous run of each scenario, and as
JSON (AIAvatarKit's result file, which imports again) or CSV downloads."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from typing import Any

from .models import EvaluationRun, ScenarioResult, TurnResult


@dataclass(frozen=True)
class TurnRow:
    turn: TurnResult
    previous: TurnResult | None


@dataclass(frozen=True)
class ScenarioRow:
    result: ScenarioResult
    previous: ScenarioResult | None  # the same scenario in the latest earlier finished run
    turns: list[TurnRow]

    @property
    def passed(self) -> int:
        return sum(row.turn.passed is True for row in self.turns)

    @property
    def judged(self) -> int:
        return sum(row.turn.passed is not None for row in self.turns)


def previous_result(result: ScenarioResult) -> ScenarioResult | None:
    if result.scenario_id is None:
        return None
    run = result.run
    return (
        ScenarioResult.objects.filter(
            scenario_id=result.scenario_id,
            run__character_id=run.character_id,
            run__status=EvaluationRun.Status.DONE,
            run__created_at__lt=run.created_at,
        )
        .select_related("run")
        .prefetch_related("turns")
        .order_by("-run__created_at")
        .first()
    )


def compared(run: EvaluationRun) -> list[ScenarioRow]:
    rows = []
    for result in run.results.select_related("run").prefetch_related("turns"):
        previous = previous_result(result)
        before = {t.position: t for t in previous.turns.all()} if previous else {}
        turns = [TurnRow(turn, before.get(turn.position)) for turn in result.turns.all()]
        rows.append(ScenarioRow(result, previous, turns))
    return rows


def _verdict(passed: bool | None, reason: str) -> dict[str, Any] | None:
    return None if passed is None else {"result": passed, "reason": reason}


def as_json(run: EvaluationRun) -> dict[str, Any]:
    """AIAvatarKit's result file: `{"timestamp", "scenarios": [...]}` with each turn's output
    and verdict, plus the run's own facts."""
    finished = run.finished_at or run.created_at
    return {
        "timestamp": finished.isoformat(),
        "run": {
            "id": run.pk,
            "character": run.character.slug,
            "status": run.status,
            "judge_model": run.judge_model,
            "error": run.error,
        },
        "scenarios": [
            {
                "name": result.name,
                "goal": result.goal,
                "turns": [
                    {
                        "input_text": turn.input_text,
                        "expected_output_text": turn.expected_output_text,
                        "evaluation_criteria": turn.evaluation_criteria,
                        "evaluation_function_name": turn.evaluation_function,
                        "actual_output_text": turn.actual_output_text,
                        "tool_calls": turn.tool_calls,
                        "evaluation_result": _verdict(turn.passed, turn.reason),
                        "error": turn.error,
                    }
                    for turn in result.turns.all()
                ],
                "scenario_evaluation_result": _verdict(result.goal_passed, result.goal_reason),
                "error": result.error,
            }
            for result in run.results.prefetch_related("turns")
        ],
    }


CSV_COLUMNS = (
    "scenario",
    "turn",
    "input_text",
    "expected_output_text",
    "evaluation_criteria",
    "evaluation_function",
    "actual_output_text",
    "passed",
    "reason",
    "error",
)
# A cell a spreadsheet would run as a formula (the text comes from users and LLMs).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _cell(value: object) -> str:
    text = "" if value is None else str(value)
    return f"'{text}" if text.startswith(FORMULA_STARTS) else text


def as_csv(run: EvaluationRun) -> str:
    """One row per turn, then one per scenario goal (turn `goal`); `passed` is true, false or
    empty (not judged)."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)

    def passed(value: bool | None) -> str:
        return "" if value is None else str(value).lower()

    for result in run.results.prefetch_related("turns"):
        for turn in result.turns.all():
            writer.writerow(
                _cell(v)
                for v in (
                    result.name,
                    turn.position,
                    turn.input_text,
                    turn.expected_output_text,
                    turn.evaluation_criteria,
                    turn.evaluation_function,
                    turn.actual_output_text,
                    passed(turn.passed),
                    turn.reason,
                    turn.error,
                )
            )
        row = (result.name, "goal", "", "", result.goal, "", "")
        writer.writerow(
            _cell(v) for v in (*row, passed(result.goal_passed), result.goal_reason, result.error)
        )
    return out.getvalue()
