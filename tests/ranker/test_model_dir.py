"""The model folder's record: one versioned schema for metadata.json, read and written in one place."""

from __future__ import annotations

import json

import pytest

from bertsearch.ranker.model_dir import FORMAT_VERSION, METADATA_FILE, ModelRecord, publish_model

pytestmark = pytest.mark.unit


def test_a_file_written_before_the_record_had_a_version_reads_as_version_1(tmp_path):
    old = {"base_model": "m", "max_length": 128, "rerank_weight": 0.3, "epochs": [{"epoch": 1}]}
    old["best_epoch"] = 1
    (tmp_path / METADATA_FILE).write_text(json.dumps(old))
    record = ModelRecord.read(tmp_path)
    assert (record.max_length, record.rerank_weight, record.rerank_top_n) == (128, 0.3, None)
    assert (record.serving_weight, record.serving_top_n) == (0.3, 50)
    assert record.provenance == {"epochs": [{"epoch": 1}], "best_epoch": 1}
    record.write(tmp_path)  # written back flat, with its version, provenance kept
    written = json.loads((tmp_path / METADATA_FILE).read_text())
    assert written["format_version"] == FORMAT_VERSION and written["epochs"] == [{"epoch": 1}]
    assert "rerank_top_n" not in written and ModelRecord.read(tmp_path) == record


def test_a_newer_format_and_impossible_values_are_refused_naming_the_file(tmp_path):
    (tmp_path / METADATA_FILE).write_text(json.dumps({"format_version": FORMAT_VERSION + 1}))
    with pytest.raises(ValueError, match="format version 2.*upgrade bertsearch"):
        ModelRecord.read(tmp_path)
    (tmp_path / METADATA_FILE).write_text(json.dumps({"rerank_weight": 3}))
    with pytest.raises(ValueError, match=f"{METADATA_FILE}.*rerank_weight must be between 0 and 1"):
        ModelRecord.read(tmp_path)
    with pytest.raises(ValueError, match="provenance may not hold"):
        ModelRecord(provenance={"max_length": 64})


def test_no_file_is_no_record_and_require_says_which_command_writes_one(tmp_path):
    assert ModelRecord.read(tmp_path) is None
    with pytest.raises(FileNotFoundError, match="bertsearch train"):
        ModelRecord.require(tmp_path)


def test_the_operating_point_is_set_and_dropped_as_one(tmp_path):
    record = ModelRecord(base_model="m", rerank_weight=0.5, rerank_top_n=20)
    tuned = record.with_operating_point(0.2, None, {"split": "dev"})
    assert (tuned.rerank_weight, tuned.rerank_top_n) == (0.2, 20)
    assert tuned.rerank_weight_tuning == {"split": "dev"}
    dropped = tuned.without_operating_point()
    assert (dropped.rerank_weight, dropped.rerank_top_n, dropped.rerank_weight_tuning) == (None, None, None)


def test_publish_replaces_the_folder_whole(tmp_path):
    source = tmp_path / "checkpoint"
    source.mkdir()
    (source / "weights.bin").write_text("new")
    out = tmp_path / "model"
    out.mkdir()
    (out / "stale.bin").write_text("old")
    publish_model(source, out, ModelRecord(base_model="m", max_length=64))
    assert sorted(p.name for p in out.iterdir()) == [METADATA_FILE, "weights.bin"]
    assert ModelRecord.read(out).max_length == 64
    assert not list(tmp_path.glob("*.partial")) and not list(tmp_path.glob(".*.old"))


def test_the_unseen_corpus_point_serves_only_corpora_the_model_was_not_trained_on(tmp_path):
    trained = {"data": {"corpora": [{"source": "/data/scifact", "digest": "aa"}]}}
    record = ModelRecord(rerank_weight=0.8, rerank_top_n=50, provenance=trained)
    unseen = record.with_unseen_point(20, 0.3, {"chosen_by": "leave-one-corpus-out"})
    record_file = tmp_path / "m"
    record_file.mkdir()
    unseen.write(record_file)
    back = ModelRecord.read(record_file)
    assert back == unseen and back.unseen_corpus["chosen_by"] == "leave-one-corpus-out"
    assert back.operating_point({"source": "/data/cisi", "digest": "bb"}) == (20, 0.3, "unseen")
    assert back.operating_point({"source": "/data/scifact", "digest": "aa"}) == (50, 0.8, "in-domain")
    # the same corpus after documents were added: the digest changed, the source did not
    assert back.operating_point({"source": "/data/scifact", "digest": "cc"}) == (50, 0.8, "in-domain")
    # an index that does not say, or a model without its corpora: the tuned point, as before
    assert back.operating_point(None) == (50, 0.8, "unknown")
    assert record.operating_point({"source": "/data/cisi", "digest": "bb"}) == (50, 0.8, "unseen")
    assert ModelRecord().operating_point({"source": "/x", "digest": "y"}) == (50, 1.0, "unknown")
    with pytest.raises(ValueError, match="unseen_corpus needs rerank_top_n"):
        ModelRecord(unseen_corpus={"rerank_top_n": 0, "rerank_weight": 0.5})


def test_a_corpus_the_point_was_tuned_on_is_in_domain_even_with_an_unseen_point():
    trained = {"data": {"corpora": [{"source": "/data/scifact", "digest": "aa"}]}}
    record = ModelRecord(provenance=trained).with_unseen_point(20, 0.3, {})
    tuned = record.with_operating_point(0.6, 40, {"corpus": {"source": "/data/new", "digest": "dd"}})
    assert tuned.operating_point({"source": "/data/new", "digest": "dd"}) == (40, 0.6, "in-domain")
    assert tuned.operating_point({"source": "/data/other", "digest": "ee"}) == (20, 0.3, "unseen")
