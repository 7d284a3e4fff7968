"""Incremental updates: upserts and deletes by id reach both retrievers, for every FAISS kind."""

from __future__ import annotations

import os
import time

import numpy as np
import pytest

from bertsearch.indexer.build import BuildConfig, build_index
from bertsearch.indexer.dense import DenseConfig
from bertsearch.indexer.documents import Document
from bertsearch.indexer.embedder import Embedder
from bertsearch.indexer.incremental import apply_updates, update_from_source
from bertsearch.indexer.snapshot import IndexSnapshot
from bertsearch.indexer.versions import IndexDirectory
from bertsearch.ranker.factory import open_pipeline
from bertsearch.ranker.pipeline import PipelineConfig
from support.files import write_jsonl

pytestmark = pytest.mark.unit

FERNS = {"_id": "ferns", "title": "Ferns", "text": "Ferns reproduce by spores released from the undersides."}
NEW_TEA = {"_id": "tea", "title": "Black tea", "text": "Black tea is fully oxidised before drying."}


@pytest.fixture(scope="module")
def embedder(tiny_bert_dir) -> Embedder:
    return Embedder(tiny_bert_dir).load()


def config(kind: str) -> BuildConfig:
    # nlist 2 so that IVF trains on 8 documents; nprobe 2 makes it exact here.
    return BuildConfig(dense=DenseConfig(kind=kind, ivf_nlist=2, ivf_nprobe=2))


def retrieve(index_dir, tiny_bert_dir, query: str, *, lexical: bool) -> list[str]:
    pipeline = open_pipeline(
        index_dir,
        encoder_model=str(tiny_bert_dir),
        config=PipelineConfig(lexical=lexical, dense=not lexical, rerank=False),
    )
    try:
        return [hit.id for hit in pipeline.search(query, top_k=20).hits]
    finally:
        pipeline.close()


@pytest.mark.parametrize("kind", ["flat", "hnsw", "ivf"])
def test_upserts_and_deletes_reach_lexical_and_dense_results(
    tmp_path, corpus_records, embedder, tiny_bert_dir, kind
):
    index_dir = tmp_path / "index"
    build_index(
        write_jsonl(tmp_path / "corpus.jsonl", corpus_records),
        index_dir,
        embedder,
        config(kind),
        progress=False,
    )
    first = IndexDirectory(index_dir).current()
    updates = tmp_path / "updates"
    updates.mkdir()
    write_jsonl(updates / "001.jsonl", [FERNS, NEW_TEA, {"_id": "volcano", "deleted": True}])

    report = update_from_source(updates, index_dir, embedder)
    assert report.changed and report.upserted == 2 and report.deleted == 1
    assert report.manifest.parent == first.name and report.manifest.documents == 8

    ferns_body = Document("ferns", FERNS["title"], FERNS["text"]).body
    assert retrieve(index_dir, tiny_bert_dir, "spores", lexical=True) == ["ferns"]
    # The exact text of a document embeds to its own vector: dense ranks it first.
    assert retrieve(index_dir, tiny_bert_dir, ferns_body, lexical=False)[0] == "ferns"
    assert "volcano" not in retrieve(index_dir, tiny_bert_dir, "magma volcano", lexical=True)
    dense_ids = retrieve(index_dir, tiny_bert_dir, "magma volcano", lexical=False)
    assert "volcano" not in dense_ids and len(dense_ids) == 8

    snapshot = IndexSnapshot.open(index_dir)
    assert snapshot.lexical.get(["tea"])["tea"].title == "Black tea"
    assert sorted(snapshot.dense.ids) == sorted(snapshot.lexical.get(snapshot.dense.ids))
    expected = embedder.embed([Document("tea", NEW_TEA["title"], NEW_TEA["text"]).body])
    np.testing.assert_allclose(snapshot.dense.vectors(["tea"]), expected, atol=1e-5)

    # The version it started from is untouched and still servable.
    old = IndexSnapshot.open_version(first)
    assert old.lexical.get(["volcano", "ferns"]).keys() == {"volcano"}
    assert "volcano" in old.dense.ids and "ferns" not in old.dense.ids


