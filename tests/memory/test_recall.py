"""Characters using their memory in conversations: what a person said on LINE is recalled on
/chat (automatically, and through search_memory) for that person only; quiet conversations
become summaries and knowledge, corrected rather than duplicated."""

from __future__ import annotations

import json
from datetime import date, timedelta
from typing import Any

import pytest
from django.utils import timezone

from characters.models import Character, Diary
from conversations.line.handling import process_events
from conversations.line.models import LineChannel
from conversations.models import ChannelIdentity, EndUser
from memory.models import MemoryItem, MemorySettings
from memory.tasks import index_pending, summarise_quiet
from tests.fakes.line_server import FakeLine, text_event, user_id
from tests.fakes.openai_server import FakeOpenAI, ScriptedReply
from tests.inprocess import InProcessApp

# Committed rows: a LINE turn does its database work on asgiref's thread, with a connection
# of its own (characters/thread_loops.py), as in a Celery worker.
pytestmark = pytest.mark.django_db(transaction=True)


def chat(app: InProcessApp, key: str, user: str, text: str) -> None:
    """A /chat turn that completes."""
    result = app.post_sse(
        "/chat",
        {"type": "start", "session_id": f"s-{user}", "user_id": user, "text": text},
        key=key,
    )
    assert result.status == 200 and result.types[-1] == "final", result.events


def system_prompt(fake: FakeOpenAI) -> str:
    return str(fake.requests[-1]["messages"][0]["content"])


def told_on_line(channel: LineChannel, text: str) -> EndUser:
    """The user says `text` to the character's LINE account; returns that end user, who also
    uses /chat as "hana-web" (accounts linked by the operator)."""
    process_events(channel.pk, [text_event(text, user=user_id(7))])
    end_user = ChannelIdentity.objects.get(channel="line", external_id=user_id(7)).end_user
    ChannelIdentity.objects.get_or_create(
        tenant=end_user.tenant, channel="http", external_id="hana-web", end_user=end_user
    )
    return end_user


def test_a_fact_told_on_line_is_recalled_on_chat_for_that_person_only(
    app: InProcessApp,
    api_key: str,
    character: Character,
    line_channel: LineChannel,
    fake_line: FakeLine,
    fake_llm: FakeOpenAI,
) -> None:
    told_on_line(line_channel, "By the way, my dog is called Pochi.")
    assert fake_line.calls.replies()  # LINE got its answer
    assert index_pending() == 1
    MemorySettings.objects.create(character=character, auto_recall=True)

    chat(app, api_key, "hana-web", "What is my dog's name?")
    assert "my dog is called Pochi" in system_prompt(fake_llm)
    chat(app, api_key, "somebody-else", "What is my dog's name?")
    assert "Pochi" not in system_prompt(fake_llm)

    # Through the tool, with automatic recall off.
    settings = MemorySettings.objects.get(character=character)
    settings.auto_recall = False
    settings.save()  # as the admin does: the configuration cache sees it on the next turn
    for user in ("hana-web", "somebody-else"):
        fake_llm.script(
            ScriptedReply(
                tool_calls=[{"name": "search_memory", "arguments": {"query": "dog's name"}}]
            ),
            ScriptedReply(text="Let me think."),
        )
        chat(app, api_key, user, "Do you remember my dog?")
        assert "Pochi" not in system_prompt(fake_llm)
        result = json.loads(fake_llm.requests[-1]["messages"][-1]["content"])
        if user == "hana-web":
            assert "my dog is called Pochi" in result["answer"]
            assert "line" in result["answer"]  # where it was said
        else:  # only their own earlier question
            assert "Pochi" not in result["answer"] and "somebody" not in result["answer"]
            assert result["answer"].startswith("Conversation (")


def test_recall_stays_within_its_token_budget(
    app: InProcessApp,
    api_key: str,
    character: Character,
    line_channel: LineChannel,
    fake_llm: FakeOpenAI,
) -> None:
    told_on_line(line_channel, "My dog is called Pochi. " + "He loves long walks. " * 40)
    MemorySettings.objects.create(character=character, auto_recall=True, recall_token_budget=50)

    chat(app, api_key, "hana-web", "What is my dog's name?")

    assert "Pochi" not in system_prompt(fake_llm)  # the one memory is over budget: left out


