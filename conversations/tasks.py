"""Celery tasks of conversations: the recordings' retention (conversations/recordings.py)."""

from __future__ import annotations

from celery import shared_task

from .recordings import purge_expired


@shared_task(name="conversations.tasks.purge_recordings")
def purge_recordings() -> int:
    """Delete the conversation audio older than each tenant's retention period (beat: hourly)."""
    return purge_expired()
