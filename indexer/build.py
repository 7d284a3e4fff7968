"""Build a new index version from a corpus: validate, write lexical, embed, write dense, publish."""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from tqdm.auto import tqdm

from bertsearch.indexer.corpus import CorpusError, CorpusReader, Reject, files_digest
from bertsearch.indexer.dense import DenseConfig, DenseIndex
from bertsearch.indexer.doc_embedding import (
    DocumentEmbedder,
    EmbeddingCheckpoint,
    LocalEmbedding,
    embed_documents,
    embedding_identity,
)
from bertsearch.indexer.documents import Document
from bertsearch.indexer.embedder import Embedder
from bertsearch.indexer.lexical import LexicalIndex
from bertsearch.indexer.lexical_backend import LexicalBackend
from bertsearch.indexer.versions import IndexDirectory, Manifest

log = logging.getLogger(__name__)

DENSE_DIR = "dense"
REJECTS_FILE = "rejects.jsonl"
CHECKPOINT_DIR = ".cache/embeddings"
CHUNK = 1024

__all__ = ["BuildConfig", "BuildReport", "as_strategy", "build_index", "embedding_identity"]


def tool_version() -> str:
    try:
        return version("bertsearch")
    except PackageNotFoundError:
        return "unknown"


@dataclass(frozen=True)
class BuildConfig:
    """How a version is built. ``keep_versions`` old versions survive each publish."""

    dense: DenseConfig = field(default_factory=DenseConfig)
    keep_versions: int = 3
    lexical: LexicalBackend = field(default_factory=LexicalBackend)

    def __post_init__(self) -> None:
        if self.keep_versions < 1:
            raise ValueError(f"keep_versions must be at least 1, got {self.keep_versions}")


@dataclass(frozen=True)
class BuildReport:
    manifest: Manifest
    path: Path
    rejects: list[Reject]
    resumed_batches: int = 0  # embedding batches a rerun took from an interrupted run's checkpoint

    def summary(self) -> str:
        m = self.manifest
        return (
            f"indexed {m.documents} documents into version {m.version} in {m.build_seconds:.1f} s"
            f" ({len(self.rejects)} rejected"
            + (f"; {self.resumed_batches} embedding batches resumed" if self.resumed_batches else "")
            + ")"
        )


def as_strategy(embedder: Embedder | DocumentEmbedder) -> DocumentEmbedder:
    """A loaded Embedder runs in process; any other DocumentEmbedder is used as it is."""
    return LocalEmbedding(embedder) if isinstance(embedder, Embedder) else embedder


def build_index(
    source: str | Path,
    index_dir: str | Path,
    embedder: Embedder | DocumentEmbedder,
    config: BuildConfig | None = None,
    *,
    progress: bool = True,
) -> BuildReport:
    """Index every valid document of ``source`` as a new current version of ``index_dir``.

    ``embedder``: a loaded Embedder (embeds in this process) or any DocumentEmbedder (the Ray
    Data one in ``jobs.indexing.ray_embedding``). Invalid lines are reported (returned and written to
    ``rejects.jsonl``) and every other line is indexed. Idempotent and resumable: a build killed
    at any point leaves CURRENT as it was, and a rerun reuses the batches it had embedded and
    ends with the same ids and vectors as an uninterrupted run. Waits for the directory's writer
    lock. Raises CorpusError when the source cannot be read or holds no valid document.
    """
    config = config or BuildConfig()
    strategy = as_strategy(embedder)
    directory = IndexDirectory(index_dir)
    with directory.lock():
        return _build_locked(source, directory, strategy, config, progress)


