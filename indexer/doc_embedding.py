"""How a build turns documents into vectors: a pluggable strategy, deterministic batches, a checkpoint.

A build plans its batches once (length-sorted, so padding costs little) and hands them to a
:class:`DocumentEmbedder`: :class:`LocalEmbedding` runs them in this process; the Ray Data
strategy in ``jobs/ray_embedding.py`` spreads them over an actor pool. The same batches give the
same vectors whichever worker runs them, so a rerun reproduces an interrupted run.

Finished batches are saved to an :class:`EmbeddingCheckpoint` as they arrive, so a killed build
resumes where it stopped instead of embedding everything again.
"""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
from tqdm.auto import tqdm

from bertsearch.indexer.atomic import atomic_path
from bertsearch.indexer.batching import length_sorted_batches
from bertsearch.indexer.embedder import Embedder


@dataclass(frozen=True)
class EmbeddingBatch:
    """Documents embedded together; ``index`` is the batch's place in the plan."""

    index: int
    ids: tuple[str, ...]
    texts: tuple[str, ...]

    def key(self) -> str:
        """A content hash: the same ids and texts give the same key (and the same vectors)."""
        digest = hashlib.sha256()
        for doc_id, text in zip(self.ids, self.texts, strict=True):
            digest.update(doc_id.encode() + b"\0" + text.encode() + b"\0")
        return digest.hexdigest()[:24]


@runtime_checkable
class DocumentEmbedder(Protocol):
    """A way of embedding documents for an index (in-process, Ray Data, ...)."""

    name: str  # "local", "ray": recorded in the manifest
    batch_size: int

    def identity(self) -> dict[str, Any]:
        """What a query encoder must match: ``model``, ``fingerprint``, ``dim``, ``max_length``, ..."""
        ...

    def embed_batches(self, batches: Sequence[EmbeddingBatch]) -> Iterator[tuple[int, np.ndarray]]:
        """Embed each batch; yield ``(batch.index, vectors)`` as batches finish, in any order."""
        ...


def embedding_identity(
    *, model: str, fingerprint: str, dim: int, max_length: int, precision: str
) -> dict[str, Any]:
    """What a query encoder must match to search a dense index: the one schema of the manifest's
    ``embedding`` block, whichever strategy embedded it. ``precision`` is the setting asked for
    (``auto`` resolves per device, and the devices of a Ray cluster may differ). Manifests written
    before this schema carried ``bf16`` instead; they open as before, since only ``fingerprint``,
    ``dim`` and ``max_length`` are compared."""
    return {
        "model": model,
        "fingerprint": fingerprint,
        "dim": dim,
        "max_length": max_length,
        "pooling": "mean",
        "normalized": True,
        "precision": precision,
    }


class LocalEmbedding:
    """Embed in this process with a loaded :class:`Embedder` (tests, small corpora, API writes)."""

    name = "local"

    def __init__(self, embedder: Embedder) -> None:
        if not embedder.loaded:
            raise ValueError("LocalEmbedding needs a loaded Embedder: call .load() first")
        self.embedder = embedder
        self.batch_size = embedder.batch_size
        self._identity: dict[str, Any] | None = None

    def identity(self) -> dict[str, Any]:
        if self._identity is None:  # fingerprinting hashes the weight files: do it once
            embedder = self.embedder
            self._identity = embedding_identity(
                model=embedder.model_name,
                fingerprint=embedder.fingerprint(),
                dim=embedder.dim,
                max_length=embedder.max_length,
                precision=embedder.precision,
            )
        return dict(self._identity)

    def embed_batches(self, batches: Sequence[EmbeddingBatch]) -> Iterator[tuple[int, np.ndarray]]:
        for batch in batches:
            yield batch.index, self.embedder.embed(list(batch.texts))


def plan_batches(ids: Sequence[str], texts: Sequence[str], batch_size: int) -> list[EmbeddingBatch]:
    """Length-sorted batches of ``batch_size`` documents; the same input always gives the same plan."""
    return [
        EmbeddingBatch(number, tuple(ids[i] for i in members), tuple(texts[i] for i in members))
        for number, members in enumerate(length_sorted_batches([len(t) for t in texts], batch_size))
    ]


class EmbeddingCheckpoint:
    """Vectors of finished batches on disk, keyed by model and batch content.

    Each batch is one ``.npy`` file, written to a temporary name and renamed, so a kill leaves
    either a complete file or none. ``clear()`` once the build is published.
    """

    def __init__(self, folder: str | Path, identity: dict[str, Any]) -> None:
        tag = f"{identity.get('fingerprint')}-{identity.get('max_length')}-{identity.get('precision')}"
        self.folder = Path(folder) / hashlib.sha256(tag.encode()).hexdigest()[:16]

    def _path(self, batch: EmbeddingBatch) -> Path:
        return self.folder / f"{batch.key()}.npy"

    def load(self, batch: EmbeddingBatch, dim: int) -> np.ndarray | None:
        path = self._path(batch)
        if not path.is_file():
            return None
        try:
            vectors = np.load(path)
        except (OSError, ValueError):
            return None  # unreadable: embed it again
        return vectors if vectors.shape == (len(batch.ids), dim) else None

    def save(self, batch: EmbeddingBatch, vectors: np.ndarray) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self._path(batch)
        with atomic_path(path) as tmp:
            np.save(tmp, np.ascontiguousarray(vectors, dtype=np.float32))

    def clear(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


@dataclass(frozen=True)
class EmbeddingRun:
    vectors: np.ndarray
    batches: int
    resumed_batches: int  # batches read back from the checkpoint instead of embedded


def embed_documents(
    ids: Sequence[str],
    texts: Sequence[str],
    strategy: DocumentEmbedder,
    *,
    checkpoint: EmbeddingCheckpoint | None = None,
    progress: bool = False,
) -> EmbeddingRun:
    """One vector per document, in the order of ``ids``; resumes from ``checkpoint`` when given."""
    dim = int(strategy.identity()["dim"])
    out = np.zeros((len(ids), dim), dtype=np.float32)
    position = {doc_id: i for i, doc_id in enumerate(ids)}
    batches = plan_batches(ids, texts, strategy.batch_size)
    todo: list[EmbeddingBatch] = []
    for batch in batches:
        cached = checkpoint.load(batch, dim) if checkpoint is not None else None
        if cached is None:
            todo.append(batch)
        else:
            out[[position[doc_id] for doc_id in batch.ids]] = cached
    by_index = {batch.index: batch for batch in todo}
    done = len(ids) - sum(len(batch.ids) for batch in todo)
    with tqdm(total=len(ids), initial=done, desc="embedding", unit="doc", disable=not progress) as bar:
        for number, vectors in strategy.embed_batches(todo):
            batch = by_index.pop(number)
            if vectors.shape != (len(batch.ids), dim):
                raise RuntimeError(
                    f"embedding batch {number} came back with shape {vectors.shape}, "
                    f"expected ({len(batch.ids)}, {dim})"
                )
            out[[position[doc_id] for doc_id in batch.ids]] = vectors
            if checkpoint is not None:
                checkpoint.save(batch, vectors)
            bar.update(len(batch.ids))
    if by_index:
        raise RuntimeError(f"{len(by_index)} embedding batches never came back (first: {min(by_index)})")
    return EmbeddingRun(vectors=out, batches=len(batches), resumed_batches=len(batches) - len(todo))
