"""A reranker's model folder: weights in ``save_pretrained`` format plus ``metadata.json``.

:class:`ModelRecord` is what ``metadata.json`` holds, read and written only here. Its typed
fields are what serving reads back (the trained length and the operating point: how many fused
candidates to rerank and how much the reranker's score counts); ``provenance`` is the rest, how
the model was made (hyper-parameters, epochs, data, hardware), kept as the trainer wrote it.

On disk the record is one flat JSON object, as it was before it had a version: files without a
``format_version`` are read as version 1, and a newer version than this code knows is refused.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from bertsearch.indexer import atomic

METADATA_FILE = "metadata.json"
FORMAT_VERSION = 1
DEFAULT_MAX_LENGTH = 256
DEFAULT_RERANK_TOP_N = 50
DEFAULT_RERANK_WEIGHT = 1.0  # a model that was never tuned: the reranker alone decides

# The typed keys; every other key of the file is provenance.
_SERVING_KEYS = (
    "base_model", "max_length", "rerank_weight", "rerank_top_n", "rerank_weight_tuning", "unseen_corpus"
)  # fmt: skip
IN_DOMAIN, UNSEEN, UNKNOWN = "in-domain", "unseen", "unknown"


@dataclass(frozen=True)
class ModelRecord:
    """What ``metadata.json`` says about a model folder.

    ``rerank_weight`` / ``rerank_top_n`` are None until a dev split, ``tune-rerank-weight`` or
    ``transfer-rerank-weight`` (or a label-free run's flags) chose them; serving then uses the
    defaults (:attr:`serving_weight`, :attr:`serving_top_n`). ``rerank_weight_tuning`` records
    how they were chosen. ``unseen_corpus`` is the operating point for corpora the model was
    not trained on (``rerank_top_n``, ``rerank_weight`` and how they were chosen: ``bertsearch
    loco``); :meth:`operating_point` picks one of the two for the corpus an index was built from.
    """

    base_model: str | None = None
    max_length: int = DEFAULT_MAX_LENGTH
    rerank_weight: float | None = None
    rerank_top_n: int | None = None
    rerank_weight_tuning: Mapping[str, Any] | None = None
    unseen_corpus: Mapping[str, Any] | None = None
    provenance: Mapping[str, Any] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION

    def __post_init__(self) -> None:
        if self.max_length < 8:
            raise ValueError(f"max_length must be at least 8 tokens, got {self.max_length}")
        if self.rerank_weight is not None and not 0.0 <= self.rerank_weight <= 1.0:
            raise ValueError(f"rerank_weight must be between 0 and 1, got {self.rerank_weight}")
        if self.rerank_top_n is not None and self.rerank_top_n < 1:
            raise ValueError(f"rerank_top_n must be at least 1, got {self.rerank_top_n}")
        if self.unseen_corpus is not None:
            top_n, weight = self.unseen_corpus.get("rerank_top_n"), self.unseen_corpus.get("rerank_weight")
            if (
                not isinstance(top_n, int)
                or top_n < 1
                or not isinstance(weight, int | float)
                or not 0 <= weight <= 1
            ):
                raise ValueError(f"unseen_corpus needs rerank_top_n >= 1 and rerank_weight in [0, 1], "
                                 f"got {top_n!r} and {weight!r}")  # fmt: skip
        clash = [key for key in self.provenance if key in (*_SERVING_KEYS, "format_version")]
        if clash:
            raise ValueError(f"provenance may not hold the record's own fields: {', '.join(clash)}")

    @property
    def serving_weight(self) -> float:
        return DEFAULT_RERANK_WEIGHT if self.rerank_weight is None else self.rerank_weight

    @property
    def serving_top_n(self) -> int:
        return DEFAULT_RERANK_TOP_N if self.rerank_top_n is None else self.rerank_top_n

    def with_operating_point(
        self, weight: float, top_n: int | None, tuning: Mapping[str, Any], max_length: int | None = None
    ) -> ModelRecord:
        """This record serving ``weight`` at ``top_n`` candidates, reading ``max_length`` tokens
        per pair (None: keep the depth and the length it has)."""
        return replace(
            self,
            rerank_weight=weight,
            rerank_top_n=self.rerank_top_n if top_n is None else top_n,
            max_length=self.max_length if max_length is None else max_length,
            rerank_weight_tuning=dict(tuning),
        )

    def with_unseen_point(self, top_n: int, weight: float, tuning: Mapping[str, Any]) -> ModelRecord:
        """This record serving ``weight`` at ``top_n`` on corpora it was not trained on."""
        return replace(self, unseen_corpus={**tuning, "rerank_top_n": top_n, "rerank_weight": weight})

    def trained_on(self, corpus: Mapping[str, Any] | None) -> str:
        """Whether ``corpus`` (an index's ``{"source", "digest"}``) is one this model was trained on:
        IN_DOMAIN, UNSEEN, or UNKNOWN when either side does not say (older model folders)."""
        data = self.provenance.get("data")
        corpora = list(data.get("corpora") or []) if isinstance(data, Mapping) else []
        tuned = (self.rerank_weight_tuning or {}).get("corpus")
        corpora += [tuned] if tuned else []  # a corpus the point was tuned on is its domain too
        corpora = [known for known in corpora if isinstance(known, Mapping)]
        if not corpus or not corpora:
            return UNKNOWN
        for known in corpora:
            if corpus.get("digest") and known.get("digest") == corpus.get("digest"):
                return IN_DOMAIN
            if corpus.get("source") and known.get("source") == corpus.get("source"):
                return IN_DOMAIN  # the same corpus, changed since (documents added or updated)
        return UNSEEN

    def operating_point(self, corpus: Mapping[str, Any] | None) -> tuple[int, float, str]:
        """(rerank_top_n, rerank_weight, domain) to serve on ``corpus``: the unseen-corpus point for
        a corpus the model was not trained on, when it has one; the tuned point otherwise."""
        domain = self.trained_on(corpus)
        if domain == UNSEEN and self.unseen_corpus is not None:
            return int(self.unseen_corpus["rerank_top_n"]), float(self.unseen_corpus["rerank_weight"]), UNSEEN
        return self.serving_top_n, self.serving_weight, domain

    def without_operating_point(self) -> ModelRecord:
        return replace(self, rerank_weight=None, rerank_top_n=None, rerank_weight_tuning=None)

    def with_provenance(self, **entries: Any) -> ModelRecord:
        return replace(self, provenance={**self.provenance, **entries})

    def to_dict(self) -> dict[str, Any]:
        typed = {
            "format_version": self.format_version,
            "base_model": self.base_model,
            "max_length": self.max_length,
            "rerank_weight": self.rerank_weight,
            "rerank_top_n": self.rerank_top_n,
            "rerank_weight_tuning": dict(self.rerank_weight_tuning) if self.rerank_weight_tuning else None,
            "unseen_corpus": dict(self.unseen_corpus) if self.unseen_corpus else None,
        }
        return {**{k: v for k, v in typed.items() if v is not None}, **self.provenance}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, where: str = METADATA_FILE) -> ModelRecord:
        version = data.get("format_version", 1)
        if not isinstance(version, int) or version < 1:
            raise ValueError(f"{where}: format_version must be a positive integer, got {version!r}")
        if version > FORMAT_VERSION:
            raise ValueError(
                f"{where} has format version {version}, but this bertsearch reads up to "
                f"{FORMAT_VERSION}: upgrade bertsearch to serve this model"
            )
        try:
            return cls(
                base_model=data.get("base_model"),
                max_length=int(data.get("max_length", DEFAULT_MAX_LENGTH)),
                rerank_weight=None if data.get("rerank_weight") is None else float(data["rerank_weight"]),
                rerank_top_n=None if data.get("rerank_top_n") is None else int(data["rerank_top_n"]),
                rerank_weight_tuning=data.get("rerank_weight_tuning"),
                unseen_corpus=data.get("unseen_corpus"),
                provenance={k: v for k, v in data.items() if k not in (*_SERVING_KEYS, "format_version")},
                format_version=FORMAT_VERSION,
            )
        except (TypeError, ValueError) as err:
            raise ValueError(f"{where}: {err}") from err

    @classmethod
    def read(cls, model_dir: str | Path) -> ModelRecord | None:
        """The folder's record; None for a folder without ``metadata.json`` or a hub id.

        Raises ValueError, naming the file, when it is not a readable record.
        """
        path = Path(model_dir) / METADATA_FILE
        if not path.is_file():
            return None
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            raise ValueError(f"{path} is not readable JSON ({error}); fix or remove it") from error
        if not isinstance(data, dict):
            raise ValueError(f"{path} must hold a JSON object, not {type(data).__name__}")
        return cls.from_dict(data, where=str(path))

    @classmethod
    def require(cls, model_dir: str | Path) -> ModelRecord:
        """The folder's record, or FileNotFoundError saying which command writes one."""
        record = cls.read(model_dir)
        if record is None:
            raise FileNotFoundError(
                f"{model_dir}: no {METADATA_FILE}; give a MODEL_DIR from `bertsearch train`"
            )
        return record

    def write(self, model_dir: str | Path) -> None:
        atomic.write_json(Path(model_dir) / METADATA_FILE, self.to_dict())


def publish_model(source: Path, out: Path, record: ModelRecord) -> None:
    """Copy the model folder ``source`` to ``out`` with ``record``, replacing ``out`` whole."""
    publish_folder(source, out, {METADATA_FILE: record.to_dict()})


def publish_folder(source: Path, out: Path, records: Mapping[str, Any]) -> None:
    """Copy the folder ``source`` to ``out`` with ``records`` (file name -> JSON data) added,
    replacing ``out`` whole: a reader sees the old folder or the complete new one, never half."""
    out = Path(out)
    staging = out.with_name(out.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(source, staging)
    for name, data in records.items():
        atomic.write_json(staging / name, data)
    atomic.replace_directory(staging, out)