def test_quiet_conversations_become_summaries_and_corrected_knowledge(
    app: InProcessApp,
    character: Character,
    line_channel: LineChannel,
    fake_llm: FakeOpenAI,
) -> None:
    hana = told_on_line(line_channel, "My dog is called Pochi and I live in Osaka.")
    quiet = timezone.now() - timedelta(hours=1)
    MemoryItem.objects.update(occurred_at=quiet)
    fake_llm.script(
        ScriptedReply(
            text=json.dumps(
                {
                    "summary": "Hana talked about her dog Pochi and her home in Osaka.",
                    "facts": [
                        {"subject": "pet name", "fact": "Her dog is called Pochi."},
                        {"subject": "home town", "fact": "She lives in Osaka."},
                    ],
                }
            )
        )
    )

    assert summarise_quiet(timezone.now()) == 1
    assert summarise_quiet(timezone.now()) == 0  # nothing new to summarise

    summary = MemoryItem.objects.get(kind=MemoryItem.Kind.SUMMARY)
    assert summary.end_user == hana and summary.content.startswith("Hana talked")
    facts = MemoryItem.objects.filter(kind=MemoryItem.Kind.KNOWLEDGE).order_by("subject")
    assert [(f.subject, f.content) for f in facts] == [
        ("home town", "She lives in Osaka."),
        ("pet name", "Her dog is called Pochi."),
    ]
    assert facts[0].source["channel"] == "line"
    assert facts[0].source["summary"] == str(summary.pk)
    assert "Pochi" in fake_llm.requests[-1]["messages"][1]["content"]  # the transcript

    # A later LINE conversation corrects the dog's name.
    MemoryItem.objects.filter(kind=MemoryItem.Kind.TURN).update(session_id="older")
    process_events(
        line_channel.pk, [text_event("Sorry, my dog is Taro, not Pochi.", user=user_id(7))]
    )
    MemoryItem.objects.filter(kind=MemoryItem.Kind.TURN).exclude(session_id="older").update(
        session_id="newer", occurred_at=quiet
    )
    fake_llm.script(
        ScriptedReply(
            text='```json\n{"summary": "Hana corrected her dog\'s name: Taro.", "facts": '
            '[{"subject": "Pet name", "fact": "Her dog is called Taro."}]}\n```'
        )
    )
    assert summarise_quiet(timezone.now()) == 1
    facts = MemoryItem.objects.filter(kind=MemoryItem.Kind.KNOWLEDGE).order_by("subject")
    assert [(f.subject, f.content) for f in facts] == [
        ("home town", "She lives in Osaka."),
        ("pet name", "Her dog is called Taro."),
    ]
    assert facts[1].source["previous"][0]["content"] == "Her dog is called Pochi."


def test_a_summary_that_fails_is_tried_again_next_tick(
    app: InProcessApp, character: Character, line_channel: LineChannel, fake_llm: FakeOpenAI
) -> None:
    told_on_line(line_channel, "I start a new job on Monday.")
    MemoryItem.objects.update(occurred_at=timezone.now() - timedelta(hours=1))
    fake_llm.script(ScriptedReply(text="not json at all"), ScriptedReply(status=500, repeat=5))

    assert summarise_quiet(timezone.now()) == 0
    assert summarise_quiet(timezone.now()) == 0
    assert not MemoryItem.objects.filter(kind=MemoryItem.Kind.SUMMARY).exists()

    fake_llm.reset()
    fake_llm.script(ScriptedReply(text='{"summary": "A new job on Monday.", "facts": []}'))
    assert summarise_quiet(timezone.now()) == 1


def test_the_diary_of_a_day_is_found_when_asked_about_that_day(
    app: InProcessApp,
    api_key: str,
    character: Character,
    fake_llm: FakeOpenAI,
    django_capture_on_commit_callbacks: Any,
) -> None:
    character.timezone = "Asia/Tokyo"
    character.save()
    with django_capture_on_commit_callbacks(execute=True):
        for day, text in ((2, "Went to the fireworks with Yui."), (3, "Read all day at home.")):
            Diary.objects.create(character=character, diary_date=date(2026, 8, day), content=text)
    question = {"query": "what did you do", "since": "2026-08-02", "until": "2026-08-02"}
    fake_llm.script(
        ScriptedReply(tool_calls=[{"name": "search_memory", "arguments": question}]),
        ScriptedReply(text="Fireworks!"),
    )

    chat(app, api_key, "hana-web", "What did you do on August 2nd?")

    result = json.loads(fake_llm.requests[-1]["messages"][-1]["content"])
    assert result == {
        "answer": "Diary (2026-08-02): Went to the fireworks with Yui.",
        "retrieved_data": None,
    }
