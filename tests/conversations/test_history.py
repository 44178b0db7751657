"""Writing a finished turn (save_turn): the record always, a completed turn's messages at the
next positions of its conversation, created with its first turn, all or nothing."""

from __future__ import annotations

import threading
import uuid
from typing import Any

import pytest
from django.db import connection

from characters.models import Character
from conversations.history import resolve_end_user, save_turn
from conversations.llm import ChatMessage
from conversations.models import Context, EndUser, Message, TurnRecord

pytestmark = pytest.mark.django_db


def turn(character: Character, end_user: EndUser, context_id: uuid.UUID, said: str) -> TurnRecord:
    return TurnRecord(
        character=character,
        end_user=end_user,
        context_id=context_id,
        channel="http",
        status=TurnRecord.Status.COMPLETED,
        request_text=said,
        response_text=f"About {said}.",
        tenant_id=character.tenant_id,
    )


def exchange(said: str) -> list[ChatMessage]:
    return [
        ChatMessage(role="user", content=said),
        ChatMessage(role="assistant", content=f"About {said}."),
    ]


def test_turns_fill_their_conversation_in_order(character: Character) -> None:
    end_user = resolve_end_user(character.tenant_id, "http", "alice")
    context_id = uuid.uuid4()

    first = turn(character, end_user, context_id, "cats")
    save_turn(first, end_user, exchange("cats"), {"conversation_id": "a"})
    created = Context.objects.get(pk=context_id)
    second = turn(character, end_user, context_id, "dogs")
    save_turn(second, end_user, exchange("dogs"), {"conversation_id": "b"})

    context = Context.objects.get(pk=context_id)
    assert (context.tenant_id, context.character_id, context.end_user_id, context.channel) == (
        character.tenant_id,
        character.pk,
        end_user.pk,
        "http",
    )
    assert context.message_count == 4 and context.provider_state == {"conversation_id": "b"}
    assert context.created_at == created.created_at and context.updated_at > created.updated_at
    rows = list(context.messages.order_by("position").values_list("position", "content", "turn"))
    assert rows == [
        (0, "cats", first.pk),
        (1, "About cats.", first.pk),
        (2, "dogs", second.pk),
        (3, "About dogs.", second.pk),
    ]
    assert set(Message.objects.values_list("tenant_id", flat=True)) == {character.tenant_id}


def test_a_turn_without_messages_writes_only_its_record(character: Character) -> None:
    end_user = resolve_end_user(character.tenant_id, "http", "alice")
    record = turn(character, end_user, uuid.uuid4(), "cats")
    record.status = TurnRecord.Status.FAILED

    save_turn(record, end_user, None)

    assert TurnRecord.objects.filter(pk=record.pk).exists()
    assert not Context.objects.exists() and not Message.objects.exists()


def test_a_failed_write_leaves_nothing(character: Character) -> None:
    end_user = resolve_end_user(character.tenant_id, "http", "alice")
    context_id = uuid.uuid4()
    save_turn(turn(character, end_user, context_id, "cats"), end_user, exchange("cats"))
    broken = turn(character, end_user, context_id, "dogs")
    # The last write fails (a set is no JSON), after the record and the context's count.
    no_json: Any = {"not", "json"}
    said = [ChatMessage(role="user", content="dogs", files=[{"url": no_json}])]

    with pytest.raises(TypeError):
        save_turn(broken, end_user, said)

    context = Context.objects.get(pk=context_id)
    assert context.message_count == 2 and context.messages.count() == 2
    assert not TurnRecord.objects.filter(pk=broken.pk).exists()


@pytest.mark.django_db(transaction=True)
def test_concurrent_turns_of_one_conversation_take_distinct_positions(
    character: Character,
) -> None:
    end_user = resolve_end_user(character.tenant_id, "http", "alice")
    context_id = uuid.uuid4()
    failures: list[BaseException] = []

    def write(said: str) -> None:
        try:
            save_turn(turn(character, end_user, context_id, said), end_user, exchange(said))
        except BaseException as exc:
            failures.append(exc)
        finally:
            connection.close()

    writers = [threading.Thread(target=write, args=(f"topic {n}",)) for n in range(4)]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join()

    assert failures == []
    context = Context.objects.get(pk=context_id)
    positions = sorted(context.messages.values_list("position", flat=True))
    assert context.message_count == 8 and positions == list(range(8))
    # Each turn's two messages sit next to each other.
    for record in TurnRecord.objects.filter(context_id=context_id):
        mine = sorted(record.messages.values_list("position", flat=True))
        assert mine[1] == mine[0] + 1 and mine[0] % 2 == 0
