"""Embedding documents with Ray Data: an actor pool of embedder workers feeding the FAISS build.

:class:`RayEmbedding` is a :class:`~bertsearch.indexer.doc_embedding.DocumentEmbedder`, so ``build_index``
and ``apply_updates`` take it in place of the in-process strategy. The build plans its batches
(length-sorted, deterministic); each Ray Data row carries one planned batch, each actor embeds
rows with the same ``Embedder`` code as the in-process path, and the driver reassembles vectors
by batch number as they stream back (and checkpoints them).

Where it runs: ``RAY_ADDRESS`` (or ``address=``) joins a cluster; otherwise a local Ray starts
with this machine's CPUs and stops when the job ends. On a cluster with GPUs each actor takes
one GPU; without GPUs an actor takes a fraction of a CPU, because a pool that reserves every
CPU starves Ray Data's own read tasks, which then wait forever.

All Ray imports of bertsearch live in ``jobs/``; ``indexer`` never imports Ray. Ray starts (or is
joined) through ``jobs.runtime.ray_session``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from bertsearch.indexer.doc_embedding import EmbeddingBatch, embedding_identity
from bertsearch.indexer.models import DEFAULT_MODEL_NAME, Precision, resolve_model, weights_fingerprint
from bertsearch.jobs.runtime import ray_session

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RayEmbeddingConfig:
    """How the Ray Data embedding job is laid out.

    ``workers`` 0: one actor per GPU when the cluster has GPUs, else one actor. ``cpus_per_worker``
    is the CPU share Ray reserves for a CPU actor (keep it below the CPU count, see the module
    docstring); ``threads_per_worker`` 0 gives each CPU actor this machine's cores divided among the
    actors. ``batches_per_call``: planned batches handed to an actor per call (fewer calls, less
    overhead; more, finer streaming). ``use_gpus`` False keeps actors on CPUs even when GPUs exist.
    """

    model: str | None = None
    max_length: int = 256
    batch_size: int = 32
    precision: Precision = "auto"
    workers: int = 0
    cpus_per_worker: float = 0.5
    threads_per_worker: int = 0
    batches_per_call: int = 4
    use_gpus: bool = True
    address: str | None = None

    def __post_init__(self) -> None:
        if self.max_length < 8:
            raise ValueError(f"max_length must be at least 8 tokens, got {self.max_length}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {self.batch_size}")
        if self.workers < 0:
            raise ValueError(f"workers must be 0 (automatic) or positive, got {self.workers}")
        if not 0 < self.cpus_per_worker <= 64:
            raise ValueError(
                f"cpus_per_worker must be in (0, 64], got {self.cpus_per_worker}; use a fraction "
                "such as 0.5 on small machines so Ray Data's read tasks still get a CPU"
            )
        if self.threads_per_worker < 0:
            raise ValueError(
                f"threads_per_worker must be 0 (automatic) or positive, got {self.threads_per_worker}"
            )
        if self.batches_per_call < 1:
            raise ValueError(f"batches_per_call must be at least 1, got {self.batches_per_call}")
        if self.precision not in ("auto", "fp32", "bf16"):
            raise ValueError(f"precision must be 'auto', 'fp32' or 'bf16', not {self.precision!r}")


class WorkerModelMismatch(RuntimeError):
    """A Ray worker loaded other weights than the driver planned for (a cluster with mixed images)."""


class _EmbedWorker:
    """One actor of the pool: loads the model once, then embeds planned batches."""

    def __init__(
        self, config: RayEmbeddingConfig, threads: int, device: str | None, expected_fingerprint: str
    ) -> None:
        import torch

        from bertsearch.indexer.embedder import Embedder

        if threads:
            torch.set_num_threads(threads)
        self.embedder = Embedder(
            config.model,
            max_length=config.max_length,
            batch_size=config.batch_size,
            device=device,
            precision=config.precision,
        ).load()
        found = self.embedder.fingerprint()
        if found != expected_fingerprint:
            raise WorkerModelMismatch(
                f"this Ray worker has model {self.embedder.model_name!r} with weights {found}, but the "
                f"job planned weights {expected_fingerprint}: give every node the same model files"
            )

    def __call__(self, rows: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        numbers, vectors = [], []
        for number, texts in zip(rows["batch"], rows["texts"], strict=True):
            embedded = self.embedder.embed([str(t) for t in texts])
            numbers.append(np.full(len(embedded), int(number), dtype=np.int64))
            vectors.append(embedded)
        return {"batch": np.concatenate(numbers), "vector": np.concatenate(vectors)}


class RayEmbedding:
    """Embed planned batches with a Ray Data actor pool (see the module docstring)."""

    name = "ray"

    def __init__(self, config: RayEmbeddingConfig | None = None) -> None:
        self.config = config or RayEmbeddingConfig()
        self.batch_size = self.config.batch_size
        self._identity: dict[str, Any] | None = None

    def identity(self) -> dict[str, Any]:
        """The model the vectors come from, read on the driver without loading the weights."""
        if self._identity is None:
            from transformers import AutoConfig

            path = resolve_model(self.config.model)
            self._identity = embedding_identity(
                model=str(self.config.model) if self.config.model is not None else DEFAULT_MODEL_NAME,
                fingerprint=weights_fingerprint(path),
                dim=int(AutoConfig.from_pretrained(path).hidden_size),
                max_length=self.config.max_length,
                precision=self.config.precision,
            )
        return dict(self._identity)

    def layout(self) -> dict[str, Any]:
        """Actors, and the resources each takes, for the Ray cluster this process is connected to."""
        import ray

        cfg = self.config
        gpus = int(ray.cluster_resources().get("GPU", 0)) if cfg.use_gpus else 0
        if gpus:
            workers = cfg.workers or gpus
            return {"workers": workers, "num_gpus": 1, "num_cpus": 1, "threads": 0, "device": None}
        cpus = os.cpu_count() or 1
        workers = cfg.workers or 1
        threads = cfg.threads_per_worker or max(1, cpus // workers)
        return {
            "workers": workers,
            "num_gpus": 0,
            "num_cpus": cfg.cpus_per_worker,
            "threads": threads,
            "device": "cpu",
        }

    def embed_batches(self, batches: Sequence[EmbeddingBatch]) -> Iterator[tuple[int, np.ndarray]]:
        if not batches:
            return
        with ray_session(self.config.address):
            yield from self._run(batches)

    def _run(self, batches: Sequence[EmbeddingBatch]) -> Iterator[tuple[int, np.ndarray]]:
        import ray.data

        ray.data.DataContext.get_current().enable_progress_bars = False
        layout = self.layout()
        log.info("embedding %d batches on Ray: %s", len(batches), layout)
        per_call = self.config.batches_per_call
        rows = [{"batch": b.index, "texts": list(b.texts)} for b in batches]
        dataset = ray.data.from_items(rows, override_num_blocks=max(1, -(-len(rows) // per_call)))
        embedded = dataset.map_batches(
            _EmbedWorker,
            fn_constructor_kwargs={
                "config": self.config,
                "threads": layout["threads"],
                "device": layout["device"],
                "expected_fingerprint": self.identity()["fingerprint"],
            },
            batch_size=per_call,
            batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=layout["workers"]),
            num_cpus=layout["num_cpus"],
            num_gpus=layout["num_gpus"],
        )
        expected = {b.index: len(b.ids) for b in batches}
        pending: dict[int, list[np.ndarray]] = {}
        # Rows of one planned batch arrive together and in order, but a driver-side batch may
        # split them: collect until each planned batch is whole.
        for part in embedded.iter_batches(batch_size=None, batch_format="numpy"):
            for number, vector in zip(part["batch"].tolist(), part["vector"], strict=True):
                pending.setdefault(number, []).append(vector)
                if len(pending[number]) == expected[number]:
                    yield number, np.stack(pending.pop(number)).astype(np.float32, copy=False)
        if pending:
            raise RuntimeError(f"Ray returned incomplete embedding batches: {sorted(pending)[:5]}")
