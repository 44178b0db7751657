"""Evaluation runs: a scenario file from AIAvatarKit's documented format runs through the
character's real pipeline (the fake OpenAI server answers as the character and as the judge),
is judged per turn and per goal, and leaves production history, memory, dashboards and usage
untouched."""

from __future__ import annotations

import io
import json
import uuid
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from django.core.management import CommandError, call_command
from django.forms.models import model_to_dict
from django.utils import timezone

from characters.models import Character
from conversations.console.figures import figures
from conversations.console.usage import daily_usage
from conversations.history import resolve_end_user, save_turn
from conversations.llm import ChatMessage
from conversations.models import EVALUATION_CHANNEL, Context, EndUser, Message, TurnRecord
from evaluation import runner
from evaluation.models import EvaluationRun, Scenario, ScenarioResult, TurnResult
from evaluation.scenario_file import import_scenarios, parse
from memory.models import MemoryItem
from tests.evaluation.conftest import DOCUMENTED, character_says, verdict
from tests.fakes.openai_server import FakeOpenAI, ScriptedReply, message_text

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("eager_celery")]

ScenarioFile = Callable[..., Path]


# The command queues its run once the plan is committed, then waits for it: its tests commit
# (transaction=True), and the eager Celery app runs the job at once.
committing = pytest.mark.django_db(transaction=True)


def evaluate(path: Path, *args: str) -> tuple[str, str | None]:
    """`manage.py evaluate`'s output, and its error when it exits non-zero."""
    out, err = io.StringIO(), io.StringIO()
    try:
        call_command("evaluate", str(path), "--character", "mia", *args, stdout=out, stderr=err)
    except CommandError as exc:
        return out.getvalue(), str(exc)
    return out.getvalue(), None


def production_conversation(character: Character) -> Context:
    """A finished conversation of a real user, written as the pipeline writes one (its memory
    item comes from the same signal)."""
    end_user = resolve_end_user(character.tenant_id, "http", "alice")
    record = TurnRecord(
        character=character,
        end_user=end_user,
        context_id=uuid.uuid4(),
        channel="http",
        status=TurnRecord.Status.COMPLETED,
        request_text="I love cats",
        response_text="Cats are lovely.",
        tokens_in=12,
        tokens_out=4,
        tenant_id=character.tenant_id,
    )
    said = [
        ChatMessage(role="user", content="I love cats"),
        ChatMessage(role="assistant", content="Cats are lovely."),
    ]
    save_turn(record, end_user, said)
    return Context.objects.get(pk=record.context_id)


def snapshot() -> dict[str, list[dict[str, Any]]]:
    """Every row of history and memory, field by field."""
    return {
        model.__name__: [model_to_dict(row) for row in model.objects.order_by("pk")]
        for model in (Context, Message, MemoryItem)
    } | {
        "TurnRecord": [
            model_to_dict(row)
            for row in TurnRecord.objects.exclude(channel=EVALUATION_CHANNEL).order_by("pk")
        ]
    }


@committing
def test_a_documented_file_runs_is_judged_and_prints_pass_or_fail_per_turn_and_goal(
    character: Character,
    fake_llm: FakeOpenAI,
    scenario_file: ScenarioFile,
) -> None:
    fake_llm.script(
        character_says(2),
        verdict(True, "A warm hello."),
        verdict(False, "The order number is not mentioned."),
        verdict(True, "The user was greeted and helped."),
    )

    out, failure = evaluate(scenario_file(DOCUMENTED))

    assert failure == "1 verdict(s) failed."
    lines = out.splitlines()
    assert "Scenario 'Greeting'" in lines
    assert "  turn 1   PASS  Hello" in lines
    assert "  turn 2   FAIL  My order number is 12345" in lines
    assert "  goal     PASS  Basic greeting and assistance" in lines
    assert "           The order number is not mentioned." in lines
    assert lines[-1].startswith("Run ") and "1/2 judged turn(s) passed, 1/1 goal(s)" in lines[-1]

    run = EvaluationRun.objects.get()
    assert (run.status, run.steps_done, run.steps_total) == ("done", 5, 5)
    turns = list(TurnResult.objects.order_by("position"))
    # The second turn heard the first: the conversation's history reached the LLM.
    assert turns[1].actual_output_text == (
        "You said: My order number is 12345. I have seen 2 user messages."
    )
    assert [t.passed for t in turns] == [True, False]
    assert ScenarioResult.objects.get().goal_passed is True

    judge_turn, judge_goal = fake_llm.requests[2], fake_llm.requests[4]
    assert judge_turn["model"] == character.llm_model and judge_turn["temperature"] == 0
    asked = message_text(judge_turn["messages"][-1])
    assert "Responds warmly and appropriately" in asked and "Friendly greeting" in asked
    assert "You said: Hello. I have seen 1 user messages." in asked
    conversation = message_text(judge_goal["messages"][-1])
    assert "User: My order number is 12345" in conversation
    assert "Basic greeting and assistance" in conversation


