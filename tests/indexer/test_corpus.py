"""Corpus reading: every source layout, and every kind of bad line reported while good lines land."""

from __future__ import annotations

import gzip
import json

import pytest

from bertsearch.indexer.build import build_index
from bertsearch.indexer.corpus import CorpusError, CorpusReader, Deletion
from bertsearch.indexer.embedder import Embedder
from bertsearch.indexer.snapshot import IndexSnapshot
from support.files import write_jsonl

pytestmark = pytest.mark.unit


def test_beir_folder_reads_corpus_jsonl_gz(tmp_path, corpus_records):
    with gzip.open(tmp_path / "corpus.jsonl.gz", "wt", encoding="utf-8") as out:
        for record in corpus_records:
            out.write(json.dumps(record) + "\n")
    (tmp_path / "queries.jsonl").write_text('{"_id": "q1", "text": "not a document"}\n')
    reader = CorpusReader(tmp_path)
    docs = list(reader)
    assert [d.id for d in docs] == [r["_id"] for r in corpus_records]
    assert docs[0].title == "Domestic cats" and docs[0].text.startswith("Cats are small")
    assert reader.rejects == []
    assert reader.bytes_read == reader.total_bytes


def test_folder_of_jsonl_files_in_name_order_with_plain_id_field(tmp_path):
    write_jsonl(tmp_path / "b.jsonl", [{"id": 2, "text": "second"}])
    write_jsonl(tmp_path / "a.jsonl", [{"id": "1", "title": "first", "metadata": {"lang": "en"}}])
    docs = list(CorpusReader(tmp_path))
    assert [(d.id, d.body) for d in docs] == [("1", "first"), ("2", "second")]
    assert docs[0].metadata == {"lang": "en"}


def test_every_kind_of_bad_line_is_reported_with_line_and_reason(tmp_path):
    source = write_jsonl(
        tmp_path / "docs.jsonl",
        [
            {"_id": "good1", "title": "Alpha", "text": "alpha particles"},
            "{this is not json",
            {"title": "no id here", "text": "orphan"},
            {"_id": "empty", "title": "  ", "text": ""},
            {"_id": "good1", "text": "a second document with the same id"},
            ["a", "list"],
            {"_id": "badtext", "text": 42},
            {"_id": "gone", "deleted": True},
            {"_id": "good2", "text": "beta decay"},
        ],
    )
    with open(source, "ab") as out:
        out.write(b'{"_id": "latin1", "text": "caf\xe9"}\n')
    reader = CorpusReader(source)
    assert [d.id for d in reader] == ["good1", "good2"]
    reasons = {r.line: r.reason for r in reader.rejects}
    assert sorted(reasons) == [2, 3, 4, 5, 6, 7, 8, 10]
    assert "not valid JSON" in reasons[2]
    assert "no document id" in reasons[3]
    assert "empty document" in reasons[4]
    assert "duplicate id" in reasons[5]
    assert "expected a JSON object" in reasons[6]
    assert "must be strings" in reasons[7]
    assert "incremental" in reasons[8]
    assert "not UTF-8" in reasons[10]
    assert all(r.source == str(source) for r in reader.rejects)


def test_deletes_are_read_when_allowed(tmp_path):
    source = write_jsonl(tmp_path / "u.jsonl", [{"_id": "x", "deleted": True}, {"id": "y", "text": "kept"}])
    items = list(CorpusReader(source, allow_deletes=True))
    assert items[0] == Deletion("x") and items[1].id == "y"


@pytest.mark.parametrize(
    ("name", "message"),
    [("missing", "does not exist"), ("notes.txt", "not a .jsonl"), ("empty_folder", "holds no corpus")],
)
def test_unreadable_sources_fail_with_the_reason(tmp_path, name, message):
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "empty_folder").mkdir()
    with pytest.raises(CorpusError, match=message):
        CorpusReader(tmp_path / name)


def test_bad_lines_land_in_rejects_file_and_good_lines_are_searchable(
    tmp_path, tiny_bert_dir, corpus_records
):
    source = write_jsonl(
        tmp_path / "docs.jsonl", [corpus_records[0], "not json", corpus_records[4], {"x": 1}]
    )
    report = build_index(source, tmp_path / "index", Embedder(tiny_bert_dir).load(), progress=False)
    assert report.manifest.documents == 2
    rejects = [json.loads(line) for line in (report.path / "rejects.jsonl").read_text().splitlines()]
    assert [(r["line"], r["source"]) for r in rejects] == [(2, str(source)), (4, str(source))]
    snapshot = IndexSnapshot.open(tmp_path / "index")
    assert [h.id for h in snapshot.lexical.search("purring cat", 5)] == ["cats"]
    assert [h.id for h in snapshot.lexical.search("green tea caffeine", 5)] == ["tea"]
    assert sorted(snapshot.dense.ids) == ["cats", "tea"]


def test_a_source_with_no_valid_line_fails_and_publishes_nothing(tmp_path, tiny_bert_dir):
    source = write_jsonl(tmp_path / "docs.jsonl", ["oops", {"_id": "e"}])
    with pytest.raises(CorpusError, match="no valid document"):
        build_index(source, tmp_path / "index", Embedder(tiny_bert_dir).load(), progress=False)
    assert not (tmp_path / "index" / "CURRENT").exists()
