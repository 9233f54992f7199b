"""What the pipeline needs from an embedding model, whoever computes the vectors.

Two implementations sit behind this interface, in the spirit of BERTopic's ``BaseEmbedder``:
``client.EmbeddingClient`` sends texts to an SGLang server over HTTP (production), and
``local.LocalEmbedder`` runs the bundled USE-multilingual model in this process (the embedded
default, so a run loads the model once instead of starting a server per step).

Why a stream of outcomes rather than ``embed(texts) -> matrix``: the caller saves vectors as batches
complete (a killed run keeps its work), quarantines the texts a model refuses, and never holds a
partition's vectors twice. So both implementations consume ``(key, text)`` pairs lazily and yield one
:class:`BatchOutcome` per batch.

The text preparation both must agree on lives here too (:func:`prepare_text`): a vector is cached
under the model key, so the HTTP path and the in-process path must cut, prefix and reject a text in
exactly the same way, or the same cache key would hold different vectors.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Protocol, Self

import numpy as np

EMPTY_TEXT = "empty text"  # the reason given when a text is empty or whitespace only


class EmbedderError(Exception):
    """The embedder cannot produce vectors: the message says what failed and what to do."""


@dataclass
class BatchOutcome:
    """One finished batch: a unit vector per key that got one, and the keys that were refused.

    ``truncated[i]`` says whether ``keys[i]``'s text was cut to ``max_chars`` first; ``rejected`` holds
    ``(key, readable reason)`` pairs, which the caller quarantines.
    """

    keys: list[str]
    vectors: np.ndarray
    truncated: list[bool]
    rejected: list[tuple[str, str]]


class EmbedderStats(Protocol):
    def as_metadata(self) -> dict: ...


class Embedder(ABC):
    """Streams ``(key, text)`` pairs in, yields :class:`BatchOutcome` batches out.

    ``stats.as_metadata()`` gives flat counters for Dagster metadata (``texts_embedded``,
    ``texts_per_s``, ``truncated_texts``, ``rejected_texts``, ``seconds`` at least). ``label``
    says what computes the vectors, for metadata and logs; it never contains credentials.
    """

    stats: EmbedderStats

    @property
    @abstractmethod
    def label(self) -> str: ...

    @abstractmethod
    def embed_stream(
        self, items: Iterable[tuple[str, str]], total: int | None = None
    ) -> Iterator[BatchOutcome]:
        """Yield one outcome per batch; every key ends in exactly one outcome, embedded or rejected."""

    @abstractmethod
    def close(self) -> None:
        """Free what this embedder holds (connections); a model shared by the process stays loaded."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def prepare_text(text: str | None, max_chars: int, instruction: str | None) -> tuple[str, bool] | None:
    """The text as the model sees it and whether it was cut, or None when it must be rejected.

    Empty and whitespace-only texts are rejected, as SGLang rejects them. The cut happens before the
    instruction prefix (``Instruct: {task}\\nQuery:{text}``, Qwen3-Embedding's format), so the
    instruction never eats into a comment's characters.
    """
    if text is None or not str(text).strip():
        return None
    text = str(text)
    cut = len(text) > max_chars
    if cut:
        text = text[:max_chars]
    if instruction:
        text = f"Instruct: {instruction}\nQuery:{text}"
    return text, cut
