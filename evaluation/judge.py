"""The LLM judge: asked once per judged turn and once per scenario goal, through the character's
own provider (its key, base URL and tenant secrets) with the run's judge model.

It answers with a JSON object `{"passed": true|false, "reason": "..."}`; an answer that holds
no such object is a failed verdict that says so, never a pass.
"""

from __future__ import annotations

import json
import re

from django.conf import settings

from characters.models import Character
from conversations.llm import ChatMessage, LLMRequest, provider_for

from .functions import Verdict

TURN_PROMPT = (
    "You evaluate one answer of a conversational AI character. Read the user's message, the "
    "character's answer, any tools it called, the expected answer (an example, not a script) "
    "and the criteria. Decide whether the answer meets the criteria. Reply with one JSON "
    'object and nothing else: {"passed": true or false, "reason": "one or two sentences"}.'
)
GOAL_PROMPT = (
    "You evaluate a whole conversation between a user and an AI character. Decide whether the "
    "conversation achieved the goal. Reply with one JSON object and nothing else: "
    '{"passed": true or false, "reason": "one or two sentences"}.'
)
# The outermost {...} of an answer, which models sometimes wrap in prose or a code fence.
OBJECT = re.compile(r"\{.*\}", re.DOTALL)


def judge_model(character: Character, chosen: str) -> str:
    return chosen or settings.EVALUATION_JUDGE_MODEL or character.llm_model


def verdict_of(answer: str) -> Verdict:
    """The judge's answer as a verdict."""
    found = OBJECT.search(answer)
    try:
        data = json.loads(found.group(0)) if found else None
    except ValueError:
        data = None
    if not isinstance(data, dict) or not isinstance(data.get("passed"), bool):
        return Verdict(False, f"The judge gave no verdict: {answer.strip()[:500]!r}")
    return Verdict(data["passed"], str(data.get("reason", "")).strip())


async def ask(character: Character, model: str, prompt: str, question: str) -> Verdict:
    """One verdict; LLMError when the provider fails (after its own retries)."""
    request = LLMRequest(
        messages=[
            ChatMessage(role="system", content=prompt),
            ChatMessage(role="user", content=question),
        ],
        model=model,
        temperature=0,
    )
    # No tools are offered, so the provider yields text (and usage) only.
    stream = provider_for(character).stream(request)
    answer = "".join([delta async for delta in stream if isinstance(delta, str)])
    return verdict_of(answer)


def turn_question(
    input_text: str,
    actual_output_text: str,
    tool_calls: list[dict[str, object]],
    expected_output_text: str,
    criteria: str,
) -> str:
    tools = json.dumps(tool_calls, ensure_ascii=False) if tool_calls else "none"
    return (
        f"## User\n{input_text}\n\n## Answer\n{actual_output_text}\n\n## Tools called\n{tools}"
        f"\n\n## Expected answer\n{expected_output_text or '(none given)'}"
        f"\n\n## Criteria\n{criteria or 'The answer is close in meaning to the expected one.'}"
    )


def goal_question(exchanges: list[tuple[str, str]], goal: str) -> str:
    conversation = "\n\n".join(f"User: {said}\nCharacter: {answer}" for said, answer in exchanges)
    return f"## Conversation\n{conversation}\n\n## Goal\n{goal}"
