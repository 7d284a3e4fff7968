"""The dense index: FAISS over unit vectors, keyed by document id, saved in a folder.

Each document id gets an int64 label that FAISS stores; this class maps labels back to ids.
Labels are never reused: a saved ``ids.json`` lists the id of every label given since the
last full build, ``null`` where the document was removed or replaced.

Deletes work for every kind: flat indexes sit in an ``IndexIDMap2`` and IVF indexes carry
their own ids (with a hash-table direct map), so both remove vectors directly. HNSW graphs
cannot remove a node, so a deleted HNSW label becomes a tombstone, filtered out during search
by an ID selector, until tombstones pass ``hnsw_rebuild_fraction`` of the graph and
``compact()`` rebuilds it from the live vectors.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

try:
    import faiss
except ImportError as err:  # faiss-cpu and faiss-gpu both provide `faiss`; the extras pick one
    raise ImportError(
        "bertsearch needs FAISS: install `bertsearch[cpu]` (faiss-cpu) or `bertsearch[gpu]` (faiss-gpu)"
    ) from err
import numpy as np

from bertsearch.indexer.documents import Hit

DENSE_STAGE = "dense"
IndexKind = Literal["flat", "hnsw", "ivf"]
INDEX_FILE = "index.faiss"
IDS_FILE = "ids.json"
CONFIG_FILE = "config.json"
TOMBSTONES_FILE = "tombstones.json"


@dataclass(frozen=True)
class DenseConfig:
    """How vectors are indexed. ``flat`` is exact; ``hnsw`` and ``ivf`` trade recall for speed.

    ``ivf_nlist`` 0 picks about 4·√n lists at build time; IVF needs at least 39 vectors a list
    to train well, so small corpora get fewer lists. ``hnsw_rebuild_fraction``: the share of
    deleted (tombstoned) HNSW nodes past which an update rebuilds the graph.
    """

    kind: IndexKind = "flat"
    hnsw_m: int = 32
    hnsw_ef_construction: int = 200
    hnsw_ef_search: int = 128
    ivf_nlist: int = 0
    ivf_nprobe: int = 16
    hnsw_rebuild_fraction: float = 0.2

    def __post_init__(self) -> None:
        if self.kind not in ("flat", "hnsw", "ivf"):
            raise ValueError(f"dense index kind must be 'flat', 'hnsw' or 'ivf', not {self.kind!r}")
        for name in ("hnsw_m", "hnsw_ef_construction", "hnsw_ef_search", "ivf_nprobe"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.ivf_nlist < 0:
            raise ValueError(f"ivf_nlist must be 0 (automatic) or positive, got {self.ivf_nlist}")
        if not 0.0 < self.hnsw_rebuild_fraction <= 1.0:
            raise ValueError(
                f"hnsw_rebuild_fraction must be in (0, 1], got {self.hnsw_rebuild_fraction}"
            )


class DenseIndex:
    """Exact or approximate inner-product search over vectors labelled with document ids."""

    def __init__(self, dim: int, config: DenseConfig | None = None) -> None:
        if dim < 1:
            raise ValueError(f"dim must be positive, got {dim}")
        self.dim = dim
        self.config = config or DenseConfig()
        self._labels: list[str | None] = []  # label -> document id; None once removed
        self._label_of: dict[str, int] = {}  # live document id -> label
        self._tombstones: set[int] = set()  # HNSW labels deleted but still in the graph
        self._index: faiss.Index | None = None
        self._gpu_index: faiss.Index | None = None  # a GPU copy for search, once moved (serving)

    def __len__(self) -> int:
        return len(self._label_of)

    def __contains__(self, doc_id: object) -> bool:
        return doc_id in self._label_of

    @property
    def ids(self) -> list[str]:
        """Live document ids, in label (insertion) order."""
        return [doc_id for doc_id in self._labels if doc_id is not None]

    @property
    def tombstones(self) -> int:
        """Deleted HNSW nodes still in the graph (always 0 for flat and IVF)."""
        return len(self._tombstones)

    def build(self, ids: Sequence[str], vectors: np.ndarray) -> DenseIndex:
        """Index ``vectors`` (one row per id), replacing anything indexed before."""
        vectors = self._check(ids, vectors)
        if len(set(ids)) != len(ids):
            raise ValueError("document ids must be unique in a dense index")
        self._index = self._new_index(len(ids), vectors)
        self._gpu_index = None  # a GPU copy would be stale: move again after changes
        self._labels = list(ids)
        self._label_of = {doc_id: label for label, doc_id in enumerate(ids)}
        self._tombstones = set()
        if len(ids):
            self._index.add_with_ids(vectors, np.arange(len(ids), dtype=np.int64))
        self._index_params()
        return self

    def upsert(self, ids: Sequence[str], vectors: np.ndarray) -> DenseIndex:
        """Add documents, replacing the vectors of ids already indexed."""
        vectors = self._check(ids, vectors)
        if len(set(ids)) != len(ids):
            raise ValueError("document ids must be unique within one upsert")
        if self._index is None:
            return self.build(ids, vectors)
        self.delete([doc_id for doc_id in ids if doc_id in self._label_of])
        self._gpu_index = None
        first = len(self._labels)
        labels = np.arange(first, first + len(ids), dtype=np.int64)
        self._index.add_with_ids(vectors, labels)
        self._labels.extend(ids)
        self._label_of.update(zip(ids, labels.tolist(), strict=True))
        return self

    def delete(self, ids: Iterable[str]) -> int:
        """Remove documents by id; unknown ids are ignored. Returns how many were removed."""
        labels = [self._label_of.pop(doc_id) for doc_id in dict.fromkeys(ids) if doc_id in self._label_of]
        if not labels:
            return 0
        self._gpu_index = None
        if self._is_hnsw():
            self._tombstones.update(labels)
        else:
            self._remove(np.asarray(labels, dtype=np.int64))
        for label in labels:
            self._labels[label] = None
        return len(labels)

    @property
    def needs_compaction(self) -> bool:
        """Whether tombstones have grown past ``hnsw_rebuild_fraction`` of the HNSW graph."""
        if not self._tombstones or self._index is None:
            return False
        return len(self._tombstones) > self.config.hnsw_rebuild_fraction * self._index.ntotal

    def compact(self) -> DenseIndex:
        """Rebuild from the live vectors: drops tombstones and renumbers labels from 0."""
        ids, vectors = self.items()
        return self.build(ids, vectors)

    def vectors(self, ids: Sequence[str]) -> np.ndarray:
        """The stored vectors of ``ids`` (rows in the given order); KeyError for an unknown id."""
        missing = [doc_id for doc_id in ids if doc_id not in self._label_of]
        if missing:
            raise KeyError(f"not in the dense index: {missing[:5]}")
        if not ids:
            return np.zeros((0, self.dim), dtype=np.float32)
        labels = np.asarray([self._label_of[doc_id] for doc_id in ids], dtype=np.int64)
        return self._index.reconstruct_batch(labels)

    def items(self) -> tuple[list[str], np.ndarray]:
        """Every live id and its vector, in label (insertion) order."""
        ids = self.ids
        return ids, self.vectors(ids)

    def _new_index(self, n: int, vectors: np.ndarray) -> faiss.Index:
        cfg = self.config
        if cfg.kind == "ivf":
            # Native IVF ids, not an IndexIDMap2: IDMap's remove_ids desynchronises its id map
            # from IVF lists (it assumes the inner index renumbers, which IVF does not).
            nlist = cfg.ivf_nlist or max(1, min(int(4 * math.sqrt(n)), n // 39))
            quantizer = faiss.IndexFlatIP(self.dim)
            index = faiss.IndexIVFFlat(quantizer, self.dim, nlist, faiss.METRIC_INNER_PRODUCT)
            index.train(vectors)
            index.set_direct_map_type(faiss.DirectMap.Hashtable)  # reconstruct and remove by id
            return index
        if cfg.kind == "hnsw":
            inner = faiss.IndexHNSWFlat(self.dim, cfg.hnsw_m, faiss.METRIC_INNER_PRODUCT)
            inner.hnsw.efConstruction = cfg.hnsw_ef_construction
        else:
            inner = faiss.IndexFlatIP(self.dim)
        return faiss.IndexIDMap2(inner)

    def _inner(self) -> faiss.Index:
        index = faiss.downcast_index(self._index)
        return faiss.downcast_index(index.index) if isinstance(index, faiss.IndexIDMap) else index

    def _is_hnsw(self) -> bool:
        return isinstance(self._inner(), faiss.IndexHNSW)

    def _remove(self, labels: np.ndarray) -> None:
        index = faiss.downcast_index(self._index)
        if isinstance(index, faiss.IndexIVF):
            index.remove_ids(faiss.IDSelectorArray(labels))  # the hash-table map wants an array
        elif isinstance(index, faiss.IndexIDMap) and isinstance(self._inner(), faiss.IndexIVF):
            raise ValueError(
                "this IVF index was built inside an IndexIDMap2, whose removals corrupt ids; "
                "rebuild it with `bertsearch index SOURCE` (full build) before deleting"
            )
        else:
            index.remove_ids(faiss.IDSelectorBatch(labels))

    def _index_params(self) -> None:
        inner = self._inner()
        if isinstance(inner, faiss.IndexHNSW):
            inner.hnsw.efSearch = self.config.hnsw_ef_search
        elif isinstance(inner, faiss.IndexIVF):
            inner.nprobe = min(self.config.ivf_nprobe, inner.nlist)

    def search(self, queries: np.ndarray, k: int) -> list[list[Hit]]:
        """The top ``k`` documents for each query vector (rows of ``queries``), best first."""
        if self._index is None or k < 1 or len(self) == 0:
            return [[] for _ in range(len(queries))]
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        if queries.ndim != 2 or queries.shape[1] != self.dim:
            raise ValueError(f"query vectors must have shape (n, {self.dim}), got {queries.shape}")
        k = min(k, len(self))
        if self._tombstones:
            # Filter inside the graph walk, so k live hits come back rather than k minus the dead.
            dead = faiss.IDSelectorBatch(np.fromiter(self._tombstones, dtype=np.int64))
            alive = faiss.IDSelectorNot(dead)
            params = faiss.SearchParametersHNSW(sel=alive, efSearch=max(self.config.hnsw_ef_search, k))
            scores, labels = self._index.search(queries, k, params=params)
            del alive, dead  # the selectors must outlive the search call
        else:
            scores, labels = (self._gpu_index or self._index).search(queries, k)
        return [
            [
                Hit(id=self._labels[label], score=float(score), scores={DENSE_STAGE: float(score)})
                for score, label in zip(row_scores, row_labels, strict=True)
                if label >= 0
            ]
            for row_scores, row_labels in zip(scores, labels, strict=True)
        ]

    def search_on_gpu(self) -> bool:
        """Search a copy of the index on the GPU when faiss-gpu and a GPU are present (flat and
        IVF indexes; HNSW has no GPU version). Updates, saving and reconstruction keep using the
        CPU index; on a machine without faiss-gpu or a GPU nothing changes. True when moved."""
        if not hasattr(faiss, "StandardGpuResources") or faiss.get_num_gpus() < 1 or self._index is None:
            return False
        if self._is_hnsw():
            return False
        try:
            self._gpu_resources = faiss.StandardGpuResources()
            self._gpu_index = faiss.index_cpu_to_gpu(self._gpu_resources, 0, self._index)
        except RuntimeError:  # an index type faiss cannot move: the CPU one serves
            self._gpu_index = None
        return self._gpu_index is not None

    def save(self, folder: str | Path) -> None:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        if self._index is None:
            raise RuntimeError("nothing to save: build the dense index first")
        faiss.write_index(self._index, str(folder / INDEX_FILE))
        (folder / IDS_FILE).write_text(json.dumps(self._labels))
        (folder / TOMBSTONES_FILE).write_text(json.dumps(sorted(self._tombstones)))
        (folder / CONFIG_FILE).write_text(json.dumps({"dim": self.dim, **asdict(self.config)}))

    @classmethod
    def load(cls, folder: str | Path) -> DenseIndex:
        folder = Path(folder)
        if not (folder / INDEX_FILE).is_file():
            raise FileNotFoundError(f"no dense index in {str(folder)!r} ({INDEX_FILE} is missing)")
        settings = json.loads((folder / CONFIG_FILE).read_text())
        dense = cls(settings.pop("dim"), DenseConfig(**settings))
        dense._index = faiss.read_index(str(folder / INDEX_FILE))
        dense._labels = json.loads((folder / IDS_FILE).read_text())
        tombstones = folder / TOMBSTONES_FILE
        dense._tombstones = set(json.loads(tombstones.read_text())) if tombstones.is_file() else set()
        dense._label_of = {doc_id: label for label, doc_id in enumerate(dense._labels) if doc_id is not None}
        dense._index_params()
        return dense

    def _check(self, ids: Sequence[str], vectors: np.ndarray) -> np.ndarray:
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[1] != self.dim:
            raise ValueError(f"vectors must have shape (n, {self.dim}), got {vectors.shape}")
        if len(ids) != len(vectors):
            raise ValueError(f"{len(ids)} ids for {len(vectors)} vectors")
        return vectors
