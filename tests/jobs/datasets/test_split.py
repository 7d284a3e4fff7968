"""Carving a dev split: by query, seeded and recorded, never touching the source dataset."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from bertsearch.jobs.cli import main
from bertsearch.jobs.datasets.beir import BeirDataset, DatasetError, read_qrels
from bertsearch.jobs.datasets.split import SplitConfig, choose_dev, split_dataset
from support.files import write_jsonl

pytestmark = pytest.mark.unit


@pytest.fixture
def dataset(tmp_path, corpus_records) -> Path:
    folder = tmp_path / "ds"
    (folder / "qrels").mkdir(parents=True)
    write_jsonl(folder / "corpus.jsonl", corpus_records)
    write_jsonl(folder / "queries.jsonl", [{"_id": f"q{i}", "text": f"query {i}"} for i in range(30)])
    train = ["query-id\tcorpus-id\tscore"]
    for i in range(20):  # q0..q19 judged in train, some with two documents
        train.append(f"q{i}\tcats\t1")
        if i % 3 == 0:
            train.append(f"q{i}\tdogs\t{i % 2}")
    (folder / "qrels" / "train.tsv").write_text("\n".join(train) + "\n")
    (folder / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq25\ttea\t1\n")
    return folder


def snapshot(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_dev_split_into_a_mirror_leaves_the_dataset_untouched(dataset, tmp_path):
    before = snapshot(dataset)
    out = tmp_path / "mirror"
    record = split_dataset(SplitConfig(dataset=dataset, source="train", dev_fraction=0.25, seed=7, out=out))
    assert snapshot(dataset) == before
    original = read_qrels(dataset / "qrels" / "train.tsv")
    train, dev = read_qrels(out / "qrels" / "train.tsv"), read_qrels(out / "qrels" / "dev.tsv")
    assert len(dev) == 5 and len(train) == 15 and not set(dev) & set(train)
    assert {**train, **dev} == original  # every judgment kept, each query's judgments together
    assert record.dev_query_ids == sorted(dev) and record.seed == 7 and record.train_queries == 15
    saved = json.loads((out / "qrels" / "dev.split.json").read_text())
    assert saved["seed"] == 7 and saved["dev_query_ids"] == sorted(dev) and saved["source_split"] == "train"
    assert (
        saved["source_sha256"] == hashlib.sha256((dataset / "qrels" / "train.tsv").read_bytes()).hexdigest()
    )
    # the mirror links the rest of the dataset; the written splits are real files
    for linked in ("corpus.jsonl", "queries.jsonl", "qrels/test.tsv"):
        assert (out / linked).is_symlink() and (out / linked).resolve() == (dataset / linked).resolve()
    assert not (out / "qrels" / "train.tsv").is_symlink()
    mirrored = BeirDataset(out)
    assert mirrored.splits() == ["dev", "test", "train"]
    assert set(mirrored.load("dev").queries) == set(dev)
    assert mirrored.corpus_path.resolve() == (dataset / "corpus.jsonl").resolve()


def test_the_same_seed_gives_the_same_split(dataset, tmp_path):
    first = split_dataset(SplitConfig(dataset=dataset, dev_fraction=0.3, seed=1, out=tmp_path / "a"))
    again = split_dataset(SplitConfig(dataset=dataset, dev_fraction=0.3, seed=1, out=tmp_path / "b"))
    other = split_dataset(SplitConfig(dataset=dataset, dev_fraction=0.3, seed=2, out=tmp_path / "c"))
    assert first.dev_query_ids == again.dev_query_ids != other.dev_query_ids
    assert (tmp_path / "a/qrels/dev.tsv").read_bytes() == (tmp_path / "b/qrels/dev.tsv").read_bytes()


def test_choice_ignores_file_order_and_leaves_both_sides_non_empty():
    ids = [f"q{i}" for i in range(10)]
    assert choose_dev(ids, 0.3, 5) == choose_dev(list(reversed(ids)), 0.3, 5)
    assert len(choose_dev(ids[:2], 0.01, 0)) == 1 and len(choose_dev(ids[:2], 0.99, 0)) == 1
    with pytest.raises(DatasetError, match="need at least 2"):
        choose_dev(["only"], 0.5, 0)


def test_in_place_split_needs_a_new_train_name(dataset):
    with pytest.raises(ValueError, match="would overwrite qrels/train.tsv: give --out FOLDER"):
        SplitConfig(dataset=dataset, source="train")
    record = split_dataset(SplitConfig(dataset=dataset, source="train", train_name="train-rest", seed=3))
    assert sorted(BeirDataset(dataset).splits()) == ["dev", "test", "train", "train-rest"]
    assert record.train_split == "train-rest"
    with pytest.raises(ValueError, match="exists; pass --overwrite"):
        split_dataset(SplitConfig(dataset=dataset, source="train", train_name="train-rest", seed=4))
    split_dataset(
        SplitConfig(dataset=dataset, source="train", train_name="train-rest", seed=4, overwrite=True)
    )


def test_missing_source_split_names_what_exists(dataset, tmp_path):
    with pytest.raises(DatasetError, match="no split 'validation'; available splits: test, train"):
        split_dataset(SplitConfig(dataset=dataset, source="validation", out=tmp_path / "m"))


def test_bad_settings_say_what_to_change(dataset, tmp_path):
    with pytest.raises(ValueError, match="dev_fraction must be between 0 and 1"):
        SplitConfig(dataset=dataset, dev_fraction=1.0, out=tmp_path / "m")
    with pytest.raises(ValueError, match="must differ"):
        SplitConfig(dataset=dataset, dev_name="train", out=tmp_path / "m")


def test_cli_split_and_rerun(dataset, tmp_path, capsys):
    out = tmp_path / "mirror"
    args = [
        "split",
        str(dataset),
        "--from",
        "train",
        "--dev-fraction",
        "0.2",
        "--seed",
        "11",
        "--out",
        str(out),
    ]
    assert main(args) == 0
    assert "train: 16, dev: 4 (seed 11)" in capsys.readouterr().out
    assert main(args) == 2  # the split files exist now
    assert "--overwrite" in capsys.readouterr().err
    assert main([*args, "--overwrite"]) == 0
    assert main(["split", str(dataset), "--from", "nope", "--out", str(out)]) == 2
    assert "available splits: test, train" in capsys.readouterr().err
