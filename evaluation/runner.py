"""Running an evaluation: each scenario's turns through the character's real pipeline, then the
judge on each turn and on the scenario's goal (docs/evaluation.md#isolation).

A scenario speaks as an end user of its own on the evaluation channel, admitted like any
caller's, in a conversation of its own whose history lives in the run's memory
(`keep_history=False`): the character's messages, contexts and memories are never written. Each
turn leaves its TurnRecord (timings, tokens), on the evaluation channel that dashboards, usage
and memory leave out.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from typing import Any

from asgiref.sync import async_to_sync, sync_to_async
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from characters.models import Character
from conversations.admission import AdmittedSession, Caller, admit, find_character
from conversations.history import OpenedContext
from conversations.llm import ChatMessage, LLMError
from conversations.models import EVALUATION_CHANNEL
from conversations.pipeline.events import TurnDropped, TurnFailed, TurnFinished, TurnToolCall
from conversations.pipeline.turn import run_turn
from conversations.transports.base import Rejected

from . import judge, lease
from .functions import JudgedTurn, Verdict, load_function
from .models import EvaluationRun, Scenario, ScenarioResult, TurnResult

logger = logging.getLogger("avatarsite.evaluation")


def is_judged(turn: TurnResult) -> bool:
    return bool(turn.evaluation_criteria.strip() or turn.expected_output_text.strip())


@transaction.atomic
def plan(character: Character, scenarios: list[Scenario], judge_model: str = "") -> EvaluationRun:
    """A queued run of `scenarios` (all `character`'s), with a copy of each scenario and turn
    to fill in, and its number of steps."""
    run = EvaluationRun.objects.create(character=character, judge_model=judge_model)
    steps = 0
    for position, scenario in enumerate(scenarios, 1):
        result = ScenarioResult.objects.create(
            run=run, scenario=scenario, position=position, name=scenario.name, goal=scenario.goal
        )
        turns = [
            TurnResult(
                tenant_id=run.tenant_id,
                scenario_result=result,
                position=turn.position,
                input_text=turn.input_text,
                expected_output_text=turn.expected_output_text,
                evaluation_criteria=turn.evaluation_criteria,
                evaluation_function=turn.evaluation_function,
            )
            for turn in scenario.turns.all()
        ]
        TurnResult.objects.bulk_create(turns)
        steps += sum(1 + is_judged(turn) for turn in turns) + bool(scenario.goal.strip())
    run.steps_total = steps
    run.save(update_fields=["steps_total"])
    return run


def execute(run_id: int) -> str:
    """Run a queued run to its end (a Celery worker's job), or resume one whose worker was lost
    (docs/evaluation.md#lost-workers); a run another worker holds raises lease.RunLeased, and
    a finished one is left alone."""
    token = lease.take(run_id)
    if token is None:
        return "nothing to do"
    run = EvaluationRun.objects.select_related("character").get(pk=run_id)
    if run.attempts > 1:  # resumed: count only what the lost worker's rows show done
        EvaluationRun.objects.filter(lease.ours(run.pk, token)).update(
            steps_done=steps_recorded(run)
        )
        logger.warning("evaluation run %s resumed (attempt %s)", run.pk, run.attempts)
    # The credential of an evaluation: its tenant, and the run's character only.
    caller = Caller(tenant_id=run.tenant_id, character_ids=frozenset({run.character_id}))
    try:
        character = find_character(caller, run.character.slug)
    except Rejected as refused:
        return _finish(run, token, EvaluationRun.Status.FAILED, f"{refused.message} (inactive?)")
    try:
        with lease.held(run.pk, token):
            for result in run.results.prefetch_related("turns"):
                async_to_sync(ScenarioRun(run, token, caller, character, result).go)()
    except lease.LeaseLost:
        logger.warning("evaluation run %s: lease lost to another worker; stopped", run.pk)
        return "lease lost"
    except Exception as exc:
        logger.exception("evaluation run %s failed", run.pk)
        return _finish(run, token, EvaluationRun.Status.FAILED, f"{type(exc).__name__}: {exc}")
    return _finish(run, token, EvaluationRun.Status.DONE)


def _finish(run: EvaluationRun, token: uuid.UUID, status: str, error: str = "") -> str:
    EvaluationRun.objects.filter(lease.ours(run.pk, token)).update(
        status=status,
        error=error,
        finished_at=timezone.now(),
        steps_done=F("steps_total"),
        leased_until=None,
    )
    logger.info("evaluation run %s %s %s", run.pk, status, error)
    return status


def steps_recorded(run: EvaluationRun) -> int:
    """The steps a run's rows show done: each turn said, each turn's verdict asked for, each
    goal judged."""
    turns = TurnResult.objects.filter(scenario_result__run=run)
    said = sum(turn.turn_record_id is not None for turn in turns)
    judged = sum(is_judged(turn) and turn.passed is not None for turn in turns)
    return said + judged + run.results.filter(goal_passed__isnull=False).count()


@dataclass
class ScenarioRun:
    """One scenario of a run. Resumed after a lost worker, it goes on from its rows: turns
    with a turn record were said (a failed one ends the scenario again), verdicts given are
    kept, and the history the LLM sees is rebuilt from the answers recorded."""

    run: EvaluationRun
    token: uuid.UUID
    caller: Caller
    character: Character
    result: ScenarioResult
    history: list[ChatMessage] = field(default_factory=list)
    provider_state: dict[str, Any] = field(default_factory=dict)

    async def go(self) -> None:
        session, context_id = await sync_to_async(self.admit)()
        self.provider_state = dict(self.result.provider_state)
        turns = list(self.result.turns.all())
        said: list[TurnResult] = []
        for turn in turns:
            if turn.turn_record_id is None:
                answered = await self.say(session, context_id, turn)
            else:  # said before this worker took the run over
                answered = not turn.error
                if answered:
                    self.remember(turn)
            if not answered:
                self.result.error = f"Turn {turn.position} failed: {turn.error}"
                break
            said.append(turn)
        for turn in said:
            if (is_judged(turn) or turn.evaluation_function) and turn.passed is None:
                await self.judge_turn(turn)
        if self.result.goal.strip() and len(said) == len(turns) and self.result.goal_passed is None:
            verdict = await self.ask(
                judge.GOAL_PROMPT,
                judge.goal_question(
                    [(t.input_text, t.actual_output_text) for t in said], self.result.goal
                ),
            )
            self.result.goal_passed, self.result.goal_reason = verdict.passed, verdict.reason
            await sync_to_async(self.result.save)()
            await self.step()
        await sync_to_async(self.result.save)()

    def admit(self) -> tuple[AdmittedSession, uuid.UUID]:
        """The scenario's own end user (flagged as evaluation's) and a new conversation, or
        the ones a lost worker began."""
        session, context = admit(
            self.caller,
            self.character,
            channel=EVALUATION_CHANNEL,
            user_id=f"run-{self.run.pk}-scenario-{self.result.pk}",
            session_id=f"evaluation-{self.run.pk}-{self.result.pk}",
        )
        if self.result.context_id is not None:
            return session, self.result.context_id
        end_user = session.end_user
        end_user.metadata = {**end_user.metadata, "evaluation_run": self.run.pk}
        end_user.display_name = f"Evaluation run {self.run.pk}: {self.result.name}"[:100]
        end_user.save(update_fields=["metadata", "display_name", "updated_at"])
        self.result.end_user = end_user
        self.result.context_id = context.context_id
        self.result.save(update_fields=["end_user", "context_id"])
        return session, context.context_id

    def remember(self, turn: TurnResult) -> None:
        self.history += [
            ChatMessage(role="user", content=turn.input_text),
            ChatMessage(role="assistant", content=turn.actual_output_text),
        ]

    async def say(self, session: AdmittedSession, context_id: uuid.UUID, turn: TurnResult) -> bool:
        """One turn through the pipeline; False when it did not complete."""
        opened = OpenedContext(context_id, list(self.history), self.provider_state)
        request = session.turn(
            opened, text=turn.input_text, speak=False, allow_merge=False, keep_history=False
        )
        turn.turn_record_id = request.turn_id
        answer: str | None = None
        async for event in run_turn(request):
            if isinstance(event, TurnToolCall) and event.result is not None:
                call = {"id": event.call_id, "name": event.name, "arguments": event.arguments}
                turn.tool_calls.append({**call, "result": event.result.data})
            elif isinstance(event, TurnFinished):
                answer = event.text
            elif isinstance(event, TurnFailed | TurnDropped):
                turn.error = event.error if isinstance(event, TurnFailed) else event.reason
        if answer is not None:
            turn.actual_output_text = answer
            self.remember(turn)
        else:
            turn.error = turn.error or "The turn ended without an answer."
        await sync_to_async(self.record_said)(turn)
        await self.step()
        return answer is not None

    @transaction.atomic
    def record_said(self, turn: TurnResult) -> None:
        """The turn and the provider's memory after it, together: a resumed run neither says
        it again nor continues from an older provider state."""
        turn.save()
        if self.provider_state != self.result.provider_state:
            self.result.provider_state = dict(self.provider_state)
            self.result.save(update_fields=["provider_state"])

    async def judge_turn(self, turn: TurnResult) -> None:
        verdict: Verdict | None = None
        if is_judged(turn):
            verdict = await self.ask(
                judge.TURN_PROMPT,
                judge.turn_question(
                    turn.input_text,
                    turn.actual_output_text,
                    turn.tool_calls,
                    turn.expected_output_text,
                    turn.evaluation_criteria,
                ),
            )
        if turn.evaluation_function:
            verdict = await sync_to_async(self.apply_function)(turn, verdict)
        if verdict is not None:
            turn.passed, turn.reason = verdict.passed, verdict.reason
        await sync_to_async(turn.save)()
        if is_judged(turn):  # counted once the verdict is kept, so a resumed run counts it
            await self.step()

    def apply_function(self, turn: TurnResult, verdict: Verdict | None) -> Verdict:
        judged = JudgedTurn(
            input_text=turn.input_text,
            expected_output_text=turn.expected_output_text,
            evaluation_criteria=turn.evaluation_criteria,
            actual_output_text=turn.actual_output_text,
            tool_calls=turn.tool_calls,
            judge=verdict,
        )
        try:
            return load_function(turn.evaluation_function)(judged)
        except Exception as exc:  # the operator's code: its failure is this turn's verdict
            return Verdict(False, f"{turn.evaluation_function} failed: {exc}")

    async def ask(self, prompt: str, question: str) -> Verdict:
        model = judge.judge_model(self.character, self.run.judge_model)
        try:
            return await judge.ask(self.character, model, prompt, question)
        except LLMError as exc:
            return Verdict(False, f"The judge could not answer: {exc}")

    async def step(self) -> None:
        """Count a step done, while the run is still this worker's (else stop: LeaseLost)."""
        mine = lease.ours(self.run.pk, self.token)
        if not await EvaluationRun.objects.filter(mine).aupdate(steps_done=F("steps_done") + 1):
            raise lease.LeaseLost(f"evaluation run {self.run.pk}")
