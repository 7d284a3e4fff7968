"""``bertsearch pretrain``: domain-adaptive masked-LM pre-training of BERT on a corpus, on Ray Train.

The flow: the corpus's documents (``CorpusReader``: bad lines are counted and logged, not fatal)
-> token chunks of ``max_length`` (``ranker.training.mlm.chunk_documents``) -> a Ray
``TorchTrainer`` with DDP workers (``jobs.training.pretrain_worker``) -> a checkpoint per epoch
under ``work_dir/ray`` -> the last epoch's ``save_pretrained`` folder (model + tokenizer) published
to OUT with ``pretraining.json``, how it was made. ``bertsearch train --base-model OUT``
fine-tunes the cross-encoder from it (the encoder's weights from OUT, the relevance head fresh).

The work folder (default ``OUT.work``) holds the run's settings and Ray's checkpoints: running
the same job again after a kill resumes after the last checkpoint, and running a finished job
again publishes its last epoch without training.
"""

from __future__ import annotations

import logging
import shutil
import time
from dataclasses import asdict, dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any

from bertsearch.indexer.corpus import CorpusReader, files_digest
from bertsearch.indexer.models import DEFAULT_MODEL_NAME, resolve_model
from bertsearch.jobs.training.pretrain_worker import pretrain_loop_per_worker
from bertsearch.jobs.training.ray_fit import (
    RayScaling,
    absolute_base_model,
    check_run_settings,
    epoch_model_dir,
    run_trainer,
)
from bertsearch.ranker.model_dir import publish_folder
from bertsearch.ranker.training.mlm import (
    PretrainConfig,
    check_max_length,
    chunk_documents,
    mlm_steps_per_epoch,
)

log = logging.getLogger(__name__)
PRETRAINING_FILE = "pretraining.json"
SHOWN_REJECTS = 5  # bad lines quoted in the log and in pretraining.json; all are counted


@dataclass(frozen=True)
class PretrainJob:
    """One ``bertsearch pretrain`` run: ``corpus`` (a BEIR folder, a corpus.jsonl[.gz] file or a
    folder of JSONL files), at most ``limit`` of its documents (None: all), into ``out``."""

    corpus: Path
    out: Path
    work_dir: Path | None = None
    fresh: bool = False  # clear work_dir first: start over instead of resuming
    limit: int | None = None
    train: PretrainConfig = field(default_factory=PretrainConfig)
    scaling: RayScaling = field(default_factory=RayScaling)

    def __post_init__(self) -> None:
        if self.limit is not None and self.limit < 1:
            raise ValueError(f"--limit must be at least 1 document, got {self.limit}")

    @property
    def resolved_work_dir(self) -> Path:
        return self.work_dir if self.work_dir is not None else self.out.with_name(self.out.name + ".work")


@dataclass
class PretrainOutcome:
    model_dir: Path
    history: list[dict[str, Any]]
    seconds: float
    record: dict[str, Any]


def run(job: PretrainJob) -> PretrainOutcome:
    """Chunk the corpus, train on Ray (or resume), publish the last epoch to ``job.out``.

    Raises CorpusError for a corpus that cannot be read, ValueError for settings that cannot run
    (too few chunks for one step, a length the model has no positions for, a work folder of
    another run), and ray.train.TrainingFailedError when the workers fail more than
    ``job.scaling.max_failures`` times.
    """
    started = time.perf_counter()
    reader = CorpusReader(job.corpus)  # a missing or unreadable source fails here, before any work
    config = absolute_base_model(job.train)
    weights = resolve_model(config.base_model)
    check_max_length(weights, config.max_length)
    work_dir = job.resolved_work_dir
    if job.fresh and work_dir.exists():
        log.info("--fresh: clearing %s (an earlier run's checkpoints)", work_dir)
        shutil.rmtree(work_dir)
    chunks = chunk_documents(islice(reader, job.limit), _tokenizer(weights), config.max_length)
    if reader.rejects:
        log.warning("%s: %d bad lines skipped, e.g. %s", job.corpus, len(reader.rejects),
                    "; ".join(str(r) for r in reader.rejects[:SHOWN_REJECTS]))  # fmt: skip
    if not len(chunks):
        raise ValueError(
            f"{job.corpus}: no document with text to pre-train on ({len(reader.rejects)} bad lines)"
        )
    log.info("%d documents -> %d chunks of at most %d tokens (%d tokens)", chunks.documents, len(chunks),
             config.max_length, chunks.tokens)  # fmt: skip
    data = {
        "corpus": str(Path(job.corpus).resolve()),
        "corpus_sha256": files_digest(reader.files),
        "limit": job.limit,
        "documents": chunks.documents,
        "chunks": len(chunks),
    }
    mlm_steps_per_epoch(len(chunks), job.scaling.workers, config)  # too few chunks: refused, nothing written
    check_run_settings(work_dir, config, job.scaling, None, data=data)
    history = run_trainer(pretrain_loop_per_worker, {"config": config}, job.scaling, work_dir,
                          epochs=config.epochs, shared={"chunks": chunks})  # fmt: skip
    last = int(history[-1]["epoch"])
    seconds = time.perf_counter() - started
    record = {
        "base_model": job.train.base_model or DEFAULT_MODEL_NAME,
        "base_model_path": config.base_model or weights,
        "data": {
            **data,
            "tokens": chunks.tokens,
            "bad_lines": len(reader.rejects),
            "bad_line_examples": [str(r) for r in reader.rejects[:SHOWN_REJECTS]],
        },  # fmt: skip
        "epoch": last,
        "hyperparameters": config.to_dict(),
        "scaling": asdict(job.scaling),
        "epochs": history,
        "wall_seconds": round(seconds, 1),
        "train_seconds": round(sum(e["train_seconds"] for e in history), 1),
        "hardware": job.scaling.describe(),
    }
    publish_folder(epoch_model_dir(work_dir, last), job.out, {PRETRAINING_FILE: record})
    return PretrainOutcome(model_dir=job.out, history=history, seconds=seconds, record=record)


def _tokenizer(weights: str):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(weights)
