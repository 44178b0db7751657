"""The character's turn hooks (docs/turn.md#hooks), its time limit and Python guardrails, in
process against the fake LLM: on_error tells a content-filter refusal from an outage, the
response hook rewrites sentences, on_finish runs after a completed turn, and a turn over its
time limit fails with the apology and keeps no history."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.core.exceptions import ValidationError
from pytest_django.fixtures import Settings

from characters.models import Character
from conversations.models import Context, Guardrail, Message, TurnRecord
from conversations.pipeline import turn as stages
from conversations.pipeline.events import TurnChunk, TurnFailed, TurnFinished
from tests.conversations import turn_hooks
from tests.conversations.test_turn_stages import collect, request_for
from tests.fakes.openai_server import FakeOpenAI, ScriptedReply
from tests.inprocess import InProcessApp

pytestmark = pytest.mark.django_db

HOOKS = "tests.conversations.turn_hooks"


@pytest.fixture
def hooked(
    app: InProcessApp, character: Character, fake_llm: FakeOpenAI, settings: Settings
) -> Iterator[Character]:
    settings.TURN_HOOK_MODULES = [HOOKS]
    turn_hooks.finished.clear()
    yield character
    turn_hooks.finished.clear()


def run(character: Character, text: str = "Hi", **inputs: Any) -> list[Any]:
    return collect(stages.run_turn(request_for(character, text=text, **inputs)))


def said(events: list[Any]) -> str:
    return "".join(e.text for e in events if isinstance(e, TurnChunk))


def test_on_error_answers_a_content_filter_refusal_in_its_own_words_and_an_outage_as_usual(
    hooked: Character, fake_llm: FakeOpenAI
) -> None:
    hooked.on_error_hook = f"{HOOKS}.content_filter_apology"
    hooked.apology = "Sorry, I am not feeling well."
    hooked.save()
    fake_llm.script(ScriptedReply(status=400, code="content_filter", text="Filtered."))

    refused = run(hooked)

    assert said(refused) == turn_hooks.CONTENT_FILTER_APOLOGY
    assert isinstance(refused[-1], TurnFailed)
    assert refused[-1].error == "LLM provider returned HTTP 400"  # the body stays inside
    fake_llm.script(ScriptedReply(status=500, repeat=5))

    outage = run(hooked)

    assert said(outage) == "Sorry, I am not feeling well."
    assert isinstance(outage[-1], TurnFailed)
    assert Message.objects.count() == 0


def test_an_on_error_hook_that_raises_leaves_the_usual_apology(
    hooked: Character, fake_llm: FakeOpenAI
) -> None:
    hooked.on_error_hook = f"{HOOKS}.failing_apology"
    hooked.save()
    fake_llm.script(ScriptedReply(status=400, code="content_filter"))

    events = run(hooked)

    assert said(events) == hooked.apology
    assert isinstance(events[-1], TurnFailed)


def test_the_response_hook_rewrites_sentences_before_they_are_shown_spoken_and_kept(
    hooked: Character, fake_llm: FakeOpenAI
) -> None:
    hooked.response_hook = f"{HOOKS}.loud"
    hooked.save()
    fake_llm.script(ScriptedReply(text="Hello there. The weather is fine."))

    events = run(hooked)

    chunks = [e for e in events if isinstance(e, TurnChunk)]
    assert [c.text for c in chunks] == ["Hello there. ", "THE WEATHER IS FINE."]
    assert chunks[1].voice_text == "THE WEATHER IS FINE."
    assert isinstance(events[-1], TurnFinished)
    assert events[-1].text == "Hello there. THE WEATHER IS FINE."
    assert Message.objects.get(role="assistant").content == "Hello there. THE WEATHER IS FINE."


def test_a_response_hook_that_raises_fails_the_turn_without_history(
    hooked: Character, fake_llm: FakeOpenAI
) -> None:
    hooked.response_hook = f"{HOOKS}.failing_rewrite"
    hooked.save()

    events = run(hooked)

    assert isinstance(events[-1], TurnFailed)
    assert "RuntimeError" in events[-1].error
    assert Message.objects.count() == 0


def test_on_finish_runs_once_after_a_completed_turn_only(
    hooked: Character, fake_llm: FakeOpenAI
) -> None:
    hooked.on_finish_hook = f"{HOOKS}.note_finish"
    hooked.save()
    fake_llm.script(ScriptedReply(text="Fine, thanks."), ScriptedReply(status=500, repeat=5))

    done = run(hooked)
    run(hooked, "Again")

    assert isinstance(done[-1], TurnFinished)
    assert turn_hooks.finished == [(str(Context.objects.get().id), "Fine, thanks.")]


@pytest.mark.parametrize(
    ("path", "problem"),
    [
        ("os.system", "not one of the TURN_HOOK_MODULES"),
        (f"{HOOKS}.missing", "cannot be imported"),
        (f"{HOOKS}.not_async", "not an async function"),
    ],
)
def test_a_hook_must_be_an_async_function_of_the_allowed_modules(
    hooked: Character, path: str, problem: str
) -> None:
    hooked.on_finish_hook = path
    with pytest.raises(ValidationError) as refused:
        hooked.full_clean()
    assert problem in str(refused.value.message_dict["on_finish_hook"])


def test_a_hook_whose_module_left_the_allow_list_fails_the_turn_before_the_llm(
    hooked: Character, fake_llm: FakeOpenAI, settings: Settings
) -> None:
    hooked.response_hook = f"{HOOKS}.loud"
    hooked.save()
    settings.TURN_HOOK_MODULES = []

    events = run(hooked)

    assert [type(e) for e in events] == [TurnFailed]
    assert "not one of the TURN_HOOK_MODULES" in events[0].error
    assert fake_llm.requests == []


def test_a_turn_over_its_time_limit_apologises_fails_and_keeps_no_history(
    hooked: Character, fake_llm: FakeOpenAI
) -> None:
    hooked.invoke_timeout_seconds = 0.5
    hooked.on_error_hook = f"{HOOKS}.content_filter_apology"
    hooked.save()
    # The first sentence arrives in time; the rest would take seconds.
    fake_llm.script(
        ScriptedReply(chunks=["Let me think. ", "Hmm ", "still ", "thinking."], chunk_delay=1.0)
    )

    events = run(hooked)

    assert isinstance(events[-1], TurnFailed)
    assert "time limit" in events[-1].error
    assert said(events).endswith(hooked.apology)  # the hook found no content filter
    record = TurnRecord.objects.get()
    assert record.status == TurnRecord.Status.FAILED and "time limit" in record.error
    assert Message.objects.count() == 0 and Context.objects.count() == 0


def test_a_python_guardrail_blocks_with_its_own_message_or_the_rows(
    hooked: Character, fake_llm: FakeOpenAI
) -> None:
    guardrail = Guardrail(
        name="passwords",
        kind=Guardrail.Kind.PYTHON,
        class_path=f"{HOOKS}.NoPasswords",
        applies_to=Guardrail.AppliesTo.REQUEST,
        action=Guardrail.Action.BLOCK,
        message="Not that.",
    )
    guardrail.full_clean(exclude=["tenant"])
    guardrail.save()

    own = run(hooked, "Tell me your password")
    row = run(hooked, "Something forbidden")
    passed = run(hooked, "Hello")

    assert said(own) == "Mia never shares passwords."
    assert said(row) == "Not that."
    assert [e.guardrail for e in own if isinstance(e, TurnChunk)] == ["passwords"]
    assert isinstance(passed[-1], TurnFinished) and passed[-1].text
    assert len(fake_llm.requests) == 1  # only the request that passed reached the LLM


@pytest.mark.parametrize(
    ("path", "problem"),
    [
        ("os.path.join", "not one of the TURN_HOOK_MODULES"),
        (f"{HOOKS}.NotAGuardrail", "not a class with an async check"),
        (f"{HOOKS}.loud", "not a class with an async check"),
        ("", "needs a class"),
    ],
)
def test_a_python_guardrail_must_name_a_class_with_an_async_check(
    hooked: Character, path: str, problem: str
) -> None:
    guardrail = Guardrail(
        name="g", kind="python", class_path=path, applies_to="both", action="block", message="No."
    )
    with pytest.raises(ValidationError) as refused:
        guardrail.full_clean(exclude=["tenant"])
    assert problem in str(refused.value.message_dict["class_path"])


def test_on_chat_a_hook_refused_since_it_was_saved_is_an_error_event(
    hooked: Character, fake_llm: FakeOpenAI, settings: Settings, app: InProcessApp, api_key: str
) -> None:
    hooked.on_finish_hook = f"{HOOKS}.note_finish"
    hooked.save()
    settings.TURN_HOOK_MODULES = []
    body = {"type": "start", "session_id": "s1", "user_id": "u1", "text": "Hi"}

    result = app.post_sse("/chat", body, key=api_key)

    assert result.status == 200 and result.types == ["error"]
    assert "not one of the TURN_HOOK_MODULES" in result.events[0]["metadata"]["error"]
    assert fake_llm.requests == [] and turn_hooks.finished == []


def test_on_chat_a_turn_over_its_time_limit_says_the_apology_then_an_error_event(
    hooked: Character, fake_llm: FakeOpenAI, app: InProcessApp, api_key: str
) -> None:
    hooked.invoke_timeout_seconds = 0.3
    hooked.apology = "Sorry, that took too long."
    hooked.save()
    fake_llm.script(ScriptedReply(text="Slow answer.", delay=2.0))
    body = {"type": "start", "session_id": "s1", "user_id": "u1", "text": "Hi"}

    result = app.post_sse("/chat", body, key=api_key)

    assert result.types == ["start", "chunk", "error"]
    assert result.events[1]["text"] == "Sorry, that took too long."
    assert "time limit" in result.events[2]["metadata"]["error"]
    assert result.events[2]["transaction_id"] == result.events[0]["transaction_id"]
    assert Message.objects.count() == 0


def test_on_chat_a_stage_that_raises_before_the_llm_fails_the_turn_with_an_error_event(
    hooked: Character,
    fake_llm: FakeOpenAI,
    settings: Settings,
    app: InProcessApp,
    api_key: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Not a stream that just stops: an unforeseen failure of an early stage (a request
    validator with a bug) is logged, recorded and ends the stream with `error`."""
    settings.REQUEST_VALIDATORS = [f"{HOOKS}.failing_validator"]
    body = {"type": "start", "session_id": "s1", "user_id": "u1", "text": "Hi"}

    result = app.post_sse("/chat", body, key=api_key)

    assert result.status == 200 and result.types == ["error"]
    assert result.events[0]["metadata"]["error"] == (
        "Internal error in the conversation pipeline (RuntimeError)"
    )
    record = TurnRecord.objects.get()
    assert record.status == TurnRecord.Status.FAILED and "RuntimeError" in record.error
    assert fake_llm.requests == [] and Message.objects.count() == 0
    assert "the validator broke" in caplog.text
