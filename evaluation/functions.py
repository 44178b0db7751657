"""Evaluation functions: code that has the last word on a turn's verdict, named in a scenario
by dotted path, and the two the project ships.

A scenario file comes from an operator, so its dotted paths may name only functions in the
modules the deployment lists in EVALUATION_FUNCTION_MODULES: anything else (`os.system`) is
refused when the scenario is saved and again when it runs.

A function takes a `JudgedTurn` and returns a `Verdict`; it may keep, reverse or replace the
judge's (which is None when the turn has no criteria and no expected output).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import import_module
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError


@dataclass(frozen=True, slots=True)
class Verdict:
    passed: bool
    reason: str


@dataclass(frozen=True, slots=True)
class JudgedTurn:
    input_text: str
    expected_output_text: str
    evaluation_criteria: str
    actual_output_text: str
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    judge: Verdict | None = None


EvaluationFunction = Callable[[JudgedTurn], Verdict]


def load_function(path: str) -> EvaluationFunction:
    """The function `path` names; ValidationError saying why when it may not be used."""
    module_name, _, name = path.rpartition(".")
    allowed = settings.EVALUATION_FUNCTION_MODULES
    if module_name not in allowed or not name or name.startswith("_"):
        raise ValidationError(
            f"{path[:200]!r} is not an evaluation function this server offers: name a function "
            f"of {', '.join(allowed) or 'no module (EVALUATION_FUNCTION_MODULES is empty)'}."
        )
    try:
        module = import_module(module_name)
    except ImportError as exc:
        raise ValidationError(
            f"The evaluation functions of {module_name} fail to load: {exc}"
        ) from None
    function = getattr(module, name, None)
    if not callable(function):
        raise ValidationError(f"{module_name} has no function {name!r}.")
    return function


def validate_function_path(path: str) -> None:
    if path:
        load_function(path)


def contains_expected_output(turn: JudgedTurn) -> Verdict:
    """Passes when the answer contains the expected output word for word (case aside),
    whatever the judge said."""
    expected = turn.expected_output_text.strip()
    if expected and expected.casefold() in turn.actual_output_text.casefold():
        return Verdict(True, f"The answer contains {expected!r}.")
    return Verdict(False, f"The answer does not contain {expected!r}.")


def without_tool_calls(turn: JudgedTurn) -> Verdict:
    """Fails a turn that called a tool; otherwise the judge's verdict stands."""
    if turn.tool_calls:
        names = ", ".join(str(call.get("name")) for call in turn.tool_calls)
        return Verdict(False, f"The character called a tool ({names}) where none was wanted.")
    if turn.judge is None:
        return Verdict(True, "No tool was called.")
    return turn.judge
