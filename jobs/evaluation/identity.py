"""The identity of an evaluation run: what was evaluated, on what, with which models and software.

``describe`` records the dataset split (with a checksum of its qrels), the configurations, the
index version, the encoder and reranker (paths, weight fingerprints, settings), the statistics
settings, the machine (``machine``) and the installed package versions (``software``): enough
to reproduce the run, written into the report.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

from bertsearch.indexer.models import resolve_model, weights_fingerprint
from bertsearch.indexer.snapshot import IndexSnapshot
from bertsearch.jobs.datasets.beir import BeirDataset, JudgedQueries
from bertsearch.jobs.evaluation.config import EvalConfig
from bertsearch.jobs.evaluation.scoring import BOOTSTRAP_SAMPLES
from bertsearch.jobs.runtime import machine
from bertsearch.ranker.pipeline import SearchPipeline

# -- identity -----------------------------------------------------------------------------------


def describe(
    config: EvalConfig,
    dataset: BeirDataset,
    judged: JudgedQueries,
    snapshot: IndexSnapshot,
    built: bool,
    pipeline: SearchPipeline,
    command: str | None,
) -> dict:
    """What was evaluated, on what, with which models and software: enough to reproduce it."""
    reranker = None
    if pipeline.reranker is not None:
        path = resolve_model(config.reranker)
        reranker = {
            "path": str(Path(path).resolve()),
            "fingerprint": weights_fingerprint(path),
            "max_length": pipeline.reranker.max_length,
            "model_max_length": pipeline.reranker.record.max_length,
            "precision": config.rerank_precision,
            "bf16": pipeline.reranker.bf16,
            "model_rerank_weight": pipeline.rerank_point[1],
            "model_rerank_top_n": pipeline.rerank_point[0],
            "domain": pipeline.rerank_point[2],  # whether this corpus is one the model was trained on
        }
    return {
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": command,
        "dataset": {
            "name": dataset.name,
            "path": str(dataset.root.resolve()),
            "corpus": str(dataset.corpus_path.resolve()),
            "split": config.split,
            "qrels": str(dataset.qrels_path(config.split).resolve()),
            "qrels_sha256": _sha256(dataset.qrels_path(config.split)),
            "queries": len(judged),
            "skipped_queries": list(judged.skipped),
            "judgments": sum(len(d) for d in judged.qrels.values()),
        },
        "configs": {name: asdict(pc) for name, pc in config.pipeline_configs().items()},
        "depth": config.depth,
        "index": {
            "path": str(snapshot.path.resolve()),
            "built_by_this_run": built,
            "manifest": asdict(snapshot.manifest),
        },
        "corpus": snapshot.manifest.corpus(),  # what the index was built from (source, digest)
        "encoder": {
            "model": pipeline.encoder.model_name,
            "fingerprint": pipeline.encoder.fingerprint(),
            "max_length": pipeline.encoder.max_length,
            "precision": config.precision,
            "bf16": pipeline.encoder.bf16,
        },
        "reranker": reranker,
        "stat_test": config.stat_test,
        "max_p": config.max_p,
        "bootstrap": {"samples": BOOTSTRAP_SAMPLES, "seed": config.seed},
        "machine": machine(),
        "software": software(),
    }


def software() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for package in ("bertsearch", "ranx", "torch", "transformers", "faiss-cpu", "tantivy", "numpy"):
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            found[package] = None
    return found


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
