"""A deleted run takes what it wrote elsewhere with it: each scenario's evaluation end user
(its channel identity and session rows follow) and the turn records of its conversation."""

from __future__ import annotations

from typing import Any

from django.db.models.signals import post_delete
from django.dispatch import receiver

from conversations.models import EVALUATION_CHANNEL, EndUser, TurnRecord

from .models import ScenarioResult


@receiver(post_delete, sender=ScenarioResult, dispatch_uid="evaluation.result_deleted")
def forget_result(sender: type[ScenarioResult], instance: ScenarioResult, **_: Any) -> None:
    if instance.context_id is not None:
        TurnRecord.objects.filter(
            channel=EVALUATION_CHANNEL, context_id=instance.context_id
        ).delete()
    if instance.end_user_id is not None:
        # Only ever an end user the run made: on the evaluation channel, named for the run.
        EndUser.objects.filter(
            pk=instance.end_user_id,
            identities__channel=EVALUATION_CHANNEL,
            metadata__evaluation_run=instance.run_id,
        ).delete()