@committing
def test_production_history_memory_dashboards_and_usage_stay_untouched(
    character: Character,
    fake_llm: FakeOpenAI,
    scenario_file: ScenarioFile,
) -> None:
    production = production_conversation(character)
    assert MemoryItem.objects.count() == 1  # the real turn was remembered
    before = snapshot()
    start, end = timezone.now() - timedelta(hours=1), timezone.now() + timedelta(hours=1)
    shown_before = figures(TurnRecord.objects.all(), start, end, ZoneInfo("UTC"))
    fake_llm.script(character_says(2), verdict(True, "ok"), verdict(True, "ok"))

    evaluate(scenario_file(DOCUMENTED))

    assert snapshot() == before  # no Context, Message, MemoryItem or production TurnRecord
    evaluated = TurnRecord.objects.filter(channel=EVALUATION_CHANNEL)
    assert evaluated.count() == 2
    assert set(evaluated.values_list("status", flat=True)) == {"completed"}
    result = ScenarioResult.objects.get()
    assert set(evaluated.values_list("context_id", flat=True)) == {result.context_id}
    assert result.context_id != production.pk
    evaluator = EndUser.objects.filter(turns__channel=EVALUATION_CHANNEL).distinct().get()
    assert evaluator.pk == result.end_user_id != production.end_user_id
    assert evaluator.metadata == {"evaluation_run": result.run_id}
    assert set(TurnResult.objects.values_list("turn_record_id", flat=True)) == set(
        evaluated.values_list("id", flat=True)
    )
    shown = figures(TurnRecord.objects.all(), start, end, ZoneInfo("UTC"))
    assert [c.channel for c in shown.channels] == ["http"]
    assert shown.turns == shown_before.turns == 1
    usage = daily_usage(TurnRecord.objects.all(), start, end, ZoneInfo("UTC"))
    assert [(row["turns"], row["tokens_in"]) for row in usage] == [(1, 12)]


def test_turns_without_criteria_are_not_judged_and_functions_have_the_last_word(
    character: Character, fake_llm: FakeOpenAI
) -> None:
    specs = parse(
        json.dumps(
            [
                {
                    "name": "functions",
                    "turns": [
                        {"input_text": "Just chatting"},
                        {
                            "input_text": "Say banana",
                            "expected_output_text": "banana",
                            "evaluation_function_name": "evaluation.functions."
                            "contains_expected_output",
                        },
                        {
                            "input_text": "こんにちは",
                            "evaluation_criteria": "Polite, in Japanese",
                            "evaluation_function_name": "evaluation.functions.without_tool_calls",
                        },
                    ],
                }
            ]
        )
    )
    run = runner.plan(character, import_scenarios(character, specs))
    assert run.steps_total == 3 + 2  # three turns said, two judged, no goal
    # The judge says no to "banana", but the answer quotes it: the function passes the turn.
    fake_llm.script(character_says(3), verdict(False, "Not a fruit."), verdict(True, "丁寧です。"))

    assert runner.execute(run.pk) == "done"

    turns = list(TurnResult.objects.order_by("position"))
    assert [t.passed for t in turns] == [None, True, True]
    assert turns[0].reason == ""
    assert turns[1].reason == "The answer contains 'banana'."
    assert turns[2].reason == "丁寧です。"
    assert len(fake_llm.requests) == 5  # three turns, two verdicts
    assert runner.execute(run.pk) == "nothing to do"  # a second delivery of the job
    assert len(fake_llm.requests) == 5


