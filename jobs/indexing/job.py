"""The indexing job: a full build or an incremental update, embedding in process or with Ray Data.

Plain functions of a typed job description, so the CLI, the scheduler and tests run the very
same code (``bertsearch index`` is a thin wrapper).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from bertsearch.indexer.build import BuildConfig, BuildReport, build_index
from bertsearch.indexer.dense import DenseConfig
from bertsearch.indexer.doc_embedding import DocumentEmbedder, LocalEmbedding
from bertsearch.indexer.embedder import Embedder
from bertsearch.indexer.incremental import UpdateReport, update_from_source
from bertsearch.indexer.lexical_backend import LexicalBackend
from bertsearch.indexer.versions import IndexDirectory, Manifest

EmbedWith = Literal["auto", "local", "ray"]


@dataclass(frozen=True)
class IndexJob:
    """What to index and how.

    ``embed_with``: ``ray`` (Ray Data actor pool; local Ray, or the cluster at ``ray_address`` /
    ``RAY_ADDRESS``), ``local`` (this process), or ``auto``: Ray for full builds, this process for
    incremental updates, which are usually too small to repay starting Ray. For an incremental
    update ``model`` and ``max_length`` default to the ones the index was built with.
    """

    source: Path
    index_dir: Path
    incremental: bool = False
    all_files: bool = False
    model: str | None = None
    dense_index: Literal["flat", "hnsw", "ivf"] = "flat"
    max_length: int | None = None
    batch_size: int = 32
    keep: int = 3
    embed_with: EmbedWith = "auto"
    ray_workers: int = 0
    ray_address: str | None = None
    progress: bool = True
    lexical: LexicalBackend = field(default_factory=LexicalBackend.from_env)  # BERTSEARCH_LEXICAL, ..._ES_URL

    def __post_init__(self) -> None:
        if self.embed_with not in ("auto", "local", "ray"):
            raise ValueError(f"embed_with must be 'auto', 'local' or 'ray', not {self.embed_with!r}")
        if self.all_files and not self.incremental:
            raise ValueError("all_files only applies to incremental updates: add --incremental")
        if self.keep < 1:
            raise ValueError(f"keep must be at least 1, got {self.keep}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {self.batch_size}")
        if self.ray_workers < 0:
            raise ValueError(f"ray_workers must be 0 (automatic) or positive, got {self.ray_workers}")
        DenseConfig(kind=self.dense_index)  # validates the kind

    @property
    def uses_ray(self) -> bool:
        return self.embed_with == "ray" or (self.embed_with == "auto" and not self.incremental)


def embedding_strategy(job: IndexJob, model: str | None, max_length: int) -> DocumentEmbedder:
    if job.uses_ray:
        from bertsearch.jobs.indexing.ray_embedding import RayEmbedding, RayEmbeddingConfig

        return RayEmbedding(
            RayEmbeddingConfig(
                model=model,
                max_length=max_length,
                batch_size=job.batch_size,
                workers=job.ray_workers,
                address=job.ray_address,
            )
        )
    return LocalEmbedding(Embedder(model, max_length=max_length, batch_size=job.batch_size).load())


def run_build(job: IndexJob) -> BuildReport:
    """A full build of ``job.source`` as a new current version."""
    if job.incremental:
        raise ValueError("run_build builds from scratch: use run_update for an incremental job")
    strategy = embedding_strategy(job, job.model, job.max_length or 256)
    config = BuildConfig(dense=DenseConfig(kind=job.dense_index), keep_versions=job.keep, lexical=job.lexical)
    return build_index(job.source, job.index_dir, strategy, config, progress=job.progress)


def run_update(job: IndexJob) -> UpdateReport:
    """Apply ``job.source``'s upserts and deletes to the current version, as a new version."""
    if not job.incremental:
        raise ValueError("run_update applies changes: set incremental for it")
    built = Manifest.read(IndexDirectory(job.index_dir).current()).embedding
    model = job.model if job.model is not None else built.get("model")
    max_length = job.max_length or int(built.get("max_length", 256))
    strategy = embedding_strategy(job, model, max_length)
    return update_from_source(
        job.source,
        job.index_dir,
        strategy,
        keep_versions=job.keep,
        all_files=job.all_files,
        progress=job.progress,
    )

