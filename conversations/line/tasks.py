"""Celery tasks of the LINE transport: thin, the work is in `handling`."""

from __future__ import annotations

from typing import Any

from celery import Task, shared_task

from . import handling, lost


@shared_task(name="line.process_events", ignore_result=True)
def process_events(channel_id: int, events: list[dict[str, Any]]) -> None:
    """One webhook's events. With acks_late a worker lost mid-way gets the task redelivered;
    the events' unique rows keep any of them from being answered twice."""
    handling.process_events(channel_id, events)


@shared_task(name="line.start_conversation", bind=True)
def start_conversation(self: Task, channel_id: int, to: str, instruction: str) -> dict[str, str]:
    """The task id seeds the push's retry key: if a redelivered task runs the turn again,
    LINE still accepts its message only once."""
    status, outcome = handling.start_conversation(channel_id, to, instruction, key=self.request.id)
    return {"status": status, "outcome": outcome}


@shared_task(name="line.fail_lost_events", ignore_result=True)
def fail_lost_events() -> int:
    """The beat entry (every minute): events whose worker was lost are failed, and the users
    owed an answer get the character's apology."""
    return lost.fail_lost_events()
