"""Choosing the reranker's weight against retrieval: by hand, against serving, and end to end."""

from __future__ import annotations

import json
import math
import shutil
from dataclasses import replace

import pytest

from bertsearch.jobs.cli import main
from bertsearch.jobs.datasets.beir import JudgedQueries
from bertsearch.jobs.evaluation.config import EvalConfig
from bertsearch.jobs.evaluation.operating_point import (
    WEIGHTS,
    WeightChoice,
    at_depth,
    choose_operating_point,
    choose_rerank_weight,
    pooled_choice,
    reweighted,
    tuning_eval_config,
)
from bertsearch.jobs.evaluation.results import ConfigRun
from bertsearch.jobs.evaluation.runner import run_evaluation
from bertsearch.ranker.pipeline import PipelineConfig
from support.datasets import write_dataset

pytestmark = pytest.mark.unit


def reranked_run(rankings, stage_scores, weight=1.0) -> ConfigRun:
    return ConfigRun(
        name="hybrid+rerank",
        pipeline=PipelineConfig(rerank_weight=weight),
        rankings=rankings,
        timings_ms=[],
        wall_seconds=0.0,
        stage_scores=stage_scores,
    )


def test_the_weight_that_ranks_judged_documents_best_is_chosen():
    # The reranker puts the relevant d2 last; retrieval puts it first. Blended, d2 leads while
    # 1 - w > w, i.e. for w < 0.5 (at 0.5 the tie goes to the smaller id, d1).
    run = reranked_run(
        {"q": [("d1", 1.0), ("d2", 0.0), ("d3", 0.001)]},
        {"q": [{"rrf": 0.0, "rerank": 1.0}, {"rrf": 1.0, "rerank": 0.0}, {"rrf": 0.001}]},
    )
    judged = JudgedQueries(split="dev", queries={"q": "a query"}, qrels={"q": {"d2": 1}})
    choice = choose_rerank_weight(run, judged)
    second = 1 / math.log2(3)
    assert choice.by_weight == pytest.approx({w: 1.0 if w < 0.5 else second for w in WEIGHTS})
    assert (choice.weight, choice.value) == (0.4, pytest.approx(1.0))  # ties go to the larger weight
    # hits the reranker never saw keep their place below the reranked head
    assert [d for d, _ in reweighted(run, 0.0).rankings["q"]] == ["d2", "d1", "d3"]


def test_only_a_run_ranked_by_the_reranker_alone_can_be_reweighted():
    judged = JudgedQueries(split="dev", queries={"q": "x"}, qrels={"q": {"d": 1}})
    with pytest.raises(ValueError, match="rerank_weight 1.0"):
        choose_rerank_weight(reranked_run({"q": []}, {"q": []}, weight=0.5), judged)


def test_a_shallower_depth_reranks_only_the_best_fused_candidates():
    # Fused order d1 d2 d3 (rrf), then d4 unreranked. The reranker loves d3 (relevant), which
    # only a depth of 3 reaches; at depth 2 it drops back to its fused place.
    run = reranked_run(
        {"q": [("d3", 3.0), ("d2", 2.0), ("d1", 1.0), ("d4", 0.001)]},
        {
            "q": [
                {"rrf": 0.1, "rerank": 3.0},
                {"rrf": 0.2, "rerank": 2.0},
                {"rrf": 0.3, "rerank": 1.0},
                {"rrf": 0.05},
            ]
        },
    )
    assert [d for d, _ in at_depth(run, 2).rankings["q"]] == ["d2", "d1", "d3", "d4"]
    assert at_depth(run, 2).pipeline.rerank_top_n == 2
    assert [d for d, _ in at_depth(run, 3).rankings["q"]] == ["d3", "d2", "d1", "d4"]
    judged = JudgedQueries(split="dev", queries={"q": "a query"}, qrels={"q": {"d3": 1}})
    choice = choose_operating_point(run, judged, depths=(1, 2, 3))
    assert (choice.depth, choice.weight, choice.value) == (3, 1.0, pytest.approx(1.0))
    assert choice.by_depth[1] == choice.by_depth[2]  # d3 out of reach either way
    assert choice.by_depth[3][1.0] == pytest.approx(1.0) and choice.by_depth[3][0.0] < 1.0
    with pytest.raises(ValueError, match="rerank at least 4"):
        at_depth(run, 4)


def test_equal_quality_goes_to_the_smaller_depth():
    run = reranked_run(
        {"q": [("d1", 2.0), ("d2", 1.0), ("d3", 0.5)]},
        {"q": [{"rrf": 0.3, "rerank": 2.0}, {"rrf": 0.2, "rerank": 1.0}, {"rrf": 0.1, "rerank": 0.5}]},
    )
    judged = JudgedQueries(split="dev", queries={"q": "a query"}, qrels={"q": {"d1": 1}})
    assert choose_operating_point(run, judged, depths=(3, 1, 2)).depth == 1


