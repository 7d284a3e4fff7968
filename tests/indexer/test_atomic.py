"""Atomic writes: a reader sees the old file or the new one, and a failed write leaves the old one."""

from __future__ import annotations

import json

import numpy as np
import pytest

from bertsearch.indexer import atomic

pytestmark = pytest.mark.unit


def test_a_write_replaces_the_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "state.json"
    atomic.write_json(target, {"a": 1})
    atomic.write_json(target, {"b": [1, 2]}, sort_keys=True)
    assert json.loads(target.read_text()) == {"b": [1, 2]}
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]


def test_a_failed_write_keeps_the_old_file(tmp_path):
    target = tmp_path / "CURRENT"
    atomic.write_text(target, "v1\n")
    with pytest.raises(RuntimeError), atomic.atomic_path(target) as tmp:
        tmp.write_text("v2 half written")
        raise RuntimeError("killed mid-write")
    assert target.read_text() == "v1\n" and [p.name for p in tmp_path.iterdir()] == ["CURRENT"]


def test_the_temporary_keeps_the_suffix_numpy_appends_otherwise(tmp_path):
    target = tmp_path / "batch-0001.npy"
    with atomic.atomic_path(target) as tmp:
        np.save(tmp, np.arange(3))
    assert np.load(target).tolist() == [0, 1, 2] and [p.name for p in tmp_path.iterdir()] == [target.name]


def test_a_folder_is_replaced_whole(tmp_path):
    old, new = tmp_path / "model", tmp_path / "model.partial"
    old.mkdir()
    (old / "a").write_text("old")
    new.mkdir()
    (new / "b").write_text("new")
    atomic.replace_directory(new, old)
    assert [p.name for p in old.iterdir()] == ["b"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]
