"""How memories are written as things happen elsewhere, without those apps knowing memory:
a completed turn, a diary saved or deleted. Each only writes a row (in the same transaction
as what caused it); embedding and summarising happen later, on the memory tick."""

from __future__ import annotations

from datetime import date
from typing import Any

from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver
from django.utils import timezone

from characters.models import Character, Diary
from characters.signals import diary_saved
from conversations.models import EVALUATION_CHANNEL, TurnRecord

from .models import MemoryItem
from .store import Owner, add_turn, character_key, upsert_diary, user_key


@receiver(post_save, sender=TurnRecord, dispatch_uid="memory.turn_completed")
def remember_turn(sender: type[TurnRecord], instance: TurnRecord, created: bool, **_: Any) -> None:
    if not created or instance.status != TurnRecord.Status.COMPLETED:
        return
    if instance.channel == EVALUATION_CHANNEL:  # an evaluation's turn is nobody's memory
        return
    end_user = instance.end_user
    if end_user is None or not (instance.request_text or instance.response_text):
        return
    character = instance.character
    add_turn(
        instance.tenant_id,
        Owner(user_key(end_user, character), character, end_user),
        user_text=instance.request_text,
        reply=instance.response_text,
        session_id=str(instance.context_id),
        channel=instance.channel,
        occurred_at=instance.started_at,
        source={"turn": str(instance.pk), "channel": instance.channel},
    )


@receiver(diary_saved, dispatch_uid="memory.diary_saved")
def remember_diary(
    sender: type[Diary],
    diary_id: int,
    character_id: int,
    diary_date: str,
    content: str,
    topics: list[str],
    origin: str,
    **_: Any,
) -> None:
    character = Character.objects.filter(pk=character_id).first()
    if character is None:
        return
    upsert_diary(
        character.tenant_id,
        Owner(character_key(character), character),
        date.fromisoformat(diary_date),
        content,
        metadata={"topics": topics},
        source={"diary": diary_id, "origin": origin},
    )
    # update(): saving the diary would announce it again.
    Diary.objects.filter(pk=diary_id).update(memory_synced_at=timezone.now())


@receiver(post_delete, sender=Diary, dispatch_uid="memory.diary_deleted")
def forget_diary(sender: type[Diary], instance: Diary, **_: Any) -> None:
    MemoryItem.objects.filter(
        kind=MemoryItem.Kind.DIARY,
        character_id=instance.character_id,
        diary_date=instance.diary_date,
    ).delete()
