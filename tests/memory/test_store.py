"""What is written to memory and when: turns, diaries, knowledge; deleting and forgetting."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from characters.models import Character, Diary
from conversations.models import EndUser, TurnRecord
from memory.models import MemoryItem, MemorySettings
from memory.store import Owner, resolve_key, upsert_knowledge, user_key
from memory.tasks import forget_expired

pytestmark = pytest.mark.django_db


def turn(character: Character, end_user: EndUser, text: str, **fields: object) -> TurnRecord:
    values: dict[str, object] = {
        "context_id": "6f2c7f0e-2f4b-4c57-8a36-6f4ea3f7f0aa",
        "channel": "line",
        "request_text": text,
        "response_text": "I see.",
        "status": TurnRecord.Status.COMPLETED,
        **fields,
    }
    record = TurnRecord(character=character, end_user=end_user, **values)
    record.save()
    return record


def test_a_completed_turn_is_remembered_under_its_user_and_character(
    character: Character, hana: EndUser
) -> None:
    record = turn(character, hana, "My dog is called Pochi.")
    turn(character, hana, "never mind", status=TurnRecord.Status.FAILED)

    [item] = MemoryItem.objects.all()
    assert item.kind == MemoryItem.Kind.TURN
    assert item.key == f"{hana.id}_mia"
    assert (item.character, item.end_user, item.tenant) == (character, hana, character.tenant)
    assert (item.content, item.reply, item.channel) == ("My dog is called Pochi.", "I see.", "line")
    assert item.source == {"turn": str(record.pk), "channel": "line"}
    assert item.occurred_at == record.started_at
    assert item.index_state == MemoryItem.Index.PENDING


def test_a_diary_is_remembered_once_per_date_and_forgotten_with_it(
    character: Character, django_capture_on_commit_callbacks: Any
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        diary = Diary.objects.create(
            character=character, diary_date=date(2026, 8, 2), content="Fireworks by the river."
        )
    with django_capture_on_commit_callbacks(execute=True):
        diary.content = "Fireworks by the river, with Yui."
        diary.save()

    [item] = MemoryItem.objects.all()
    assert (item.kind, item.key, item.end_user) == (MemoryItem.Kind.DIARY, "mia", None)
    assert item.diary_date == date(2026, 8, 2)
    assert item.content == "Fireworks by the river, with Yui."
    diary.refresh_from_db()
    assert diary.memory_synced_at is not None

    diary.delete()
    assert not MemoryItem.objects.exists()


def test_a_corrected_fact_replaces_the_old_one_and_keeps_where_both_came_from(
    character: Character, hana: EndUser
) -> None:
    owner = Owner(user_key(hana, character), character, hana)
    first, created = upsert_knowledge(
        character.tenant_id, owner, "Pet name", "Her dog is Pochi.", source={"session_id": "a"}
    )
    again, created_again = upsert_knowledge(
        character.tenant_id, owner, " pet  NAME ", "Her dog is Taro.", source={"session_id": "b"}
    )

    assert (created, created_again) == (True, False)
    [fact] = MemoryItem.objects.filter(kind=MemoryItem.Kind.KNOWLEDGE)
    assert fact.pk == first.pk == again.pk
    assert (fact.subject, fact.content) == ("pet name", "Her dog is Taro.")
    assert fact.source["session_id"] == "b"
    assert [p["content"] for p in fact.source["previous"]] == ["Her dog is Pochi."]
    assert fact.source["previous"][0]["session_id"] == "a"


def test_deleting_an_end_user_erases_their_memory_only(character: Character, hana: EndUser) -> None:
    other = EndUser.objects.create(tenant=character.tenant)
    turn(character, hana, "I live in Osaka.")
    turn(character, other, "I live in Sapporo.")

    hana.delete()

    assert list(MemoryItem.objects.values_list("content", flat=True)) == ["I live in Sapporo."]


def test_retention_forgets_old_unpinned_memories_of_that_character(
    character: Character, hana: EndUser
) -> None:
    MemorySettings.objects.create(character=character, retention_days=30)
    old = timezone.now() - timedelta(days=31)
    turn(character, hana, "old", started_at=old)
    turn(character, hana, "old but pinned", started_at=old)
    turn(character, hana, "recent")
    MemoryItem.objects.filter(content="old but pinned").update(pinned=True)

    assert forget_expired(timezone.now()) == 1
    assert set(MemoryItem.objects.values_list("content", flat=True)) == {
        "old but pinned",
        "recent",
    }


def test_keys_name_the_tenants_own_characters_and_users_only(
    character: Character, globex_character: Character
) -> None:
    created = resolve_key(character.tenant_id, "hana_mia", create=True)
    assert created.character == character and created.end_user is not None
    assert created.key == f"{created.end_user.id}_mia"
    # The client's id and the end user's id reach the same memories.
    assert resolve_key(character.tenant_id, "hana_mia").key == created.key
    assert resolve_key(character.tenant_id, created.key).key == created.key
    assert resolve_key(character.tenant_id, "mia") == Owner("mia", character)
    # Another tenant's "hana" is another person, unknown there until it writes.
    foreign = resolve_key(globex_character.tenant_id, "hana_mia")
    assert (foreign.key, foreign.character, foreign.end_user) == (
        "hana_mia",
        globex_character,
        None,
    )
    assert resolve_key(character.tenant_id, "someone_else") == Owner("someone_else")


def test_staff_see_edit_pin_and_delete_their_tenants_memories_only(
    staff: Client, character: Character, globex_character: Character, hana: EndUser
) -> None:
    turn(character, hana, "私の犬の名前はポチです。")
    stranger = EndUser.objects.create(tenant=globex_character.tenant)
    turn(globex_character, stranger, "Globex secret")
    mine = MemoryItem.objects.get(character=character)
    theirs = MemoryItem.objects.get(character=globex_character)
    MemoryItem.objects.update(index_state=MemoryItem.Index.INDEXED)

    listing = staff.get(reverse("admin:memory_memoryitem_changelist"))
    assert listing.status_code == 200
    assert "ポチ" in listing.content.decode() and "Globex secret" not in listing.content.decode()
    foreign_page = staff.get(reverse("admin:memory_memoryitem_change", args=[theirs.pk]))
    assert foreign_page.status_code == 404

    url = reverse("admin:memory_memoryitem_change", args=[mine.pk])
    form = {
        "kind": "turn",
        "character": character.pk,
        "end_user": hana.pk,
        "subject": "",
        "content": "私の犬の名前はタロウです。",
        "reply": "I see.",
        "occurred_at_0": "2026-08-02",
        "occurred_at_1": "10:00:00",
        "pinned": "on",
        "session_id": mine.session_id,
        "channel": "line",
        "metadata": "{}",
    }
    assert staff.post(url, form).status_code == 302
    mine.refresh_from_db()
    assert (mine.content, mine.pinned) == ("私の犬の名前はタロウです。", True)
    assert mine.index_state == MemoryItem.Index.PENDING  # edited words are embedded again

    api = staff.get("/api/memories/", {"end_user": str(hana.pk)})
    assert [row["id"] for row in api.json()["results"]] == [str(mine.pk)]
    assert staff.get(f"/api/memories/{theirs.pk}/").status_code == 404
    assert staff.delete(f"/api/memories/{theirs.pk}/").status_code == 404
    assert (
        staff.patch(
            f"/api/memories/{mine.pk}/", {"pinned": False}, content_type="application/json"
        ).json()["pinned"]
        is False
    )
    assert staff.delete(f"/api/memories/{mine.pk}/").status_code == 204
    assert list(MemoryItem.objects.all()) == [theirs]
