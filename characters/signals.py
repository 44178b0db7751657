"""`diary_saved`: how other apps (memory) learn that a diary was written or edited.

Sent once the transaction that saved the diary has committed, so a receiver that enqueues work
(say, indexing the diary into long-term memory) never sees a diary that was rolled back, and
sent for every save: generated, edited in the admin, or imported.

Payload (keyword arguments besides `sender`, which is the Diary class), plain values only so a
receiver can hand them to a Celery task as they are:

    diary_id       int    primary key of the Diary
    character_id   int    primary key of the Character
    character_slug str
    diary_date     str    the character's local date, YYYY-MM-DD
    content        str    the diary text
    topics         list[str]
    origin         str    "generated", "manual" or "imported"
    created        bool   True the first time this diary row is saved
"""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.db.models.signals import post_save
from django.dispatch import Signal, receiver

from .models import Diary

diary_saved = Signal()


@receiver(post_save, sender=Diary, dispatch_uid="characters.diary_saved")
def _announce_diary(sender: type[Diary], instance: Diary, created: bool, **kwargs: Any) -> None:
    payload = {
        "diary_id": instance.pk,
        "character_id": instance.character_id,
        "character_slug": instance.character.slug,
        "diary_date": instance.diary_date.isoformat(),
        "content": instance.content,
        "topics": list(instance.topics),
        "origin": instance.origin,
        "created": created,
    }
    transaction.on_commit(lambda: diary_saved.send(sender=Diary, **payload))
