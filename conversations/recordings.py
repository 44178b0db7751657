"""Conversation audio: what a turn heard and said aloud, kept when its character records.

A turn's `Tape` counts the seconds it speaks (usage, always) and, for a character with
`record_audio` on, keeps the request's speech and every spoken sentence; when the turn is
recorded they are stored as two WAV files through Django's storage API (the `default`
storage: a directory, or S3-compatible object storage by settings, docs/console.md). Names
are random and nothing serves the storage directly: the admin's conversation view plays them
through a view that checks the staff member's tenant. Each tenant keeps them for its
retention period; `purge_expired` (a Celery beat task) deletes older ones, and a turn record
deleted with its character takes its files along.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.core.files.base import ContentFile
from django.utils import timezone

from avatarsite.tenants.models import Tenant

from .models import TurnRecord
from .speech.audio import AudioError, Wav, read_wav, resample_pcm, to_mono, wav_bytes

logger = logging.getLogger(__name__)

AUDIO_FIELDS = ("request_audio", "response_audio")


class Tape:
    """One turn's audio, as it is heard and spoken."""

    def __init__(self, keep: bool) -> None:
        self.keep = keep  # the character records audio
        self.spoken: list[Wav] = []
        self.seconds_spoken: float | None = None  # None: nothing was spoken

    def said(self, audio: bytes) -> None:
        """A spoken sentence's WAV: counted, and kept when recording."""
        if not audio:
            return
        try:
            wav = to_mono(read_wav(audio))
        except AudioError:
            logger.warning("a spoken sentence is not a 16-bit WAV: not counted or recorded")
            return
        self.seconds_spoken = (self.seconds_spoken or 0.0) + wav.duration
        if self.keep:
            self.spoken.append(wav)

    def store(self, record: TurnRecord, heard: bytes | None) -> None:
        """Write the recording's files onto `record` (not saved): the speech heard (PCM16 at
        SPEECH_SAMPLE_RATE) and the sentences spoken, joined. Blocking storage I/O."""
        if not self.keep:
            return
        if heard:
            audio = wav_bytes(heard, settings.SPEECH_SAMPLE_RATE)
            record.request_audio.save("request.wav", ContentFile(audio), save=False)
        if self.spoken:
            audio = joined(self.spoken)
            record.response_audio.save("response.wav", ContentFile(audio), save=False)


def joined(parts: list[Wav]) -> bytes:
    """Mono WAVs one after another, at the first one's sample rate."""
    rate = parts[0].sample_rate
    pcm = b"".join(resample_pcm(part.pcm, part.sample_rate, rate) for part in parts)
    return wav_bytes(pcm, rate)


def delete_files(record: TurnRecord) -> None:
    """Remove the record's audio from the storage (the row keeps its other columns)."""
    for name in AUDIO_FIELDS:
        field = getattr(record, name)
        if field:
            field.storage.delete(field.name)


def delete_with_record(sender: type[TurnRecord], instance: TurnRecord, **kwargs: object) -> None:
    """post_delete of a turn record (connected in conversations/apps.py): its files go too."""
    delete_files(instance)


def purge_expired(now: datetime | None = None) -> int:
    """Delete every recording older than its tenant's retention period; returns how many
    turns lost theirs."""
    now = now or timezone.now()
    purged = 0
    for tenant_id, days in Tenant.objects.values_list("id", "audio_retention_days"):
        expired = TurnRecord.objects.filter(
            tenant_id=tenant_id, started_at__lt=now - timedelta(days=days)
        ).exclude(request_audio="", response_audio="")
        for record in expired.only("id", *AUDIO_FIELDS).iterator(chunk_size=500):
            delete_files(record)
            TurnRecord.objects.filter(pk=record.pk).update(request_audio="", response_audio="")
            purged += 1
    if purged:
        logger.info("deleted the recordings of %d turn(s) past their retention", purged)
    return purged
