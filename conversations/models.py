"""People who talk to characters, their conversations, and what each turn cost."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from datetime import datetime, timedelta

from django.db import models
from django.utils import timezone

from characters.models import Character


class EndUser(models.Model):
    """A person talking to characters, whatever channel they come from."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    display_name = models.CharField(max_length=100, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.display_name or str(self.id)


class ChannelIdentity(models.Model):
    """How a channel (http, line, ...) names an end user: one external id, one user."""

    channel = models.CharField(max_length=32)
    external_id = models.CharField(max_length=255)
    end_user = models.ForeignKey(EndUser, on_delete=models.CASCADE, related_name="identities")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name_plural = "channel identities"
        constraints = [
            models.UniqueConstraint(fields=["channel", "external_id"], name="unique_identity")
        ]

    def __str__(self) -> str:
        return f"{self.channel}:{self.external_id}"


class Context(models.Model):
    """One conversation thread between a character and an end user.

    Created together with the first completed turn, so an id only exists once it has history.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    character = models.ForeignKey(Character, on_delete=models.CASCADE, related_name="contexts")
    end_user = models.ForeignKey(EndUser, on_delete=models.CASCADE, related_name="contexts")
    channel = models.CharField(max_length=32)
    message_count = models.PositiveIntegerField(default=0, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-updated_at"]

    def __str__(self) -> str:
        return str(self.id)

    def is_expired(self, now: datetime | None = None) -> bool:
        """Idle past the character's timeout: the next turn starts a new context."""
        timeout = self.character.context_timeout_seconds
        if not timeout:
            return False
        return (now or timezone.now()) - self.updated_at > timedelta(seconds=timeout)


class Message(models.Model):
    class Role(models.TextChoices):
        USER = "user"
        ASSISTANT = "assistant"
        TOOL = "tool"

    context = models.ForeignKey(Context, on_delete=models.CASCADE, related_name="messages")
    position = models.PositiveIntegerField()
    role = models.CharField(max_length=16, choices=Role.choices)
    content = models.TextField(blank=True)
    files = models.JSONField(default=list, blank=True, help_text="Attachments: [{url, type}].")
    tool_calls = models.JSONField(
        default=list, blank=True, help_text="Assistant tool calls: [{id, name, arguments}]."
    )
    tool_call_id = models.CharField(max_length=100, blank=True)
    turn = models.ForeignKey(
        "TurnRecord", on_delete=models.SET_NULL, null=True, blank=True, related_name="messages"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["context", "position"]
        constraints = [
            models.UniqueConstraint(fields=["context", "position"], name="unique_message_position")
        ]

    def __str__(self) -> str:
        return f"{self.role}: {self.content[:60]}"


class TurnRecord(models.Model):
    """Every turn, completed or not, with per-phase timings in milliseconds."""

    class Status(models.TextChoices):
        COMPLETED = "completed"
        FAILED = "failed"
        INTERRUPTED = "interrupted"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    character = models.ForeignKey(Character, on_delete=models.CASCADE, related_name="turns")
    end_user = models.ForeignKey(
        EndUser, on_delete=models.SET_NULL, null=True, blank=True, related_name="turns"
    )
    # Not a foreign key: a failed first turn has an id on the wire but no Context row.
    context_id = models.UUIDField(db_index=True)
    session_id = models.CharField(max_length=255, blank=True)
    channel = models.CharField(max_length=32)
    status = models.CharField(max_length=16, choices=Status.choices)
    error = models.TextField(blank=True)
    request_text = models.TextField(blank=True)
    response_text = models.TextField(blank=True)
    provider = models.CharField(max_length=20, blank=True)
    model = models.CharField(max_length=100, blank=True)
    llm_first_token_ms = models.FloatField("LLM first token (ms)", null=True, blank=True)
    first_chunk_ms = models.FloatField("first sentence (ms)", null=True, blank=True)
    llm_ms = models.FloatField("LLM total (ms)", null=True, blank=True)
    total_ms = models.FloatField("total (ms)", null=True, blank=True)
    started_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["-started_at"]

    def __str__(self) -> str:
        return f"{self.character} {self.status} {self.started_at:%Y-%m-%d %H:%M:%S}"


def _hash_key(raw_key: str) -> str:
    # Keys are 256-bit random tokens, so a fast hash is enough: there is nothing to brute-force.
    return hashlib.sha256(raw_key.encode()).hexdigest()


class ApiKey(models.Model):
    """A revocable Bearer key for the HTTP and WebSocket APIs; only its hash is stored."""

    PREFIX_LENGTH = 12

    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=PREFIX_LENGTH, unique=True, editable=False)
    key_hash = models.CharField(max_length=64, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "API key"
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None

    @classmethod
    def issue(cls, name: str) -> tuple[ApiKey, str]:
        """Create a key and return it with its raw value, which is never retrievable again."""
        raw_key = "ak_" + secrets.token_urlsafe(32)
        key = cls.objects.create(
            name=name, prefix=raw_key[: cls.PREFIX_LENGTH], key_hash=_hash_key(raw_key)
        )
        return key, raw_key

    @classmethod
    def authenticate(cls, raw_key: str) -> ApiKey | None:
        """The active key matching `raw_key`, compared in constant time, or None."""
        candidate = cls.objects.filter(
            prefix=raw_key[: cls.PREFIX_LENGTH], revoked_at__isnull=True
        ).first()
        # Hash even when nothing matched so timing does not reveal which prefixes exist.
        presented = _hash_key(raw_key)
        if candidate is None or not hmac.compare_digest(presented, candidate.key_hash):
            return None
        now = timezone.now()
        # Writing on every request would put a DB write on the hot path; a minute is precise
        # enough for "last used".
        if candidate.last_used_at is None or now - candidate.last_used_at > timedelta(minutes=1):
            cls.objects.filter(pk=candidate.pk).update(last_used_at=now)
            candidate.last_used_at = now
        return candidate


# The LINE transport keeps its models in its own package; importing them here registers them
# with this app.
from .line.models import LineChannel, LineEvent  # noqa: E402, F401