def table(depth: int, values: dict[float, float]) -> WeightChoice:
    best = max(values, key=values.get)
    return WeightChoice(weight=best, metric="ndcg@10", value=values[best], by_weight=values, depth=depth)


def test_pooling_takes_the_point_best_on_average_not_any_one_sets_best():
    # Set a wants w 0.5, set b wants w 0; on average 0.1 is best, at depth 10 where both are better.
    a = table(10, {0.0: 0.50, 0.1: 0.53, 0.5: 0.56})
    b = table(10, {0.0: 0.40, 0.1: 0.39, 0.5: 0.30})
    a20 = table(20, {0.0: 0.50, 0.1: 0.52, 0.5: 0.55})
    b20 = table(20, {0.0: 0.40, 0.1: 0.38, 0.5: 0.29})
    pooled = pooled_choice(
        [
            replace(a, by_depth={10: a.by_weight, 20: a20.by_weight}),
            replace(b, by_depth={10: b.by_weight, 20: b20.by_weight}),
        ]
    )
    assert (pooled.depth, pooled.weight, pooled.value) == (10, 0.1, pytest.approx(0.46))
    assert pooled.by_depth[20] == pytest.approx({0.0: 0.45, 0.1: 0.45, 0.5: 0.42})
    # a set that tried fewer weights or depths limits the pool to what all of them tried
    c = table(10, {0.0: 0.40, 0.5: 0.45})
    assert pooled_choice([a, c]).by_weight == pytest.approx({0.0: 0.45, 0.5: 0.505})
    with pytest.raises(ValueError, match="share no rerank depth"):
        pooled_choice([a, table(20, {0.0: 0.1})])
    with pytest.raises(ValueError, match="different metrics"):
        pooled_choice([a, replace(b, metric="mrr@10")])
    with pytest.raises(ValueError, match="no rerank depth"):
        pooled_choice([a, replace(b, depth=None)])


def test_pooled_ties_go_to_the_larger_weight_and_then_the_smaller_depth():
    tables = [
        {10: {0.0: 0.5, 0.1: 0.6, 0.2: 0.6}, 20: {0.0: 0.5, 0.1: 0.5, 0.2: 0.6}},
        {10: {0.0: 0.3, 0.1: 0.4, 0.2: 0.4}, 20: {0.0: 0.3, 0.1: 0.4, 0.2: 0.4}},
    ]
    pooled = pooled_choice([replace(table(10, t[10]), by_depth=t) for t in tables])
    assert (pooled.depth, pooled.weight, pooled.value) == (10, 0.2, pytest.approx(0.5))


@pytest.fixture(scope="module")
def tiny_tuning(tmp_path_factory, tiny_bert_dir, tiny_cross_encoder_dir, corpus_records):
    root = tmp_path_factory.mktemp("tune")
    reranker = shutil.copytree(tiny_cross_encoder_dir, root / "reranker")
    config = EvalConfig(
        dataset=write_dataset(root / "ds", corpus_records, splits=("dev", "test")),
        index_dir=root / "index",
        out=root / "weight-1",
        split="dev",
        reranker=reranker,
        depth=8,
        rerank_top_n=5,
        model=tiny_bert_dir,
        precision="fp32",
    )
    return run_evaluation(tuning_eval_config(config), progress=False), config


def test_offline_reweighting_matches_what_serving_returns(tiny_tuning):
    alone, config = tiny_tuning
    run = next(r for r in alone.runs if r.name == "hybrid+rerank")
    blended = replace(config, configs=("hybrid+rerank",), rerank_weight=0.3, out=config.out.with_name("w3"))
    served = run_evaluation(blended, progress=False).runs[0]
    offline = reweighted(run, 0.3)
    assert {q: [d for d, _ in hits] for q, hits in offline.rankings.items()} == {
        q: [d for d, _ in hits] for q, hits in served.rankings.items()
    }
    for query, hits in served.rankings.items():
        assert [s for _, s in offline.rankings[query]] == pytest.approx([s for _, s in hits], abs=1e-6)


def tune(config: EvalConfig, *options: str) -> int:
    """``bertsearch tune-rerank-weight`` on the dev split of ``config``'s dataset."""
    return main(
        ["tune-rerank-weight", str(config.dataset), "--split", "dev", "--reranker", str(config.reranker),
         "--index-dir", str(config.index_dir), "--depth", "8", *options, "--no-progress"]
    )  # fmt: skip


