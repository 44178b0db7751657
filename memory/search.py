"""Finding memories: meaning and words scored together, within a time window.

The candidates are the rows under the searched keys (one person with one character, plus the
character's diaries), narrowed by the window. Each gets
- a vector score: cosine similarity of its embedding with the query's, rescaled to 0..1 over
  the candidates, so paraphrases and the other language are found;
- plus LEXICAL_WEIGHT times a lexical score: BM25 over words (Latin script) and character
  bigrams (Japanese and Chinese have no spaces), as the share of the query's BM25 weight the
  row matches (0..1), so names, numbers and rare words count even where the model blurs them.
The lexical term is light on purpose: on the memory benchmark (docs/memory.md) weighting the
two alike, by reciprocal rank fusion, put the right memory first less often (recall@1 0.65
against 0.77) without finding more in the top five.
A row not embedded yet (or whose embedding failed) still ranks by its words, and a search
whose query cannot be embedded is lexical only: a fault in the model never hides memories.

Brute force on purpose: one person's memories with one character are at most thousands of rows,
which numpy ranks in milliseconds on any database.
"""

from __future__ import annotations

import logging
import math
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, tzinfo

import numpy as np
from django.db.models import Q

from .embeddings import Embedder, EmbeddingFailed, embedder_for
from .models import MemoryItem

logger = logging.getLogger("avatarsite.memory")

LEXICAL_WEIGHT = 0.1
BM25_K1 = 1.2
BM25_B = 0.75
# At most this many rows of one search are ranked (the newest first).
MAX_CANDIDATES = 5000

_WORD = re.compile(r"[^\W_]+")
_HIRAGANA_ONLY = re.compile(r"^[\u3040-\u309f]+$")
# Words that say nothing of what a memory is about; in Japanese the same holds for bigrams of
# kana only (particles and endings: "です", "ます", "のは"), which are dropped instead.
STOPWORDS = frozenset(
    [
        "a",
        "about",
        "am",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "been",
        "but",
        "by",
        "can",
        "could",
        "did",
        "do",
        "does",
        "for",
        "from",
        "had",
        "has",
        "have",
        "how",
        "i",
        "if",
        "in",
        "is",
        "it",
        "its",
        "me",
        "my",
        "of",
        "on",
        "or",
        "our",
        "so",
        "that",
        "the",
        "their",
        "them",
        "they",
        "this",
        "to",
        "was",
        "we",
        "were",
        "what",
        "when",
        "where",
        "which",
        "who",
        "why",
        "will",
        "with",
        "would",
        "you",
        "your",
    ]
)
_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af]")


def tokens(text: str) -> list[str]:
    """Words of Latin-script text; bigrams of runs of Japanese, Chinese or Korean; neither
    stopwords nor kana-only bigrams."""
    return [
        token
        for token in _all_tokens(text)
        if token not in STOPWORDS and not (len(token) == 2 and _HIRAGANA_ONLY.match(token))
    ]


def _all_tokens(text: str) -> list[str]:
    normalized = unicodedata.normalize("NFKC", text).casefold()
    found: list[str] = []
    for word in _WORD.findall(normalized):
        run: list[str] = []
        latin: list[str] = []
        for char in word:
            if _CJK.match(char):
                if latin:
                    found.append("".join(latin))
                    latin = []
                run.append(char)
            else:
                if run:
                    found.extend(_bigrams(run))
                    run = []
                latin.append(char)
        if latin:
            found.append("".join(latin))
        if run:
            found.extend(_bigrams(run))
    return found


def _bigrams(run: list[str]) -> list[str]:
    if len(run) == 1:
        return run
    return [run[i] + run[i + 1] for i in range(len(run) - 1)]


@dataclass(frozen=True)
class Window:
    """A time window, from the start of `since` to the end of `until` on a clock."""

    since: date | None = None
    until: date | None = None
    zone: tzinfo | None = None

    def bounds(self) -> tuple[datetime | None, datetime | None]:
        def at_midnight(day: date) -> datetime:
            return datetime.combine(day, time.min, tzinfo=self.zone)

        start = at_midnight(self.since) if self.since else None
        end = at_midnight(self.until + timedelta(days=1)) if self.until else None
        return start, end

    def filter(self) -> Q:
        """Diaries by their date; everything else by when it happened."""
        start, end = self.bounds()
        diaries = Q(kind=MemoryItem.Kind.DIARY)
        dated = Q()
        timed = Q()
        if self.since:
            dated &= Q(diary_date__gte=self.since)
            timed &= Q(occurred_at__gte=start)
        if self.until:
            dated &= Q(diary_date__lte=self.until)
            timed &= Q(occurred_at__lt=end)
        return (diaries & dated) | (~diaries & timed)


@dataclass(frozen=True)
class Hit:
    item: MemoryItem
    score: float