def _build_locked(
    source: str | Path,
    directory: IndexDirectory,
    strategy: DocumentEmbedder,
    config: BuildConfig,
    progress: bool,
) -> BuildReport:
    started = time.perf_counter()
    reader = CorpusReader(source)
    digest = files_digest(reader.files)  # before reading, so an edit made during the build counts
    name, staging = directory.start_build()

    lexical, lexical_entry = config.lexical.create(staging, name)
    ids, bodies = _read_into(lexical, reader, progress)
    _write_rejects(staging / REJECTS_FILE, reader.rejects)
    if not ids:
        raise CorpusError(
            f"{source}: no valid document to index ({len(reader.rejects)} rejected lines; first: "
            f"{reader.rejects[0] if reader.rejects else 'none'})"
        )

    identity = strategy.identity()
    checkpoint = EmbeddingCheckpoint(directory.root / CHECKPOINT_DIR, identity)
    embedded = embed_documents(ids, bodies, strategy, checkpoint=checkpoint, progress=progress)
    DenseIndex(int(identity["dim"]), config.dense).build(ids, embedded.vectors).save(staging / DENSE_DIR)

    manifest = Manifest(
        version=name,
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        tool_version=tool_version(),
        source=str(Path(source).resolve()),
        source_watermark=max(f.stat().st_mtime for f in reader.files),
        source_digest=digest,
        documents=len(ids),
        rejects=len(reader.rejects),
        build_seconds=round(time.perf_counter() - started, 3),
        embedding={**identity, "embedded_with": strategy.name},
        dense=asdict(config.dense),
        lexical=lexical_entry,
    )
    manifest.write(staging)
    final = directory.publish(name, staging, keep=config.keep_versions, release=config.lexical.release)
    config.lexical.publish(lexical)
    checkpoint.clear()  # published: the next build starts from nothing
    report = BuildReport(
        manifest=manifest, path=final, rejects=reader.rejects, resumed_batches=embedded.resumed_batches
    )
    for reject in reader.rejects:
        log.warning("rejected %s", reject)
    return report


def _read_into(lexical: LexicalIndex, reader: CorpusReader, progress: bool) -> tuple[list[str], list[str]]:
    """Index every valid document of ``reader`` lexically, in chunks; the ids and bodies to embed
    (without the documents the lexical index refused, which are reported as rejects)."""
    ids: list[str] = []
    bodies: list[str] = []
    refused: set[str] = set()
    with tqdm(
        total=reader.total_bytes, desc="reading", unit="B", unit_scale=True, disable=not progress
    ) as bar:
        chunk: list[Document] = []
        origins: dict[str, tuple[str, int]] = {}
        for doc in reader:
            chunk.append(doc)
            origins[doc.id] = reader.origin
            ids.append(doc.id)
            bodies.append(doc.body)
            if len(chunk) == CHUNK:
                refused |= _index_chunk(lexical, chunk, origins, reader.rejects)
                chunk, origins = [], {}
                bar.update(reader.bytes_read - bar.n)
        refused |= _index_chunk(lexical, chunk, origins, reader.rejects)
        bar.update(reader.bytes_read - bar.n)
    lexical.commit()
    if refused:  # a document the lexical index refused is not searchable: keep it out of dense too
        kept = [i for i, doc_id in enumerate(ids) if doc_id not in refused]
        ids, bodies = [ids[i] for i in kept], [bodies[i] for i in kept]
    return ids, bodies


def _index_chunk(
    lexical: LexicalIndex, chunk: list[Document], origins: dict[str, tuple[str, int]], rejects: list[Reject]
) -> set[str]:
    """Write a chunk to the lexical index; what it refuses becomes a reject at its source line."""
    refused = set()
    for failure in lexical.upsert(chunk):
        source, line = origins.get(failure.doc_id, ("", 0))
        rejects.append(
            Reject(source, line, f"refused by the lexical index: {failure.reason}", failure.doc_id)
        )
        refused.add(failure.doc_id)
    return refused


def _write_rejects(path: Path, rejects: list[Reject]) -> None:
    with open(path, "w", encoding="utf-8") as out:
        for reject in rejects:
            out.write(reject.to_json() + "\n")