def test_tune_command_writes_the_weight_that_serving_and_eval_then_use(tiny_tuning, capsys):
    _, config = tiny_tuning
    reranker = config.reranker
    (reranker / "metadata.json").write_text(json.dumps({"max_length": 64, "epochs": []}))
    code = tune(config, "--rerank-top-n", "5")
    assert code == 0
    meta = json.loads((reranker / "metadata.json").read_text())
    tuning = meta["rerank_weight_tuning"]
    assert meta["max_length"] == 64 and meta["epochs"] == []  # what was there stays
    assert meta["rerank_weight"] in WEIGHTS and tuning["split"] == "dev"
    assert tuning["value"] == max(tuning["by_weight"].values())
    assert f"rerank weight {meta['rerank_weight']:.1f}" in capsys.readouterr().out
    # an evaluation without --rerank-weight serves the model's own weight, at its own length
    on_test = replace(config, split="test", configs=("hybrid+rerank",), out=config.out.with_name("test"))
    result = run_evaluation(on_test, progress=False)
    assert result.identity["reranker"]["model_rerank_weight"] == meta["rerank_weight"]
    assert result.identity["reranker"]["max_length"] == 64


def test_reranking_fewer_offline_matches_serving_at_that_depth(tiny_tuning):
    alone, config = tiny_tuning
    run = next(r for r in alone.runs if r.name == "hybrid+rerank")
    for weight in (1.0, 0.3):
        shallow = replace(
            config,
            configs=("hybrid+rerank",),
            rerank_top_n=3,
            rerank_weight=weight,
            out=config.out.with_name("d3"),
        )
        served = run_evaluation(shallow, progress=False).runs[0]
        offline = reweighted(at_depth(run, 3), weight)
        assert {q: [d for d, _ in hits] for q, hits in offline.rankings.items()} == {
            q: [d for d, _ in hits] for q, hits in served.rankings.items()
        }


def test_tune_command_with_depths_writes_the_depth_that_eval_then_reranks(tiny_tuning, capsys):
    _, config = tiny_tuning
    reranker = config.reranker
    code = tune(config, "--depths", "2,5")  # the old name of --rerank-top-n 2,5 still works
    assert code == 0
    captured = capsys.readouterr()
    assert "--depths is now --rerank-top-n" in captured.err
    meta = json.loads((reranker / "metadata.json").read_text())
    tuning = meta["rerank_weight_tuning"]
    assert meta["rerank_top_n"] in (2, 5) and set(tuning["by_depth"]) == {"2", "5"}
    assert tuning["value"] == max(max(t.values()) for t in tuning["by_depth"].values())
    assert f"over the top {meta['rerank_top_n']}" in captured.out
    on_test = replace(
        config, split="test", configs=("hybrid+rerank",), rerank_top_n=None, out=config.out.with_name("t2")
    )
    served = run_evaluation(on_test, progress=False)
    assert served.config("hybrid+rerank").pipeline["rerank_top_n"] == meta["rerank_top_n"]
    assert served.config("hybrid+rerank").pipeline["rerank_weight"] == meta["rerank_weight"]


def test_tune_command_over_lengths_writes_the_best_length_that_serving_then_reads(
    tiny_tuning, tmp_path, capsys
):
    _, config = tiny_tuning
    reranker = shutil.copytree(config.reranker, tmp_path / "reranker")  # the module's model keeps its length
    config = replace(config, reranker=reranker)
    code = tune(config, "--rerank-top-n", "5", "--rerank-max-length", "24,8")
    assert code == 0
    meta = json.loads((reranker / "metadata.json").read_text())
    tuning = meta["rerank_weight_tuning"]
    by_length = tuning["by_length"]
    assert set(by_length) == {"8", "24"}
    best = max(by_length.values())
    shortest_best = min(int(n) for n, v in by_length.items() if v == best)
    assert meta["max_length"] == tuning["max_length"] == shortest_best
    assert tuning["value"] == best  # the weight written is the one chosen at that length
    chosen_report = tmp_path / "reranker.work" / "tune-dev" / f"max-length-{meta['max_length']}"
    assert tuning["report"] == str(chosen_report.resolve())
    assert json.loads((chosen_report / "report.json").read_text())["identity"]["reranker"]["max_length"] == (
        meta["max_length"]
    )
    assert f"max_length {meta['max_length']}" in capsys.readouterr().out
    on_test = replace(config, split="test", configs=("hybrid+rerank",), out=config.out.with_name("tl"))
    assert run_evaluation(on_test, progress=False).identity["reranker"]["max_length"] == meta["max_length"]