def search(
    tenant_id: int,
    keys: Sequence[str],
    query: str,
    *,
    top_k: int = 5,
    window: Window | None = None,
    kinds: Iterable[str] | None = None,
    embedder: Embedder | None = None,
) -> list[Hit]:
    """The `top_k` memories under `keys` most relevant to `query`, best first.

    Synchronous (database and model): async callers use `sync_to_async`.
    """
    if not query.strip() or top_k <= 0 or not keys:
        return []
    rows = MemoryItem.objects.filter(tenant_id=tenant_id, key__in=list(keys))
    if kinds is not None:
        rows = rows.filter(kind__in=list(kinds))
    if window is not None:
        rows = rows.filter(window.filter())
    candidates = list(rows.order_by("-occurred_at")[:MAX_CANDIDATES])
    if not candidates:
        return []
    embedder = embedder if embedder is not None else embedder_for(tenant_id)
    lexical = bm25(query, [item.search_text() for item in candidates])
    matched = lexical > 0
    fused = lexical.copy()
    vector = _vector_scores(query, candidates, embedder)
    if vector is not None:
        embedded = np.isfinite(vector)
        low, high = vector[embedded].min(), vector[embedded].max()
        rescaled = np.where(embedded, (vector - low) / ((high - low) or 1.0), 0.0)
        fused = rescaled + LEXICAL_WEIGHT * lexical
        matched |= embedded
    if window is not None and (window.since or window.until):
        # Asked about a time ("what did we do on Sunday?"): the window is what is relevant.
        matched[:] = True
    # Pinned rows win ties; otherwise a row that neither ranking matched is no answer.
    order = sorted(
        (i for i in range(len(candidates)) if matched[i]),
        key=lambda i: (-fused[i], not candidates[i].pinned, -candidates[i].occurred_at.timestamp()),
    )
    return [Hit(candidates[i], float(fused[i])) for i in order[:top_k]]


def bm25(query: str, documents: list[str]) -> np.ndarray:
    """Okapi BM25 of each document for the query's tokens, as a share of the most a document
    matching every token once would score: 0 (no token in common) to about 1."""
    terms = set(tokens(query))
    scores = np.zeros(len(documents))
    if not terms or not documents:
        return scores
    most = 0.0
    counted = [Counter(tokens(text)) for text in documents]
    lengths = np.array([sum(c.values()) for c in counted], dtype=float)
    average = lengths.mean() or 1.0
    for term in terms:
        frequency = np.array([c.get(term, 0) for c in counted], dtype=float)
        having = int((frequency > 0).sum())
        idf = math.log(1 + (len(documents) - having + 0.5) / (having + 0.5))
        most += idf
        if not having:
            continue
        scores += (
            idf
            * frequency
            * (BM25_K1 + 1)
            / (frequency + BM25_K1 * (1 - BM25_B + BM25_B * lengths / average))
        )
    return scores / most


def _vector_scores(
    query: str, candidates: list[MemoryItem], embedder: Embedder | None
) -> np.ndarray | None:
    """Cosine similarity per candidate (-inf for rows without a vector of this model), or
    None when there is no model or the query cannot be embedded."""
    if embedder is None:
        return None
    usable = [
        i
        for i, item in enumerate(candidates)
        if item.embedding is not None and item.embedding_model == embedder.name
    ]
    if not usable:
        return None
    try:
        wanted = embedder.embed([query], query=True)[0]
    except EmbeddingFailed as exc:
        logger.warning("memory search without vectors: %s", exc)
        return None
    scores = np.full(len(candidates), -np.inf)
    matrix = np.stack([candidates[i].vector() for i in usable])  # type: ignore[misc]
    scores[usable] = matrix @ wanted
    return scores


def describe(item: MemoryItem, zone: tzinfo, character_name: str = "") -> str:
    """One memory as a line of text for an LLM, dated on the character's clock."""
    when = item.occurred_at.astimezone(zone).strftime("%Y-%m-%d %H:%M")
    if item.kind == MemoryItem.Kind.DIARY and item.diary_date:
        return f"Diary ({item.diary_date.isoformat()}): {item.content}"
    if item.kind == MemoryItem.Kind.KNOWLEDGE:
        return f"Knowledge about the user ({when}): {item.content}"
    if item.kind == MemoryItem.Kind.SUMMARY:
        return f"Conversation summary ({when}): {item.content}"
    said = f"User: {item.content}"
    if item.reply:
        said += f" / {character_name or 'You'}: {item.reply}"
    return f"Conversation ({when}{', ' + item.channel if item.channel else ''}): {said}"


def estimated_tokens(text: str) -> int:
    """A tokenizer-free estimate: a token per Japanese or Chinese character, per 4 others."""
    wide = len(_CJK.findall(text))
    return wide + math.ceil((len(text) - wide) / 4)