def test_a_turn_that_fails_stops_its_scenario_and_an_unreadable_verdict_fails(
    character: Character, fake_llm: FakeOpenAI
) -> None:
    specs = parse(
        json.dumps(
            {
                "scenarios": [
                    {
                        "name": "broken",
                        "goal": "Help",
                        "turns": [{"input_text": "One"}, {"input_text": "Two"}],
                    },
                    {
                        "name": "garbled judge",
                        "turns": [{"input_text": "Hi", "evaluation_criteria": "Greets"}],
                    },
                ]
            }
        )
    )
    run = runner.plan(character, import_scenarios(character, specs))
    fake_llm.script(
        ScriptedReply(status=400, text="Bad request"),  # not retried: the turn fails
        ScriptedReply(),
        ScriptedReply(chunks=["Looks good to me!"]),
    )

    assert runner.execute(run.pk) == "done"

    broken, garbled = ScenarioResult.objects.order_by("position")
    assert broken.error.startswith("Turn 1 failed: ")
    assert broken.goal_passed is None  # a conversation cut short is not judged on its goal
    assert list(broken.turns.values_list("actual_output_text", "passed")) == [("", None)] * 2
    assert broken.turns.get(position=2).error == ""  # never said
    turn = garbled.turns.get()
    assert turn.passed is False
    assert turn.reason == "The judge gave no verdict: 'Looks good to me!'"
    assert EvaluationRun.objects.get().status == "done"
    assert TurnRecord.objects.get(status="failed").channel == EVALUATION_CHANNEL


def test_an_inactive_character_fails_the_run_with_the_reason(
    character: Character, fake_llm: FakeOpenAI
) -> None:
    specs = parse(json.dumps([{"turns": [{"input_text": "Hi"}]}]))
    run = runner.plan(character, import_scenarios(character, specs))
    character.is_active = False
    character.save()

    assert runner.execute(run.pk) == "failed"

    run.refresh_from_db()
    assert run.error == "Unknown character 'mia'. (inactive?)"
    assert fake_llm.requests == []


@committing
def test_the_judge_model_is_the_runs_choice_else_the_setting(
    character: Character,
    fake_llm: FakeOpenAI,
    scenario_file: ScenarioFile,
    settings: Any,
) -> None:
    settings.EVALUATION_JUDGE_MODEL = "gpt-4o"
    path = scenario_file(DOCUMENTED)
    judged = ScriptedReply(chunks=['{"passed": true}'], repeat=3)
    fake_llm.script(character_says(2), judged)
    evaluate(path)
    first = [r["model"] for r in fake_llm.requests]
    fake_llm.reset()
    fake_llm.script(character_says(2), judged)

    evaluate(path, "--judge-model", "judge-x")

    assert first == ["gpt-4o-mini", "gpt-4o-mini", "gpt-4o", "gpt-4o", "gpt-4o"]
    assert [r["model"] for r in fake_llm.requests][2:] == ["judge-x"] * 3
    assert Scenario.objects.count() == 1  # the same file again updated its scenario


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["missing.json", "--character", "mia"], "Cannot read missing.json: No such file"),
        (["{file}", "--character", "nobody"], "No character with the slug 'nobody' in the tenant"),
        (["{file}", "--character", "mia", "--tenant", "acme"], "in the tenant 'acme'."),
        (["{file}", "--character", "mia", "--timeout", "nan"], "--timeout must be a number"),
        (["{file}", "--character", "mia", "--timeout", "-1"], "--timeout must be a number"),
        (["{bad}", "--character", "mia"], "scenarios[0].turns[0].input_text is required"),
    ],
)
def test_the_command_refuses_bad_arguments_before_queueing_anything(
    character: Character,
    scenario_file: ScenarioFile,
    args: list[str],
    message: str,
) -> None:
    good = scenario_file(DOCUMENTED)
    bad = scenario_file({"scenarios": [{"turns": [{"input_text": ""}]}]}, "bad.json")
    filled = [arg.format(file=good, bad=bad) for arg in args]

    with pytest.raises(CommandError) as refused:
        call_command("evaluate", *filled, stdout=io.StringIO(), stderr=io.StringIO())

    assert message in str(refused.value)
    assert (Scenario.objects.count(), EvaluationRun.objects.count()) == (0, 0)


def test_deleting_a_run_removes_its_end_users_and_turn_records_only(
    character: Character, fake_llm: FakeOpenAI
) -> None:
    production = production_conversation(character)
    specs = parse(json.dumps([{"name": "a", "turns": [{"input_text": "Hi"}]}]))
    scenarios = import_scenarios(character, specs)
    kept, deleted = runner.plan(character, scenarios), runner.plan(character, scenarios)
    runner.execute(kept.pk)
    runner.execute(deleted.pk)
    before = snapshot()

    deleted.delete()

    assert snapshot() == before
    assert list(EndUser.objects.exclude(pk=production.end_user_id)) == [
        ScenarioResult.objects.get().end_user
    ]
    assert TurnRecord.objects.filter(channel=EVALUATION_CHANNEL).get().context_id == (
        ScenarioResult.objects.get(run=kept).context_id
    )
    assert Scenario.objects.count() == 1  # the scenario stays; only the run went
