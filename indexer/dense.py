"""The dense index: FAISS over unit vectors, keyed by document id, saved in a folder."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal, Sequence

import faiss
import numpy as np

from indexer.documents import Hit

DENSE_STAGE = "dense"
IndexKind = Literal["flat", "hnsw", "ivf"]


@dataclass(frozen=True)
class DenseConfig:
    """How vectors are indexed. ``flat`` is exact; ``hnsw`` and ``ivf`` trade recall for speed.

    ``ivf_nlist`` 0 picks about 4·√n lists at build time; IVF needs at least 39 vectors a list
    to train well, so small corpora get fewer lists.
    """

    kind: IndexKind = "flat"
    hnsw_m: int = 32
    hnsw_ef_construction: int = 200
    hnsw_ef_search: int = 128
    ivf_nlist: int = 0
    ivf_nprobe: int = 16

    def __post_init__(self) -> None:
        if self.kind not in ("flat", "hnsw", "ivf"):
            raise ValueError(f"dense index kind must be 'flat', 'hnsw' or 'ivf', not {self.kind!r}")
        for name in ("hnsw_m", "hnsw_ef_construction", "hnsw_ef_search", "ivf_nprobe"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.ivf_nlist < 0:
            raise ValueError(f"ivf_nlist must be 0 (automatic) or positive, got {self.ivf_nlist}")


class DenseIndex:
    """Exact or approximate inner-product search over vectors labelled with document ids.

    Internally each document id gets an int64 label (its position in ``ids``); FAISS stores
    labels, this class maps them back.
    """

    def __init__(self, dim: int, config: DenseConfig | None = None) -> None:
        if dim < 1:
            raise ValueError(f"dim must be positive, got {dim}")
        self.dim = dim
        self.config = config or DenseConfig()
        self.ids: list[str] = []
        self._index: faiss.Index | None = None

    def __len__(self) -> int:
        return 0 if self._index is None else int(self._index.ntotal)

    def build(self, ids: Sequence[str], vectors: np.ndarray) -> DenseIndex:
        """Index ``vectors`` (one row per id), replacing anything indexed before."""
        vectors = self._check(ids, vectors)
        if len(set(ids)) != len(ids):
            raise ValueError("document ids must be unique in a dense index")
        self._index = self._new_index(len(ids), vectors)
        self.ids = list(ids)
        self._index.add_with_ids(vectors, np.arange(len(ids), dtype=np.int64))
        self._index_params()
        return self

    def _new_index(self, n: int, vectors: np.ndarray) -> faiss.Index:
        cfg = self.config
        if cfg.kind == "hnsw":
            inner = faiss.IndexHNSWFlat(self.dim, cfg.hnsw_m, faiss.METRIC_INNER_PRODUCT)
            inner.hnsw.efConstruction = cfg.hnsw_ef_construction
        elif cfg.kind == "ivf":
            nlist = cfg.ivf_nlist or max(1, min(int(4 * math.sqrt(n)), n // 39))
            quantizer = faiss.IndexFlatIP(self.dim)
            inner = faiss.IndexIVFFlat(quantizer, self.dim, nlist, faiss.METRIC_INNER_PRODUCT)
            inner.train(vectors)
        else:
            inner = faiss.IndexFlatIP(self.dim)
        return faiss.IndexIDMap2(inner)

    def _index_params(self) -> None:
        inner = faiss.downcast_index(self._index.index)
        if isinstance(inner, faiss.IndexHNSW):
            inner.hnsw.efSearch = self.config.hnsw_ef_search
        elif isinstance(inner, faiss.IndexIVF):
            inner.nprobe = min(self.config.ivf_nprobe, inner.nlist)

    def search(self, queries: np.ndarray, k: int) -> list[list[Hit]]:
        """The top ``k`` documents for each query vector (rows of ``queries``), best first."""
        if self._index is None or k < 1:
            return [[] for _ in range(len(queries))]
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        if queries.ndim != 2 or queries.shape[1] != self.dim:
            raise ValueError(f"query vectors must have shape (n, {self.dim}), got {queries.shape}")
        scores, labels = self._index.search(queries, min(k, len(self)))
        return [
            [
                Hit(id=self.ids[label], score=float(score), scores={DENSE_STAGE: float(score)})
                for score, label in zip(row_scores, row_labels, strict=True)
                if label >= 0
            ]
            for row_scores, row_labels in zip(scores, labels, strict=True)
        ]

    def save(self, folder: str | Path) -> None:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        if self._index is None:
            raise RuntimeError("nothing to save: build the dense index first")
        faiss.write_index(self._index, str(folder / "index.faiss"))
        (folder / "ids.json").write_text(json.dumps(self.ids))
        (folder / "config.json").write_text(json.dumps({"dim": self.dim, **asdict(self.config)}))

    @classmethod
    def load(cls, folder: str | Path) -> DenseIndex:
        folder = Path(folder)
        if not (folder / "index.faiss").is_file():
            raise FileNotFoundError(f"no dense index in {str(folder)!r} (index.faiss is missing)")
        settings = json.loads((folder / "config.json").read_text())
        dense = cls(settings.pop("dim"), DenseConfig(**settings))
        dense._index = faiss.read_index(str(folder / "index.faiss"))
        dense.ids = json.loads((folder / "ids.json").read_text())
        dense._index_params()
        return dense

    def _check(self, ids: Sequence[str], vectors: np.ndarray) -> np.ndarray:
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[1] != self.dim:
            raise ValueError(f"vectors must have shape (n, {self.dim}), got {vectors.shape}")
        if len(ids) != len(vectors):
            raise ValueError(f"{len(ids)} ids for {len(vectors)} vectors")
        return vectors
