"""One version of an index, opened for searching: its manifest, lexical and dense parts."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bertsearch.indexer.build import DENSE_DIR
from bertsearch.indexer.dense import DenseIndex
from bertsearch.indexer.lexical import LexicalIndex
from bertsearch.indexer.lexical_backend import LexicalBackend
from bertsearch.indexer.versions import IndexDirectory, Manifest


class ModelMismatchError(ValueError):
    """A dense index was built with other weights than the query encoder has."""


@dataclass
class IndexSnapshot:
    path: Path
    manifest: Manifest
    lexical: LexicalIndex
    dense: DenseIndex

    @classmethod
    def open(cls, index_dir: str | Path, lexical: LexicalBackend | None = None) -> IndexSnapshot:
        """The current version of ``index_dir``; raises IndexNotFoundError when there is none."""
        folder = IndexDirectory(index_dir).current()
        return cls.open_version(folder, lexical)

    @classmethod
    def open_version(cls, folder: Path, lexical: LexicalBackend | None = None) -> IndexSnapshot:
        """One version; its manifest says where its lexical half lives (``lexical`` says how to
        reach an Elasticsearch server, from BERTSEARCH_* variables when not given)."""
        manifest = Manifest.read(folder)
        backend = lexical or LexicalBackend.from_env()
        return cls(
            path=folder,
            manifest=manifest,
            lexical=backend.open(folder, manifest.lexical),
            dense=DenseIndex.load(folder / DENSE_DIR),
        )

    def check_encoder(self, fingerprint: str, model_name: str) -> None:
        """Refuse a query encoder whose weights differ from the ones the vectors came from."""
        built = self.manifest.embedding
        if built.get("fingerprint") != fingerprint:
            raise ModelMismatchError(
                f"index version {self.manifest.version} was embedded with {built.get('model')!r} "
                f"(weights {built.get('fingerprint')}), but the query encoder is {model_name!r} "
                f"(weights {fingerprint}); mixing them gives meaningless scores. Rebuild the index with "
                f"this model or serve with --model {built.get('model')}"
            )