def test_a_dry_run_leaves_the_model_and_transfer_pools_the_tables(tiny_tuning, tmp_path, capsys):
    _, config = tiny_tuning
    before = (config.reranker / "metadata.json").read_bytes()
    # two "judged corpora": the dev and test splits of the tiny set, each tuned dry
    for split in ("dev", "test"):
        code = main(
            ["tune-rerank-weight", str(config.dataset), "--split", split, "--reranker", str(config.reranker),
             "--index-dir", str(config.index_dir), "--depth", "8", "--rerank-top-n", "2,5", "--dry-run",
             "--out", str(tmp_path / split), "--no-progress",
             *(["--allow-test-split"] if split == "test" else [])]
        )  # fmt: skip
        assert code == 0
    assert (config.reranker / "metadata.json").read_bytes() == before
    tables = [json.loads((tmp_path / split / "choice.json").read_text()) for split in ("dev", "test")]
    assert [t["split"] for t in tables] == ["dev", "test"] and all(t["hybrid"] is not None for t in tables)
    assert tables[1]["chosen_on_test_split"] is True and "chosen_on_test_split" not in tables[0]

    target = shutil.copytree(config.reranker, tmp_path / "unjudged")
    assert main(["transfer-rerank-weight", "--reranker", str(target), "--from", str(tmp_path / "dev"),
                 str(tmp_path / "test" / "choice.json")]) == 0  # fmt: skip
    meta = json.loads((target / "metadata.json").read_text())
    mean = {
        (int(d), float(w)): (tables[0]["by_depth"][d][w] + tables[1]["by_depth"][d][w]) / 2
        for d in ("2", "5")
        for w in tables[0]["by_depth"][d]
    }
    best = max(mean.values())
    assert mean[(meta["rerank_top_n"], meta["rerank_weight"])] == pytest.approx(best)
    sources = meta["rerank_weight_tuning"]["transferred_from"]
    assert [s["split"] for s in sources] == ["dev", "test"]
    assert [s["value_at_choice"] for s in sources] == pytest.approx(
        [t["by_depth"][str(meta["rerank_top_n"])][f"{meta['rerank_weight']:.1f}"] for t in tables]
    )
    assert "over 2 tables of judged corpora" in capsys.readouterr().out
    # one model's table twice, or the model's own tables, are refused; another model's table on
    # the same queries (another seed of the recipe) is pooled
    twice = ["--from", str(tmp_path / "dev"), str(tmp_path / "dev" / "choice.json")]
    assert main(["transfer-rerank-weight", "--reranker", str(target), *twice]) == 2
    assert "give each once" in capsys.readouterr().err
    other_seed = json.loads((tmp_path / "dev" / "choice.json").read_text())
    (tmp_path / "seed2.json").write_text(json.dumps(other_seed | {"reranker": str(tmp_path / "seed2")}))
    pooled = ["--from", str(tmp_path / "dev"), str(tmp_path / "seed2.json")]
    assert main(["transfer-rerank-weight", "--reranker", str(target), *pooled]) == 0
    sources = json.loads((target / "metadata.json").read_text())["rerank_weight_tuning"]["transferred_from"]
    assert len(sources) == 2
    own = ["--from", str(tmp_path / "dev")]
    assert main(["transfer-rerank-weight", "--reranker", str(config.reranker), *own]) == 2
    assert "were made with" in capsys.readouterr().err


def test_transfer_says_what_is_missing(tiny_tuning, tmp_path, capsys):
    _, config = tiny_tuning
    assert main(["transfer-rerank-weight", "--reranker", str(config.reranker), "--from", str(tmp_path)]) == 2
    assert "run `bertsearch tune-rerank-weight ... --dry-run" in capsys.readouterr().err
    assert main(["transfer-rerank-weight", "--reranker", str(tmp_path), "--from", str(tmp_path)]) == 2
    assert "give a MODEL_DIR from `bertsearch train`" in capsys.readouterr().err


def test_tuning_on_the_test_split_is_refused_unless_allowed(tiny_tuning, tmp_path, capsys):
    _, config = tiny_tuning
    before = (config.reranker / "metadata.json").read_bytes()
    argv = ["tune-rerank-weight", str(config.dataset), "--split", "test", "--reranker", str(config.reranker),
            "--index-dir", str(config.index_dir), "--depth", "8", "--out", str(tmp_path / "t"),
            "--no-progress"]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "choosing on the test split" in err and "--allow-test-split" in err
    assert not (tmp_path / "t").exists() and (config.reranker / "metadata.json").read_bytes() == before
    assert main([*argv, "--allow-test-split"]) == 0
    tuning = json.loads((config.reranker / "metadata.json").read_text())["rerank_weight_tuning"]
    assert tuning["split"] == "test" and tuning["chosen_on_test_split"] is True

