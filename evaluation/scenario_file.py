"""AIAvatarKit's scenario files, read into a character's scenarios (docs/evaluation.md).

The file is `{"scenarios": [...]}` (AIAvatarKit's dataset and result files) or the bare list
its admin panel posts. A scenario has `name`, `goal` and `turns`; a turn has `input_text`,
`expected_output_text` (its README writes `expected_output`: both are read),
`evaluation_criteria` and `evaluation_function_name`, here a dotted path. Anything else in the
file (a previous run's `actual_output_text`, `evaluation_result`, `user_id`) is left aside:
runs here always talk to the character afresh.

Importing replaces the character's scenario of the same name, so a file edited and imported
again updates its scenarios and their runs stay comparable.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction

from characters.models import Character

from .functions import validate_function_path
from .models import Scenario, ScenarioTurn

MAX_FILE_BYTES = 5 * 1024 * 1024
MAX_SCENARIOS = 500
MAX_TURNS = 100
MAX_TEXT = 20_000
NAME_LENGTH = Scenario._meta.get_field("name").max_length or 200


class ScenarioFileError(ValueError):
    """The file is not a scenario file this server can import; the message says where."""


@dataclass(frozen=True, slots=True)
class TurnSpec:
    input_text: str
    expected_output_text: str = ""
    evaluation_criteria: str = ""
    evaluation_function: str = ""


@dataclass(frozen=True, slots=True)
class ScenarioSpec:
    name: str
    goal: str
    turns: tuple[TurnSpec, ...]


def _text(value: object, where: str, *, required: bool = False, limit: int = MAX_TEXT) -> str:
    if value is None:
        value = ""
    if not isinstance(value, str):
        raise ScenarioFileError(f"{where} must be a string, not {type(value).__name__}.")
    if "\x00" in value:
        raise ScenarioFileError(f"{where} contains a NUL character.")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ScenarioFileError(f"{where} contains a lone surrogate (not valid Unicode).") from None
    if len(value) > limit:
        raise ScenarioFileError(f"{where} is longer than {limit} characters.")
    if required and not value.strip():
        raise ScenarioFileError(f"{where} is required and may not be empty.")
    return value


def _turn(raw: object, where: str) -> TurnSpec:
    if not isinstance(raw, dict):
        raise ScenarioFileError(f"{where} must be an object.")
    expected_key = "expected_output_text" if "expected_output_text" in raw else "expected_output"
    function = _text(
        raw.get("evaluation_function_name"), f"{where}.evaluation_function_name", limit=200
    ).strip()
    try:
        validate_function_path(function)
    except ValidationError as exc:
        raise ScenarioFileError(f"{where}.evaluation_function_name: {exc.messages[0]}") from None
    return TurnSpec(
        input_text=_text(raw.get("input_text"), f"{where}.input_text", required=True),
        expected_output_text=_text(raw.get(expected_key), f"{where}.{expected_key}"),
        evaluation_criteria=_text(raw.get("evaluation_criteria"), f"{where}.evaluation_criteria"),
        evaluation_function=function,
    )


def parse(content: bytes | str, source: str = "scenarios") -> list[ScenarioSpec]:
    """The scenarios of a file's content; ScenarioFileError naming the first problem.
    Unnamed scenarios are called after `source` and their place in the file."""
    if len(content) > MAX_FILE_BYTES:
        raise ScenarioFileError(f"The file is larger than {MAX_FILE_BYTES // 1024 // 1024} MB.")
    try:
        data: Any = json.loads(content)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ScenarioFileError(f"Not a JSON file: {exc}") from None
    raw_scenarios = data.get("scenarios") if isinstance(data, dict) else data
    if not isinstance(raw_scenarios, list):
        raise ScenarioFileError('Expected {"scenarios": [...]} or a list of scenarios.')
    if not raw_scenarios:
        raise ScenarioFileError("The file holds no scenario.")
    if len(raw_scenarios) > MAX_SCENARIOS:
        raise ScenarioFileError(f"At most {MAX_SCENARIOS} scenarios per file.")
    specs: list[ScenarioSpec] = []
    seen: set[str] = set()
    for index, raw in enumerate(raw_scenarios):
        where = f"scenarios[{index}]"
        if not isinstance(raw, dict):
            raise ScenarioFileError(f"{where} must be an object.")
        name = _text(raw.get("name"), f"{where}.name", limit=NAME_LENGTH).strip()
        name = name or f"{source[: NAME_LENGTH - 8]} #{index + 1}"
        if name in seen:
            raise ScenarioFileError(f"{where}.name {name!r} is used twice in the file.")
        seen.add(name)
        turns = raw.get("turns")
        if not isinstance(turns, list) or not turns:
            raise ScenarioFileError(f"{where}.turns must be a list of at least one turn.")
        if len(turns) > MAX_TURNS:
            raise ScenarioFileError(f"{where}.turns: at most {MAX_TURNS} turns per scenario.")
        specs.append(
            ScenarioSpec(
                name=name,
                goal=_text(raw.get("goal"), f"{where}.goal"),
                turns=tuple(_turn(t, f"{where}.turns[{i}]") for i, t in enumerate(turns)),
            )
        )
    return specs


@transaction.atomic
def import_scenarios(character: Character, specs: list[ScenarioSpec]) -> list[Scenario]:
    """Store `specs` as `character`'s scenarios, each replacing the one of the same name; all
    or nothing."""
    stored = []
    for spec in specs:
        scenario, created = Scenario.objects.update_or_create(
            character=character,
            name=spec.name,
            defaults={"goal": spec.goal, "tenant_id": character.tenant_id},
        )
        if not created:
            scenario.turns.all().delete()
        ScenarioTurn.objects.bulk_create(
            ScenarioTurn(
                tenant_id=character.tenant_id,
                scenario=scenario,
                position=position,
                input_text=turn.input_text,
                expected_output_text=turn.expected_output_text,
                evaluation_criteria=turn.evaluation_criteria,
                evaluation_function=turn.evaluation_function,
            )
            for position, turn in enumerate(spec.turns, 1)
        )
        stored.append(scenario)
    return stored
