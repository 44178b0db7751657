"""Scenario files and judge answers the evaluation tests share."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import LLM_KEY_VARIABLE
from tests.fakes.openai_server import FAKE_API_KEY, ScriptedReply

# The file of AIAvatarKit's README (its "File-Based Evaluation" section), with a second turn
# and a name: `expected_output` is the README's spelling.
DOCUMENTED: dict[str, Any] = {
    "scenarios": [
        {
            "name": "Greeting",
            "goal": "Basic greeting and assistance",
            "turns": [
                {
                    "input_text": "Hello",
                    "expected_output": "Friendly greeting",
                    "evaluation_criteria": "Responds warmly and appropriately",
                },
                {
                    "input_text": "My order number is 12345",
                    "expected_output_text": "Acknowledges the order number",
                    "evaluation_criteria": "Mentions the order number",
                },
            ],
        }
    ]
}


def verdict(passed: bool, reason: str) -> ScriptedReply:
    """The judge's answer, as a model writes it: sometimes inside a code fence."""
    body = json.dumps({"passed": passed, "reason": reason})
    return ScriptedReply(chunks=[f"```json\n{body}\n```"])


def character_says(turns: int) -> ScriptedReply:
    """The fake's own answer (it quotes the last user message and counts the user's
    messages, so a test sees the history that reached the LLM)."""
    return ScriptedReply(repeat=turns)


@pytest.fixture(autouse=True)
def fake_llm_key(monkeypatch: pytest.MonkeyPatch) -> None:
    """The characters' key variable, so they speak through the fake OpenAI server."""
    monkeypatch.setenv(LLM_KEY_VARIABLE, FAKE_API_KEY)


@pytest.fixture
def scenario_file(tmp_path: Path) -> Callable[[dict[str, Any]], Path]:
    def write(content: dict[str, Any], name: str = "support.json") -> Path:
        path = tmp_path / name
        path.write_text(json.dumps(content, ensure_ascii=False), encoding="utf-8")
        return path

    return write
