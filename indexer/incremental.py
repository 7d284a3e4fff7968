"""Incremental updates: upserts and deletes by document id, applied as a new index version.

The current version is never touched. An update copies its lexical index into a staging
folder, loads its dense index, applies the changes to both, and publishes the result as a new
version (manifest ``parent`` names the version it started from). So an update killed midway
leaves CURRENT as it was, and readers keep serving a consistent version throughout.

Dense deletes work for every FAISS kind (see :mod:`bertsearch.indexer.dense`): flat and IVF remove the
vectors; HNSW tombstones them and rebuilds the graph once tombstones pass
``hnsw_rebuild_fraction`` of it.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

from bertsearch.indexer.build import CHECKPOINT_DIR, DENSE_DIR, REJECTS_FILE, as_strategy, tool_version
from bertsearch.indexer.corpus import CorpusReader, Deletion, Reject, corpus_files
from bertsearch.indexer.dense import DenseIndex
from bertsearch.indexer.doc_embedding import DocumentEmbedder, EmbeddingCheckpoint, embed_documents
from bertsearch.indexer.documents import Document
from bertsearch.indexer.embedder import Embedder
from bertsearch.indexer.lexical_backend import LEXICAL_DIR
from bertsearch.indexer.snapshot import ModelMismatchError
from bertsearch.indexer.tantivy_index import TantivyIndex
from bertsearch.indexer.versions import IndexDirectory, Manifest

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class UpdateReport:
    """What an update did. ``changed`` is False when there was nothing to apply (no new version)."""

    changed: bool
    manifest: Manifest  # the new version's, or the untouched current one's
    path: Path
    upserted: int = 0
    deleted: int = 0  # deletes that removed a document
    missing_deletes: int = 0  # deletes of ids the index did not hold (ignored)
    compacted: bool = False  # an HNSW graph was rebuilt to drop its tombstones
    rejects: list[Reject] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)  # source files applied
    skipped_files: list[Path] = field(default_factory=list)  # not newer than the version's watermark
    seconds: float = 0.0
    embed_seconds: float = 0.0  # of ``seconds``, spent embedding the upserted documents

    def summary(self) -> str:
        if not self.changed:
            skipped = f" ({len(self.skipped_files)} files already applied)" if self.skipped_files else ""
            return f"nothing to update in version {self.manifest.version}{skipped}"
        return (
            f"updated {self.manifest.parent} -> {self.manifest.version}: {self.upserted} upserted, "
            f"{self.deleted} deleted ({self.missing_deletes} unknown ids ignored), "
            f"{self.manifest.documents} documents, {self.seconds:.2f} s"
            + ("; HNSW graph rebuilt" if self.compacted else "")
            + (f"; {len(self.rejects)} lines rejected" if self.rejects else "")
        )


# Long: one transaction under the index lock (read, embed, stage, publish), read top to bottom.
def apply_updates(
    index_dir: str | Path,
    upserts: Sequence[Document],
    deletes: Sequence[str],
    embedder: Embedder | DocumentEmbedder,
    *,
    keep_versions: int = 3,
    source: str = "api",
    source_watermark: float | None = None,
    lock_timeout: float | None = None,
    progress: bool = False,
    rejects: Sequence[Reject] = (),
) -> UpdateReport:
    """Upsert ``upserts`` and delete ``deletes`` (ids) as a new current version of ``index_dir``.

    ``embedder`` must carry the weights the index was built with (ModelMismatchError otherwise).
    Raises IndexNotFoundError when there is no version to update, IndexBusyError when another
    writer holds the directory past ``lock_timeout`` seconds, ValueError when an id is both
    upserted and deleted or upserted twice.
    """
    ids = _checked_ids(upserts, deletes)
    strategy = as_strategy(embedder)
    directory = IndexDirectory(index_dir)
    with directory.lock(timeout=lock_timeout):
        started = time.perf_counter()
        current = directory.current()
        parent = Manifest.read(current)
        if not upserts and not deletes:
            return UpdateReport(changed=False, manifest=parent, path=current, rejects=list(rejects))
        if parent.lexical.get("backend", "tantivy") != "tantivy":
            raise ValueError(
                f"incremental updates of an Elasticsearch-backed index are not supported yet (version "
                f"{parent.version}); run a full `bertsearch index` build instead"
            )
        identity = strategy.identity()
        _check_model(parent, identity)

        checkpoint = EmbeddingCheckpoint(directory.root / CHECKPOINT_DIR, identity)
        embed_started = time.perf_counter()
        vectors = embed_documents(
            ids, [doc.body for doc in upserts], strategy, checkpoint=checkpoint, progress=progress
        ).vectors
        embed_seconds = round(time.perf_counter() - embed_started, 3)

        name, staging = directory.start_build()
        lexical, present = _updated_lexical(current, staging, parent, upserts, deletes)
        dense, compacted = _updated_dense(current, staging, ids, vectors, deletes)
        documents = lexical.count()
        if documents != len(dense):
            log.warning("lexical index holds %d documents but dense holds %d", documents, len(dense))
        _write_rejects(staging / REJECTS_FILE, rejects)

        seconds = round(time.perf_counter() - started, 3)
        changes = {
            "upserted": len(upserts),
            "deleted": len(present),
            "missing_deletes": len(set(deletes)) - len(present),
            "dense_tombstones": dense.tombstones,
            "compacted": compacted,
            "embed_seconds": embed_seconds,
        }
        manifest = replace(
            parent,
            version=name,
            created_at=datetime.now(UTC).isoformat(timespec="seconds"),
            tool_version=tool_version(),
            source=source,
            source_watermark=parent.source_watermark if source_watermark is None else source_watermark,
            source_digest=None,  # the content changed: no digest of files describes it
            documents=documents,
            rejects=len(rejects),
            build_seconds=seconds,
            parent=parent.version,
            updates=changes,
        )
        manifest.write(staging)
        final = directory.publish(name, staging, keep=keep_versions)
        checkpoint.clear()
    return UpdateReport(
        changed=True,
        manifest=manifest,
        path=final,
        upserted=len(upserts),
        deleted=len(present),
        missing_deletes=changes["missing_deletes"],
        compacted=compacted,
        rejects=list(rejects),
        seconds=seconds,
        embed_seconds=embed_seconds,
    )


def _checked_ids(upserts: Sequence[Document], deletes: Sequence[str]) -> list[str]:
    ids = [doc.id for doc in upserts]
    if len(set(ids)) != len(ids):
        raise ValueError("an update may upsert each document id once")
    both = set(ids) & set(deletes)
    if both:
        raise ValueError(f"ids both upserted and deleted in one update: {sorted(both)[:5]}")
    return ids


def _updated_lexical(current: Path, staging: Path, parent: Manifest, upserts, deletes):
    """A copy of the current version's tantivy index with the update applied, and the deleted
    ids it held."""
    shutil.copytree(current / LEXICAL_DIR, staging / LEXICAL_DIR, ignore=shutil.ignore_patterns("*.lock"))
    lexical = TantivyIndex(staging / LEXICAL_DIR, fields=parent.lexical.get("fields", ["body"]))
    present = lexical.get(list(dict.fromkeys(deletes)))
    lexical.delete(deletes)
    lexical.upsert(upserts)
    lexical.commit()
    return lexical, present


def _updated_dense(current: Path, staging: Path, ids: list[str], vectors, deletes) -> tuple[DenseIndex, bool]:
    """The current dense index with the update applied, saved to ``staging``; whether it was compacted."""
    dense = DenseIndex.load(current / DENSE_DIR)
    dense.delete(deletes)
    if ids:
        dense.upsert(ids, vectors)
    compacted = dense.needs_compaction
    if compacted:
        dense.compact()
    dense.save(staging / DENSE_DIR)
    return dense, compacted


def update_from_source(
    source: str | Path,
    index_dir: str | Path,
    embedder: Embedder | DocumentEmbedder,
    *,
    keep_versions: int = 3,
    all_files: bool = False,
    progress: bool = False,
) -> UpdateReport:
    """Apply a source of changes: JSONL lines are upserts, ``{"_id": ..., "deleted": true}`` deletes.

    Files are applied in name order and a later file wins for an id it repeats (within one file
    the first line of an id wins, the others are rejected). When ``source`` is the source the
    current version was built or updated from, files not modified since its watermark were
    applied already and are skipped, unless ``all_files``. Reapplying is harmless: upserts and
    deletes by id are idempotent.
    """
    resolved = str(Path(source).resolve())
    files = corpus_files(source)
    directory = IndexDirectory(index_dir)
    current = Manifest.read(directory.current())
    skipped: list[Path] = []
    if not all_files and current.source == resolved:
        skipped = [f for f in files if f.stat().st_mtime <= current.source_watermark]
        files = [f for f in files if f not in skipped]
    if not files:
        return UpdateReport(changed=False, manifest=current, path=directory.current(), skipped_files=skipped)
    watermark = max(f.stat().st_mtime for f in files)  # read before the files, so later edits count
    changes: dict[str, Document | Deletion] = {}
    rejects: list[Reject] = []
    for path in files:
        reader = CorpusReader(path, allow_deletes=True)
        for item in reader:
            changes.pop(item.id, None)  # re-insert, so ids keep the order of their last change
            changes[item.id] = item
        rejects.extend(reader.rejects)
    report = apply_updates(
        index_dir,
        [item for item in changes.values() if isinstance(item, Document)],
        [item.id for item in changes.values() if isinstance(item, Deletion)],
        embedder,
        keep_versions=keep_versions,
        source=resolved,
        source_watermark=max(watermark, current.source_watermark if current.source == resolved else 0.0),
        progress=progress,
        rejects=rejects,
    )
    for reject in rejects:
        log.warning("rejected %s", reject)
    return replace(report, files=files, skipped_files=skipped)


def _check_model(manifest: Manifest, identity: dict) -> None:
    built = manifest.embedding
    if built.get("fingerprint") != identity.get("fingerprint") or built.get("dim") != identity.get("dim"):
        raise ModelMismatchError(
            f"index version {manifest.version} was embedded with {built.get('model')!r} "
            f"(weights {built.get('fingerprint')}, dim {built.get('dim')}), but this update embeds with "
            f"{identity.get('model')!r} (weights {identity.get('fingerprint')}, dim {identity.get('dim')}); "
            f"one index never mixes two models' vectors. Update with --model {built.get('model')} or "
            "rebuild the whole index with the new model"
        )


def _write_rejects(path: Path, rejects: Sequence[Reject]) -> None:
    with open(path, "w", encoding="utf-8") as out:
        for reject in rejects:
            out.write(reject.to_json() + "\n")