def test_an_updated_index_matches_a_full_build_of_the_final_corpus(tmp_path, corpus_records, embedder):
    build_index(write_jsonl(tmp_path / "a.jsonl", corpus_records), tmp_path / "inc", embedder, progress=False)
    apply_updates(
        tmp_path / "inc", [Document("ferns", FERNS["title"], FERNS["text"])], ["cats", "dogs"], embedder
    )
    final = [r for r in corpus_records if r["_id"] not in ("cats", "dogs")] + [FERNS]
    build_index(write_jsonl(tmp_path / "b.jsonl", final), tmp_path / "full", embedder, progress=False)
    inc, full = IndexSnapshot.open(tmp_path / "inc"), IndexSnapshot.open(tmp_path / "full")
    assert sorted(inc.dense.ids) == sorted(full.dense.ids)
    ids = full.dense.ids
    np.testing.assert_allclose(inc.dense.vectors(ids), full.dense.vectors(ids), atol=1e-5)
    assert inc.lexical.get(ids) == full.lexical.get(ids)
    assert inc.lexical.count() == full.lexical.count() == len(ids)
    assert [h.id for h in inc.lexical.search("tea coffee", 5)] == [
        h.id for h in full.lexical.search("tea coffee", 5)
    ]


def test_a_later_file_wins_and_applied_files_are_skipped(tmp_path, corpus_records, embedder):
    index_dir = tmp_path / "index"
    build_index(write_jsonl(tmp_path / "corpus.jsonl", corpus_records), index_dir, embedder, progress=False)
    updates = tmp_path / "updates"
    updates.mkdir()
    write_jsonl(updates / "001.jsonl", [FERNS, {"_id": "cats", "deleted": True}])
    write_jsonl(updates / "002.jsonl", [{"_id": "ferns", "deleted": True}, {**FERNS, "_id": "cats"}, "{oops"])
    report = update_from_source(updates, index_dir, embedder)
    snapshot = IndexSnapshot.open(index_dir)
    assert "ferns" not in snapshot.dense.ids and snapshot.lexical.get(["ferns"]) == {}
    assert snapshot.lexical.get(["cats"])["cats"].title == "Ferns"
    assert [r.line for r in report.rejects] == [3] and report.manifest.rejects == 1

    again = update_from_source(updates, index_dir, embedder)
    assert not again.changed and len(again.skipped_files) == 2
    assert IndexDirectory(index_dir).current_name() == report.manifest.version

    later = time.time() + 5
    os.utime(updates / "002.jsonl", (later, later))
    redo = update_from_source(updates, index_dir, embedder)
    assert redo.changed and [f.name for f in redo.files] == ["002.jsonl"]
    assert redo.manifest.documents == report.manifest.documents  # idempotent


def test_hnsw_deletes_are_tombstoned_then_rebuilt_past_the_threshold(tmp_path, corpus_records, embedder):
    index_dir = tmp_path / "index"
    cfg = BuildConfig(dense=DenseConfig(kind="hnsw", hnsw_rebuild_fraction=0.25))
    build_index(
        write_jsonl(tmp_path / "corpus.jsonl", corpus_records), index_dir, embedder, cfg, progress=False
    )
    first = apply_updates(index_dir, [], ["cats"], embedder)
    assert not first.compacted and first.manifest.updates["dense_tombstones"] == 1
    snapshot = IndexSnapshot.open(index_dir)
    query = embedder.embed([Document("cats", corpus_records[0]["title"], corpus_records[0]["text"]).body])
    hits = snapshot.dense.search(query, 10)[0]
    assert "cats" not in [h.id for h in hits] and len(hits) == 7  # filtered, and still k live hits

    second = apply_updates(index_dir, [], ["dogs", "tea"], embedder)  # 3 of 8 > 25 %
    assert second.compacted and second.manifest.updates["dense_tombstones"] == 0
    rebuilt = IndexSnapshot.open(index_dir).dense
    assert (
        len(rebuilt) == 5 and rebuilt.tombstones == 0 and set(rebuilt.ids).isdisjoint({"cats", "dogs", "tea"})
    )


def test_bad_updates_are_refused_before_anything_is_written(tmp_path, corpus_records, embedder):
    index_dir = tmp_path / "index"
    build_index(write_jsonl(tmp_path / "corpus.jsonl", corpus_records), index_dir, embedder, progress=False)
    versions = IndexDirectory(index_dir).versions()
    with pytest.raises(ValueError, match="both upserted and deleted"):
        apply_updates(index_dir, [Document("x", "X", "x")], ["x"], embedder)
    with pytest.raises(ValueError, match="once"):
        apply_updates(index_dir, [Document("x", "X", "x"), Document("x", "Y", "y")], [], embedder)
    nothing = apply_updates(index_dir, [], [], embedder)
    assert not nothing.changed and "nothing to update" in nothing.summary()
    unknown = apply_updates(index_dir, [], ["no-such-id"], embedder)
    assert unknown.deleted == 0 and unknown.missing_deletes == 1
    assert len(IndexDirectory(index_dir).versions()) == len(versions) + 1
