"""Reusing an index of a dataset's corpus, or building one: what evaluation and training start from."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from pathlib import Path

from bertsearch.indexer.build import build_index
from bertsearch.indexer.corpus import CorpusError, corpus_files, files_digest
from bertsearch.indexer.embedder import Embedder
from bertsearch.indexer.models import Precision, resolve_model, weights_fingerprint
from bertsearch.indexer.snapshot import IndexSnapshot
from bertsearch.indexer.versions import IndexDirectory, IndexNotFoundError, Manifest
from bertsearch.jobs.datasets.beir import BeirDataset

log = logging.getLogger(__name__)


def ensure_index(
    dataset: BeirDataset,
    index_dir: Path,
    *,
    model: str | Path | None = None,
    precision: Precision = "auto",
    progress: bool = True,
) -> tuple[IndexSnapshot, bool]:
    """An index version of the dataset's corpus in ``index_dir``, built there first if it has none.

    The current version is used when it indexes this corpus (same file, not modified since);
    otherwise the newest such older version; otherwise a new version is built with ``model``
    (None: the packaged encoder) and becomes current. A ``model`` given explicitly must also be
    the one a reused version was embedded with. Returns the snapshot and whether it was built now.
    """
    corpus = dataset.corpus_path.resolve()
    fingerprint = weights_fingerprint(resolve_model(model)) if model is not None else None
    folder = find_version(IndexDirectory(index_dir), corpus, fingerprint=fingerprint)
    if folder is not None:
        return IndexSnapshot.open_version(folder), False
    directory = IndexDirectory(index_dir)
    previous = directory.current_name()
    if previous is not None:
        log.warning(
            "%s holds no current index of %s (current version %s %s); building one, "
            "which becomes the current version",
            index_dir,
            corpus,
            previous,
            _why_not(directory, previous, corpus),
        )
    else:
        log.info("no index of %s in %s: building one", corpus, index_dir)
    embedder = Embedder(model, precision=precision).load()
    report = build_index(dataset.root, index_dir, embedder, progress=progress)
    if report.rejects:
        log.warning(
            "%d corpus lines were not indexed (see %s/rejects.jsonl)", len(report.rejects), report.path
        )
    return IndexSnapshot.open_version(report.path), True


def find_version(directory: IndexDirectory, corpus: Path, *, fingerprint: str | None = None) -> Path | None:
    """The current version if it indexes ``corpus`` as it is now, else the newest such version.

    With ``fingerprint``, only versions embedded with those weights count.
    """
    names = [directory.current_name(), *reversed(directory.versions())]
    digest = functools.cache(lambda: files_digest([corpus]))  # hashed once, and only if needed
    for name in dict.fromkeys(n for n in names if n):
        folder = directory.versions_dir / name
        try:
            manifest = Manifest.read(folder)
        except IndexNotFoundError:
            continue
        if fingerprint is not None and manifest.embedding.get("fingerprint") != fingerprint:
            continue
        if _indexes(manifest, corpus, digest):
            return folder
    return None


def _why_not(directory: IndexDirectory, version: str, corpus: Path) -> str:
    try:
        source = [f.resolve() for f in corpus_files(Manifest.read(directory.versions_dir / version).source)]
    except (CorpusError, IndexNotFoundError):
        return "cannot be read"
    if source == [corpus]:
        return "was built from this file before it was last modified"
    return "indexes another source"


def _indexes(manifest: Manifest, corpus: Path, digest: Callable[[], str]) -> bool:
    try:
        files = [f.resolve() for f in corpus_files(manifest.source)]
    except CorpusError:
        return False
    if files != [corpus]:
        return False
    # A corpus touched after the build (newer mtime than the watermark) is stale unless its bytes
    # are those the build read: copies and restores change the mtime, not the content.
    if corpus.stat().st_mtime <= manifest.source_watermark:
        return True
    return manifest.source_digest is not None and manifest.source_digest == digest()
