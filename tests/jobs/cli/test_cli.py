"""The command line as one room: every subcommand, one error path, renamed flags that still work."""

from __future__ import annotations

import pytest

from bertsearch.jobs.cli import build_parser, check_argv, main

pytestmark = pytest.mark.unit

COMMANDS = {
    "index", "search", "serve", "eval", "tune-rerank-weight", "transfer-rerank-weight", "sample-corpus",
    "split", "pseudo-dev", "train", "distill", "average-epochs", "reranker", "schedule", "schedule-status",
    "explain",
    "feedback-export",
    "pretrain",
    "loco",
}  # fmt: skip


def test_every_subcommand_is_registered_and_has_help(capsys):
    subparsers = next(a for a in build_parser()._actions if a.dest == "command")
    assert set(subparsers.choices) == COMMANDS
    for name in COMMANDS:
        with pytest.raises(SystemExit) as done:
            main([name, "--help"])
        assert done.value.code == 0
        assert f"usage: bertsearch {name}" in capsys.readouterr().out


def test_a_user_error_is_one_line_and_exit_status_2(tmp_path, capsys):
    assert main(["search", "tea", "--index-dir", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("bertsearch search: error: ") and "bertsearch index" in err[0]


def test_renamed_flags_keep_working_with_a_warning(capsys):
    args = build_parser().parse_args(["train", "d", "--index-dir", "i", "--out", "o", "--depth", "30"])
    assert args.mine_depth == 30 and not hasattr(args, "depth")
    assert "--depth is now --mine-depth" in capsys.readouterr().err
    tune = ["tune-rerank-weight", "d", "--split", "dev", "--reranker", "m", "--index-dir", "i"]
    args = build_parser().parse_args([*tune, "--depths", "20,10"])
    assert args.rerank_top_n == (10, 20) and args.depth == 100  # --depth keeps its meaning: per retriever
    assert "--depths is now --rerank-top-n" in capsys.readouterr().err


def test_check_argv_names_what_the_parser_rejects():
    assert check_argv(["search", "tea", "--index-dir", "x"]) is None
    reason = check_argv(["search"])
    assert reason is not None and "required" in reason
