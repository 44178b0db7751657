"""Reading AIAvatarKit's scenario files: both of its shapes and spellings, clear refusals of
anything else, and imports that replace scenarios by name, all or nothing."""

from __future__ import annotations

import json
from typing import Any

import pytest

from characters.models import Character
from evaluation.models import Scenario, ScenarioTurn
from evaluation.scenario_file import (
    MAX_SCENARIOS,
    MAX_TEXT,
    ScenarioFileError,
    ScenarioSpec,
    TurnSpec,
    import_scenarios,
    parse,
)
from tests.evaluation.conftest import DOCUMENTED


def test_the_documented_file_and_the_admin_panels_list_read_alike() -> None:
    expected = [
        ScenarioSpec(
            name="Greeting",
            goal="Basic greeting and assistance",
            turns=(
                TurnSpec("Hello", "Friendly greeting", "Responds warmly and appropriately"),
                TurnSpec(
                    "My order number is 12345",
                    "Acknowledges the order number",
                    "Mentions the order number",
                ),
            ),
        )
    ]

    assert parse(json.dumps(DOCUMENTED)) == expected
    assert parse(json.dumps(DOCUMENTED["scenarios"]).encode()) == expected


def test_unnamed_scenarios_are_named_after_the_file_and_results_are_left_aside() -> None:
    previous_run = {
        "timestamp": "2026-01-01T00:00:00",
        "scenarios": [
            {
                "goal": "g",
                "user_id": "someone",
                "turns": [
                    {
                        "input_text": "こんにちは",
                        "actual_output_text": "from an earlier run",
                        "evaluation_result": {"result": True, "reason": "r"},
                        "evaluation_function_name": None,
                    }
                ],
                "scenario_evaluation_result": None,
            },
            {"turns": [{"input_text": "Two"}]},
        ],
    }

    specs = parse(json.dumps(previous_run), source="night run")

    assert [s.name for s in specs] == ["night run #1", "night run #2"]
    assert specs[0].turns == (TurnSpec("こんにちは"),)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"\xff\xfe not json", "Not a JSON file"),
        ("[1, 2", "Not a JSON file"),
        ('{"scenario": []}', 'Expected {"scenarios": [...]} or a list of scenarios.'),
        ("[]", "The file holds no scenario."),
        ('["text"]', "scenarios[0] must be an object."),
        ('[{"turns": []}]', "scenarios[0].turns must be a list of at least one turn."),
        ('[{"turns": [{"input_text": "  "}]}]', "scenarios[0].turns[0].input_text is required"),
        ('[{"turns": [{"input_text": 5}]}]', "scenarios[0].turns[0].input_text must be a string"),
        ('[{"turns": [{"input_text": "a\\u0000b"}]}]', "turns[0].input_text contains a NUL"),
        ('[{"goal": "\\ud800", "turns": [{"input_text": "a"}]}]', "goal contains a lone surrogate"),
        (
            '[{"name": "x", "turns": [{"input_text": "a"}]}, '
            '{"name": "x", "turns": [{"input_text": "b"}]}]',
            "scenarios[1].name 'x' is used twice in the file.",
        ),
        (
            '[{"turns": [{"input_text": "a", "evaluation_function_name": "os.system"}]}]',
            "evaluation_function_name: 'os.system' is not an evaluation function this server "
            "offers: name a function of evaluation.functions.",
        ),
        (
            '[{"turns": [{"input_text": "a", "evaluation_function_name": '
            '"evaluation.functions.nothing"}]}]',
            "evaluation.functions has no function 'nothing'.",
        ),
        (
            json.dumps([{"turns": [{"input_text": "a" * (MAX_TEXT + 1)}]}]),
            f"input_text is longer than {MAX_TEXT} characters.",
        ),
        (
            json.dumps([{"turns": [{"input_text": "a"}]}] * (MAX_SCENARIOS + 1)),
            f"At most {MAX_SCENARIOS} scenarios per file.",
        ),
    ],
)
def test_bad_files_are_refused_saying_where(content: str | bytes, message: str) -> None:
    with pytest.raises(ScenarioFileError) as refused:
        parse(content)

    assert message in str(refused.value)


@pytest.mark.django_db
def test_importing_again_replaces_the_scenario_of_the_same_name(character: Character) -> None:
    def file(*inputs: str, goal: str = "") -> list[ScenarioSpec]:
        turns: list[dict[str, Any]] = [{"input_text": text} for text in inputs]
        return parse(json.dumps([{"name": "Greeting", "goal": goal, "turns": turns}]))

    first = import_scenarios(character, file("Hi", "Bye"))
    again = import_scenarios(character, file("Hello", goal="Be kind"))

    assert [s.pk for s in first] == [s.pk for s in again]
    scenario = Scenario.objects.get()
    assert (scenario.goal, scenario.tenant_id) == ("Be kind", character.tenant_id)
    assert list(scenario.turns.values_list("position", "input_text", "tenant_id")) == [
        (1, "Hello", character.tenant_id)
    ]
    assert ScenarioTurn.objects.count() == 1
