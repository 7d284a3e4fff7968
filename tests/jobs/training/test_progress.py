"""Which mid-epoch checkpoint a rerun goes on from (the resume itself: test_ray_fit.py)."""

from __future__ import annotations

import pytest
import torch

from bertsearch.jobs.training import progress
from bertsearch.ranker.training.loop import STATE_FILE, Shard

pytestmark = pytest.mark.unit


def _checkpoint(folder, *, finished_epochs: int, workers: int = 1) -> None:
    folder.mkdir(parents=True)
    torch.save({"epoch": finished_epochs, "ranks": [{}] * workers}, folder / STATE_FILE)


def test_a_rerun_takes_the_newest_readable_checkpoint_of_the_epoch_it_resumes(tmp_path, capsys):
    _checkpoint(tmp_path / "epoch-002-step-000040", finished_epochs=1)
    _checkpoint(tmp_path / "epoch-002-step-000120", finished_epochs=1)
    _checkpoint(tmp_path / "epoch-001-step-000200", finished_epochs=0)  # an older epoch's leftover
    (tmp_path / ".writing-x1").mkdir()  # a write cut short: never renamed
    one = Shard()
    assert progress.agreed(tmp_path, 2, one) == tmp_path / "epoch-002-step-000120"
    assert progress.agreed(tmp_path, 3, one) is None
    (tmp_path / "epoch-002-step-000120" / STATE_FILE).write_bytes(b"\x80\x02 cut short")  # a machine loss
    assert progress.agreed(tmp_path, 2, one) == tmp_path / "epoch-002-step-000040"
    assert "epoch-002-step-000120: unreadable (UnpicklingError" in capsys.readouterr().out
    assert progress.agreed(tmp_path, 2, Shard(rank=0, world=2)) is None  # written by one worker, not two
    assert "written by 1 workers, this run has 2" in capsys.readouterr().out
    assert progress.agreed(tmp_path / "none", 1, one) is None


def test_clear_keeps_only_the_named_checkpoint(tmp_path):
    _checkpoint(tmp_path / "epoch-002-step-000040", finished_epochs=1)
    _checkpoint(tmp_path / "epoch-002-step-000120", finished_epochs=1)
    (tmp_path / ".writing-x1").mkdir()
    progress.clear(tmp_path, keep=tmp_path / "epoch-002-step-000120")
    assert [p.name for p in tmp_path.iterdir()] == ["epoch-002-step-000120"]
    progress.clear(tmp_path)
    assert list(tmp_path.iterdir()) == []
