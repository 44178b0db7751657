"""What a character remembers of each person it talks to, and of its own days.

One table holds every kind of memory, so one search ranks them together: finished turns,
summaries of quiet conversations, knowledge about the user (one row per subject, rewritten when
the user corrects it) and the character's diaries (shared by all its users). A row is reached
through its `key`, the ChatMemory user id: "<end user id>_<character slug>" for what belongs to
one person and one character, "<character slug>" for a character's diaries.
"""

from __future__ import annotations

import uuid

import numpy as np
from django.db import models
from django.utils import timezone

from avatarsite.tenants.models import TenantOwned
from avatarsite.tenants.provider_secrets import check_references, tenant_of
from characters.models import Character
from conversations.models import EndUser


class MemoryItem(TenantOwned):
    tenant_parent = "character"

    class Kind(models.TextChoices):
        TURN = "turn"
        SUMMARY = "summary"
        KNOWLEDGE = "knowledge"
        DIARY = "diary"

    class Index(models.TextChoices):
        PENDING = "pending", "Waiting for its embedding"
        INDEXED = "indexed"
        FAILED = "failed", "Embedding failed (retried by the memory tick)"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    kind = models.CharField(max_length=16, choices=Kind.choices)
    key = models.CharField(
        max_length=255, help_text="The ChatMemory user id this memory is filed under."
    )
    # Null for what a ChatMemory client files under a key naming none of the tenant's
    # characters; deleting the character or the end user deletes their memories.
    character = models.ForeignKey(
        Character, on_delete=models.CASCADE, null=True, blank=True, related_name="+"
    )
    end_user = models.ForeignKey(
        EndUser, on_delete=models.CASCADE, null=True, blank=True, related_name="memories"
    )
    session_id = models.CharField(
        max_length=255, blank=True, help_text="The conversation (context id) it came from."
    )
    channel = models.CharField(max_length=32, blank=True)
    content = models.TextField(help_text="The user's words, a summary, a fact or a diary.")
    reply = models.TextField(blank=True, help_text="A turn: what the character answered.")
    subject = models.CharField(
        max_length=200,
        blank=True,
        help_text="Knowledge: what the fact is about (e.g. 'pet name'); a new fact on the "
        "same subject replaces the old one.",
    )
    diary_date = models.DateField(null=True, blank=True)
    source = models.JSONField(
        default=dict,
        blank=True,
        help_text="Where it came from: channel, conversation, turn, and earlier versions.",
    )
    metadata = models.JSONField(default=dict, blank=True)
    occurred_at = models.DateTimeField(
        default=timezone.now, db_index=True, help_text="When it was said or happened."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    pinned = models.BooleanField(
        default=False, help_text="Kept whatever the retention, and recalled first."
    )
    embedding = models.BinaryField(null=True, blank=True, editable=False)
    embedding_model = models.CharField(max_length=100, blank=True, editable=False)
    index_state = models.CharField(
        max_length=10, choices=Index.choices, default=Index.PENDING, editable=False
    )
    index_attempts = models.PositiveSmallIntegerField(default=0, editable=False)

    class Meta:
        ordering = ["-occurred_at"]
        indexes = [
            models.Index(fields=["tenant", "key", "kind"], name="memory_item_key"),
            models.Index(fields=["index_state"], name="memory_item_index_state"),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "key", "diary_date"],
                condition=models.Q(kind="diary"),
                name="one_diary_per_key_and_date",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind}: {self.content[:60]}"

    def search_text(self) -> str:
        """What is embedded and matched: a turn's two sides, a knowledge row's subject too."""
        if self.kind == self.Kind.TURN and self.reply:
            return f"{self.content}\n{self.reply}"
        if self.kind == self.Kind.KNOWLEDGE and self.subject:
            return f"{self.subject}: {self.content}"
        return self.content

    def vector(self) -> np.ndarray | None:
        if self.embedding is None:
            return None
        return np.frombuffer(bytes(self.embedding), dtype=np.float32)

    def set_vector(self, vector: np.ndarray, model: str) -> None:
        self.embedding = np.asarray(vector, dtype=np.float32).tobytes()
        self.embedding_model = model
        self.index_state = self.Index.INDEXED


class MemorySettings(TenantOwned):
    """How one character uses long-term memory (a character without a row: the defaults)."""

    tenant_parent = "character"

    character = models.OneToOneField(
        Character, on_delete=models.CASCADE, related_name="memory_settings"
    )
    auto_recall = models.BooleanField(
        default=False,
        help_text="Put the few memories most relevant to each message into the turn's "
        "context (no extra LLM call); the search_memory tool is there either way.",
    )
    recall_token_budget = models.PositiveIntegerField(
        default=300, help_text="At most this many tokens (estimated) of recalled memories."
    )
    retention_days = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="Forget turns, summaries and knowledge older than this many days (pinned "
        "memories stay). Blank: keep them.",
    )

    class Meta:
        verbose_name = "memory settings"
        verbose_name_plural = "memory settings"

    def __str__(self) -> str:
        return f"memory of {self.character}"


class EmbeddingProvider(TenantOwned):
    """A tenant's own embedding API (OpenAI's or any server speaking it) instead of the
    deployment's offline model. Vectors of different models are never compared: switching
    re-embeds the tenant's memories on the next memory ticks."""

    name = models.CharField(max_length=100, default="OpenAI-compatible embeddings")
    base_url = models.URLField(
        "base URL",
        max_length=500,
        blank=True,
        help_text="e.g. https://api.openai.com/v1 (blank: OpenAI).",
    )
    model = models.CharField(max_length=100, help_text="e.g. text-embedding-3-small.")
    api_key_env = models.CharField(
        "API key",
        max_length=100,
        blank=True,
        help_text="The name of one of the tenant's provider secrets holding the key.",
    )
    is_active = models.BooleanField(default=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["tenant"],
                condition=models.Q(is_active=True),
                name="one_active_embedding_provider_per_tenant",
            )
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.model})"

    def clean(self) -> None:
        check_references(
            tenant_of(self), [self.api_key_env], endpoint=self.base_url, field="api_key_env"
        )
