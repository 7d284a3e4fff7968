"""Build a new index version from a corpus: validate, write lexical, embed, write dense, publish."""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from tqdm.auto import tqdm

from indexer.corpus import CorpusError, CorpusReader, Reject
from indexer.dense import DenseConfig, DenseIndex
from indexer.documents import Document
from indexer.embedder import Embedder
from indexer.tantivy_index import ANALYZER, SEARCH_FIELDS, TantivyIndex
from indexer.versions import IndexDirectory, Manifest

log = logging.getLogger(__name__)

LEXICAL_DIR = "lexical"
DENSE_DIR = "dense"
REJECTS_FILE = "rejects.jsonl"
CHUNK = 1024


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

    def __post_init__(self) -> None:
        if self.keep_versions < 1:
            raise ValueError(f"keep_versions must be at least 1, got {self.keep_versions}")


@dataclass(frozen=True)
class BuildReport:
    manifest: Manifest
    path: Path
    rejects: list[Reject]

    def summary(self) -> str:
        m = self.manifest
        return (
            f"indexed {m.documents} documents into version {m.version} in {m.build_seconds:.1f} s"
            f" ({len(self.rejects)} rejected)"
        )


def build_index(
    source: str | Path,
    index_dir: str | Path,
    embedder: Embedder,
    config: BuildConfig | None = None,
    *,
    progress: bool = True,
) -> BuildReport:
    """Index every valid document of ``source`` as a new current version of ``index_dir``.

    Invalid lines are reported (returned and written to ``rejects.jsonl``) and every other line
    is indexed. Raises CorpusError when the source cannot be read or holds no valid document.
    """
    config = config or BuildConfig()
    started = time.perf_counter()
    reader = CorpusReader(source)
    directory = IndexDirectory(index_dir)
    name, staging = directory.start_build()

    lexical = TantivyIndex(staging / LEXICAL_DIR)
    ids: list[str] = []
    bodies: list[str] = []
    with tqdm(
        total=reader.total_bytes, desc="reading", unit="B", unit_scale=True, disable=not progress
    ) as bar:
        chunk: list[Document] = []
        for doc in reader:
            chunk.append(doc)
            ids.append(doc.id)
            bodies.append(doc.body)
            if len(chunk) == CHUNK:
                lexical.upsert(chunk)
                chunk = []
                bar.update(reader.bytes_read - bar.n)
        lexical.upsert(chunk)
        bar.update(reader.bytes_read - bar.n)
    lexical.commit()
    _write_rejects(staging / REJECTS_FILE, reader.rejects)
    if not ids:
        raise CorpusError(
            f"{source}: no valid document to index ({len(reader.rejects)} rejected lines; first: "
            f"{reader.rejects[0] if reader.rejects else 'none'})"
        )

    vectors = embedder.embed(bodies, progress=progress)
    DenseIndex(embedder.dim, config.dense).build(ids, vectors).save(staging / DENSE_DIR)

    manifest = Manifest(
        version=name,
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        tool_version=tool_version(),
        source=str(Path(source).resolve()),
        source_watermark=max(f.stat().st_mtime for f in reader.files),
        documents=len(ids),
        rejects=len(reader.rejects),
        build_seconds=round(time.perf_counter() - started, 3),
        embedding=embedding_identity(embedder),
        dense=asdict(config.dense),
        lexical={"backend": "tantivy", "analyzer": ANALYZER, "fields": list(SEARCH_FIELDS)},
    )
    manifest.write(staging)
    final = directory.publish(name, staging, keep=config.keep_versions)
    report = BuildReport(manifest=manifest, path=final, rejects=reader.rejects)
    for reject in reader.rejects:
        log.warning("rejected %s", reject)
    return report


def embedding_identity(embedder: Embedder) -> dict:
    """What a query encoder must match to search a dense index built by ``embedder``."""
    return {
        "model": embedder.model_name,
        "fingerprint": embedder.fingerprint(),
        "dim": embedder.dim,
        "max_length": embedder.max_length,
        "pooling": "mean",
        "normalized": True,
    }


def _write_rejects(path: Path, rejects: list[Reject]) -> None:
    with open(path, "w", encoding="utf-8") as out:
        for reject in rejects:
            out.write(reject.to_json() + "\n")
