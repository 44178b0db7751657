"""The memory tick (Celery beat, every minute): embed what is waiting, summarise conversations
that went quiet (and learn what they said about the user), forget what is past retention.

Nothing here runs on a request: a turn only writes its row; the model and the LLM are used
here, on a worker, where a failure only means "try again next tick".
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from celery import shared_task
from django.conf import settings
from django.db.models import Max, OuterRef, Q, Subquery
from django.utils import timezone
from pydantic import BaseModel, Field, ValidationError

from characters.life.bridge import LLMFailed, Prompt, connected, strip_fences
from characters.models import Character
from characters.thread_loops import run
from conversations.models import EndUser

from .embeddings import Embedder, EmbeddingFailed, embedder_for
from .models import MemoryItem, MemorySettings
from .store import Owner, upsert_knowledge

logger = logging.getLogger("avatarsite.memory")

# A failing row is retried on every tick up to this many times, then left lexical-only.
MAX_INDEX_ATTEMPTS = 10
# Quiet conversations looked at per tick, newest first (most of them already summarised).
SUMMARY_SCAN = 1000


def index_pending(limit: int | None = None) -> int:
    """Embed rows waiting for a vector, or embedded by another model than their tenant's now,
    up to `limit` (MEMORY_INDEX_BATCH); returns how many were embedded."""
    budget = limit or settings.MEMORY_INDEX_BATCH
    embedded = 0
    tenants = MemoryItem.objects.order_by().values_list("tenant_id", flat=True).distinct()
    for tenant_id in list(tenants):
        if embedded >= budget:
            break
        embedder = embedder_for(tenant_id)
        if embedder is not None:
            embedded += _index(tenant_id, embedder, budget - embedded)
    return embedded


def _index(tenant_id: int, embedder: Embedder, limit: int) -> int:
    rows = list(
        MemoryItem.objects.filter(tenant_id=tenant_id)
        .filter(
            Q(index_state=MemoryItem.Index.PENDING)
            | Q(index_state=MemoryItem.Index.FAILED, index_attempts__lt=MAX_INDEX_ATTEMPTS)
            | (Q(index_state=MemoryItem.Index.INDEXED) & ~Q(embedding_model=embedder.name))
        )
        .order_by("created_at")[:limit]
    )
    if not rows:
        return 0
    try:
        vectors = embedder.embed([row.search_text() for row in rows], query=False)
    except EmbeddingFailed as exc:
        logger.warning("memory indexing failed for %d row(s), retried later: %s", len(rows), exc)
        for row in rows:
            row.index_state = MemoryItem.Index.FAILED
            row.index_attempts += 1
        MemoryItem.objects.bulk_update(rows, ["index_state", "index_attempts"])
        return 0
    for row, vector in zip(rows, vectors, strict=True):
        row.set_vector(vector, embedder.name)
    MemoryItem.objects.bulk_update(rows, ["embedding", "embedding_model", "index_state"])
    return len(rows)


class _Fact(BaseModel):
    subject: str = Field(min_length=1, max_length=200)
    fact: str = Field(min_length=1, max_length=2000)


class _Summary(BaseModel):
    summary: str = Field(min_length=1, max_length=4000)
    facts: list[_Fact] = Field(default_factory=list, max_length=20)


SUMMARY_PROMPT = """You keep {name}'s long-term memory of conversations with one user.
Below is one conversation, oldest first. Reply with JSON only:
{{"summary": "...", "facts": [{{"subject": "...", "fact": "..."}}]}}
- summary: what was talked about, in a few sentences in the conversation's language, with the
  names, dates, places and numbers that were mentioned (they are searched for later).
- facts: lasting facts the user told about themselves (name, family, pets, home, work,
  likes, plans). subject: two or three lowercase English words naming what the fact is
  about, the same words each time for the same thing (e.g. "pet name", "home town",
  "favourite food"), so a corrected fact replaces the old one. fact: one sentence in the
  conversation's language. No facts about {name}, no guesses; [] when there are none."""


