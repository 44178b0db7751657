"""LINE events whose worker was lost (killed, or its machine gone) while handling them.

Their lease (`LineEvent.leased_until`, renewed while a worker handles the event) has run out
with the event still `processing`. The beat fails each one, and when the user was owed an
answer that never went out, pushes the character's apology to the chat. The status change
that takes the event from `processing` is conditional, so of concurrent sweeps only one
apologises, and the push carries a retry key of the event's own, so LINE accepts it once.
"""

from __future__ import annotations

import logging

from django.db.models import Q
from django.utils import timezone

from avatarsite.tenants.provider_secrets import load_secrets

from .client import LineApi
from .handling import KIND_OF_PREFIX, Chat, Scope
from .models import LineChannel, LineEvent
from .replies import compose

logger = logging.getLogger(__name__)

Status = LineEvent.Status
Answer = LineEvent.Answer


def fail_lost_events() -> int:
    """Fail every event whose lease ran out; apologise where an answer was owed. Returns how
    many events were taken from `processing`."""
    now = timezone.now()
    lost = LineEvent.objects.filter(status=Status.PROCESSING).filter(
        Q(leased_until__lt=now) | Q(leased_until__isnull=True)
    )
    taken = 0
    for event in lost.select_related("channel__character__voice"):
        answered = event.answer == Answer.SENT
        status = Status.DONE if answered else Status.FAILED
        outcome = (
            "answered; the worker was lost before recording it"
            if answered
            else "the worker handling it was lost (its lease ran out)"
        )
        mine = LineEvent.objects.filter(pk=event.pk, status=Status.PROCESSING).update(
            status=status, outcome=outcome, finished_at=now, leased_until=None
        )
        if not mine:  # another sweep, or the worker itself, got there first
            continue
        taken += 1
        if event.answer == Answer.OWED:
            outcome = f"{outcome}; {_apologise(event)}"
            LineEvent.objects.filter(pk=event.pk).update(outcome=outcome)
        logger.warning("line event id=%s lost: %s", event.webhook_event_id, outcome)
    return taken


def _apologise(event: LineEvent) -> str:
    """Push the character's apology to the event's chat, keyed so LINE takes it once."""
    channel: LineChannel = event.channel
    if not channel.is_active or event.source_id[:1] not in KIND_OF_PREFIX:
        return "no apology: the channel is inactive or the chat unknown"
    try:
        load_secrets(channel.character)
        chat = Chat.with_id(event.source_id, key=f"apology:{event.webhook_event_id}")
        scope = Scope(channel, LineApi(channel), chat, event)
        sent = scope.send(compose(channel.character, channel.character.apology))
    except Exception as exc:
        logger.exception("apology for lost LINE event %s failed", event.webhook_event_id)
        return f"apology failed: {type(exc).__name__}: {exc}"
    return f"apology {sent}"