def summarise_quiet(now: datetime) -> int:
    """Summarise each conversation quiet for MEMORY_SUMMARY_IDLE_SECONDS whose latest turn
    no summary covers yet; returns how many were written."""
    idle = now - timedelta(seconds=settings.MEMORY_SUMMARY_IDLE_SECONDS)
    # A summary is dated at the last turn it covers.
    summarised = MemoryItem.objects.filter(
        tenant_id=OuterRef("tenant_id"),
        key=OuterRef("key"),
        session_id=OuterRef("session_id"),
        kind=MemoryItem.Kind.SUMMARY,
    ).values("occurred_at")[:1]
    conversations = (
        MemoryItem.objects.filter(
            kind=MemoryItem.Kind.TURN,
            character__isnull=False,
            occurred_at__gte=now - timedelta(days=settings.MEMORY_SUMMARY_LOOKBACK_DAYS),
        )
        .exclude(session_id="")
        .values("tenant_id", "key", "session_id", "character_id", "end_user_id")
        .annotate(last=Max("occurred_at"))
        .filter(last__lt=idle)
        .annotate(summarised=Subquery(summarised))
        .order_by("-last")
    )
    written = 0
    for conversation in conversations[:SUMMARY_SCAN]:
        if written >= settings.MEMORY_SUMMARY_BATCH:
            break
        if conversation["summarised"] and conversation["summarised"] >= conversation["last"]:
            continue
        owner = Owner(
            conversation["key"],
            Character.objects.get(pk=conversation["character_id"]),
            EndUser.objects.filter(pk=conversation["end_user_id"]).first(),
        )
        if summarise_session(owner, conversation["session_id"]):
            written += 1
    return written


def summarise_session(owner: Owner, session_id: str, *, overwrite: bool = False) -> bool:
    """Summarise one conversation of `owner` (who names a character) unless a summary already
    covers its latest turn; True when a summary was written."""
    assert owner.character is not None
    of_it = MemoryItem.objects.filter(
        tenant_id=owner.character.tenant_id, key=owner.key, session_id=session_id
    )
    turns = list(
        of_it.filter(kind=MemoryItem.Kind.TURN).order_by("-occurred_at")[
            : settings.MEMORY_SUMMARY_MAX_TURNS
        ]
    )[::-1]
    if not turns:
        return False
    summary = of_it.filter(kind=MemoryItem.Kind.SUMMARY).first()
    if not overwrite and summary is not None and summary.occurred_at >= turns[-1].occurred_at:
        return False
    return _summarise(owner, turns, summary)


def _summarise(owner: Owner, turns: list[MemoryItem], summary: MemoryItem | None) -> bool:
    """Write (or rewrite) the conversation's summary and upsert the facts it names."""
    character = owner.character
    assert character is not None
    bridge = connected()
    if not bridge.has_llm(character):
        return False
    transcript = "\n".join(
        f"User: {turn.content}\n{character.name}: {turn.reply}" for turn in turns
    )
    messages = [
        Prompt("system", SUMMARY_PROMPT.format(name=character.name)),
        Prompt("user", transcript),
    ]
    try:
        reply = run(bridge.complete(character, messages, character.llm_model))
        parsed = _Summary.model_validate_json(strip_fences(reply))
    except (LLMFailed, ValidationError) as exc:
        logger.warning(
            "memory summary of %s failed, retried next tick: %s", turns[-1].session_id, exc
        )
        return False
    last = turns[-1]
    source = {"session_id": last.session_id, "channel": last.channel}
    if summary is None:
        summary = MemoryItem(
            tenant_id=last.tenant_id,
            kind=MemoryItem.Kind.SUMMARY,
            key=owner.key,
            character=character,
            end_user=owner.end_user,
            session_id=last.session_id,
            channel=last.channel,
        )
    summary.content = parsed.summary
    summary.occurred_at = last.occurred_at
    summary.source = {**source, "turns": len(turns)}
    summary.index_state = MemoryItem.Index.PENDING
    summary.save()
    for fact in parsed.facts:
        upsert_knowledge(
            last.tenant_id,
            owner,
            fact.subject,
            fact.fact,
            source={**source, "summary": str(summary.pk)},
            occurred_at=last.occurred_at,
        )
    return True


def forget_expired(now: datetime) -> int:
    """Delete unpinned turns, summaries and knowledge older than their character's
    retention; returns how many rows went."""
    deleted = 0
    for chosen in MemorySettings.objects.filter(retention_days__isnull=False):
        assert chosen.retention_days is not None
        count, _ = MemoryItem.objects.filter(
            character_id=chosen.character_id,
            kind__in=(MemoryItem.Kind.TURN, MemoryItem.Kind.SUMMARY, MemoryItem.Kind.KNOWLEDGE),
            pinned=False,
            occurred_at__lt=now - timedelta(days=chosen.retention_days),
        ).delete()
        deleted += count
    return deleted


@shared_task(name="memory.tasks.memory_tick", ignore_result=True)
def memory_tick() -> dict[str, int]:
    now = timezone.now()
    return {
        "forgotten": forget_expired(now),
        "indexed": index_pending(),
        "summarised": summarise_quiet(now),
    }
