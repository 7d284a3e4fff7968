"""The search pipeline on tiny random models: stage composition, scores, rerank rules, config checks."""

from __future__ import annotations

import json

import numpy as np
import pytest

from bertsearch.indexer.snapshot import ModelMismatchError
from bertsearch.ranker.cross_encoder import CrossEncoder, UntrainedRerankerError
from bertsearch.ranker.factory import open_pipeline
from bertsearch.ranker.fusion import interpolate
from bertsearch.ranker.pipeline import NO_RERANKER_NOTE, PipelineConfig

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def index_dir(tiny_index_dir):
    return tiny_index_dir


@pytest.fixture(scope="module")
def pipeline(index_dir):
    pipe = open_pipeline(index_dir)
    yield pipe
    pipe.close()


def test_hybrid_hits_carry_every_stage_score_and_timings(pipeline):
    result = pipeline.search("purring cat", top_k=3)
    assert result.hits[0].id == "cats"  # the only BM25 match outranks any dense-only hit under RRF
    top = result.hits[0]
    assert set(top.scores) == {"bm25", "dense", "rrf"} and top.score == top.scores["rrf"]
    assert result.documents["cats"].title == "Domestic cats"
    assert {"bm25", "encode", "dense", "rrf", "fetch", "total"} <= set(result.timings_ms)
    assert result.reranked is False and result.notes == [NO_RERANKER_NOTE]


def test_single_retriever_passes_its_own_scores_through(pipeline):
    lexical = pipeline.search("memory safety of a language", top_k=5, config=PipelineConfig(dense=False))
    assert [h.id for h in lexical.hits] == ["rust", "python"]
    assert all(set(h.scores) == {"bm25"} and h.score == h.scores["bm25"] for h in lexical.hits)
    dense = pipeline.search("garbage collection", top_k=8, config=PipelineConfig(lexical=False))
    assert len(dense.hits) == 8 and all(set(h.scores) == {"dense"} for h in dense.hits)
    assert [h.score for h in dense.hits] == sorted((h.score for h in dense.hits), reverse=True)


def test_search_many_matches_search(pipeline):
    queries = ["volcano magma", "espresso beans", "herding dogs"]
    batched = pipeline.search_many(queries, top_k=4)
    for query, result in zip(queries, batched, strict=True):
        single = pipeline.search(query, top_k=4)
        assert [h.id for h in result.hits] == [h.id for h in single.hits]
        np.testing.assert_allclose([h.score for h in result.hits], [h.score for h in single.hits], rtol=1e-4)


def test_rerank_reorders_by_cross_encoder_scores(index_dir, tiny_cross_encoder_dir):
    pipe = open_pipeline(index_dir, reranker=tiny_cross_encoder_dir, config=PipelineConfig(rerank_top_n=8))
    result = pipe.search("brewed drinks with caffeine", top_k=8)
    pipe.close()
    assert result.reranked and result.notes == [] and "rerank" in result.timings_ms
    reference = CrossEncoder(tiny_cross_encoder_dir).load()
    expected = reference.score(
        "brewed drinks with caffeine", [result.documents[h.id].body for h in result.hits]
    )
    np.testing.assert_allclose([h.scores["rerank"] for h in result.hits], expected, rtol=1e-3, atol=1e-3)
    assert [h.score for h in result.hits] == sorted((h.score for h in result.hits), reverse=True)
    assert all("rrf" in h.scores for h in result.hits)


def test_rerank_only_touches_the_top_n(index_dir, tiny_cross_encoder_dir):
    pipe = open_pipeline(index_dir, reranker=tiny_cross_encoder_dir, config=PipelineConfig(rerank_top_n=3))
    result = pipe.search("language", top_k=8)
    pipe.close()
    assert [("rerank" in h.scores) for h in result.hits] == [True] * 3 + [False] * 5


def test_cross_encoder_scores_do_not_depend_on_batching(tiny_cross_encoder_dir):
    texts = ["short", "a much longer text about volcanoes and glaciers " * 5, "medium length text here"]
    small = CrossEncoder(tiny_cross_encoder_dir, batch_size=1, precision="fp32").load().score("q", texts)
    large = CrossEncoder(tiny_cross_encoder_dir, batch_size=64, precision="fp32").load().score("q", texts)
    np.testing.assert_allclose(small, large, rtol=1e-4, atol=1e-5)


def test_a_model_without_a_trained_head_is_refused_as_reranker(tiny_bert_dir):
    with pytest.raises(UntrainedRerankerError, match="no trained relevance head"):
        CrossEncoder(tiny_bert_dir).load()


def test_query_encoder_must_match_the_index(index_dir, tiny_cross_encoder_dir):
    # Same architecture and tokenizer, other weights: vectors would not be comparable.
    with pytest.raises(ModelMismatchError, match="Rebuild the index"):
        open_pipeline(index_dir, encoder_model=tiny_cross_encoder_dir)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"lexical": False, "dense": False}, "at least one retriever"),
        ({"lexical_k": 0}, "lexical_k must be between 1 and 1000"),
        ({"rerank_top_n": 5000}, "rerank_top_n must be between"),
        ({"rrf_k": -1}, "rrf_k must be non-negative"),
    ],
)
def test_impossible_configurations_are_refused(settings, message):
    with pytest.raises(ValueError, match=message):
        PipelineConfig(**settings)


def test_unknown_overrides_name_the_known_settings():
    with pytest.raises(ValueError, match="unknown pipeline settings.*known"):
        PipelineConfig().with_overrides(depth=3)
    assert PipelineConfig().with_overrides(dense=False, lexical_k=None).dense is False
    assert PipelineConfig().with_overrides(dense=False).name == "bm25+rerank"


def test_interpolate_min_max_normalises_each_score_list():
    assert interpolate([2.0, 0.0, 1.0], [0.5, 0.3, 0.1], 0.25) == pytest.approx(
        [0.25 * 1.0 + 0.75 * 1.0, 0.25 * 0.0 + 0.75 * 0.5, 0.25 * 0.5 + 0.75 * 0.0]
    )
    assert interpolate([3.0, 3.0], [1.0, 0.0], 0.5) == pytest.approx([0.5, 0.0])  # a flat list adds nothing
    with pytest.raises(ValueError, match="between 0 and 1"):
        interpolate([1.0], [1.0], 1.5)
    with pytest.raises(ValueError, match="rerank_weight must be between 0 and 1"):
        PipelineConfig(rerank_weight=-0.1)


@pytest.mark.parametrize("weight", [0.1, 0.4])  # weight 0 skips the stage: the test below
def test_a_rerank_weight_below_one_blends_rerank_and_fused_scores(index_dir, tiny_cross_encoder_dir, weight):
    query = "brewed drinks with caffeine"
    pipe = open_pipeline(index_dir, reranker=tiny_cross_encoder_dir, config=PipelineConfig(rerank_top_n=6))
    try:
        blended = pipe.search(query, top_k=6, config=pipe.config.with_overrides(rerank_weight=weight)).hits
        fused = pipe.search(query, top_k=6, config=pipe.config.with_overrides(rerank=False)).hits
    finally:
        pipe.close()
    rerank = {h.id: h.scores["rerank"] for h in blended}
    rrf = {h.id: h.scores["rrf"] for h in blended}
    ids = list(rerank)
    lo_r, hi_r, lo_f, hi_f = min(rerank.values()), max(rerank.values()), min(rrf.values()), max(rrf.values())
    expected = {
        i: weight * (rerank[i] - lo_r) / (hi_r - lo_r) + (1 - weight) * (rrf[i] - lo_f) / (hi_f - lo_f)
        for i in ids
    }
    assert [h.score for h in blended] == pytest.approx([expected[h.id] for h in blended])
    assert [h.id for h in blended] == sorted(ids, key=lambda i: (-expected[i], i))
    assert all(h.scores["blend"] == h.score for h in blended)
    assert {h.id for h in blended} == {h.id for h in fused}


def test_a_trained_model_brings_its_max_length_and_rerank_weight(tmp_path, tiny_cross_encoder_dir):
    import shutil

    model = shutil.copytree(tiny_cross_encoder_dir, tmp_path / "model")
    assert (CrossEncoder(model).max_length, CrossEncoder(model).rerank_weight) == (256, 1.0)  # no metadata
    (model / "metadata.json").write_text(json.dumps({"max_length": 96, "rerank_weight": 0.3}))
    served = CrossEncoder(model)
    assert (served.max_length, served.rerank_weight) == (96, 0.3)
    assert CrossEncoder(model, max_length=48).max_length == 48  # an explicit length wins
    (model / "metadata.json").write_text("{not json")
    with pytest.raises(ValueError, match="metadata.json is not readable JSON"):
        CrossEncoder(model)


@pytest.mark.parametrize("weight", [1.0, 0.3])
def test_scores_never_increase_down_a_reranked_list(index_dir, tiny_cross_encoder_dir, weight):
    # reranked scores (logits, or a blend in [0, 1]) and the unreranked tail's fused scores are on
    # different scales: the served score must still follow the served order
    config = PipelineConfig(rerank_top_n=3, rerank_weight=weight)
    pipe = open_pipeline(index_dir, reranker=tiny_cross_encoder_dir, config=config)
    try:
        for query in ("language", "brewed drinks with caffeine", "ice", "loyal animals"):
            hits = pipe.search(query, top_k=8).hits
            assert [("rerank" in h.scores) for h in hits] == [True] * 3 + [False] * 5
            scores = [h.score for h in hits]
            assert scores == sorted(scores, reverse=True), (query, scores)
            tail = hits[3:]
            assert [h.scores["rrf"] for h in tail] == sorted((h.scores["rrf"] for h in tail), reverse=True)
            # the tail keeps its fused score differences, just below the last reranked hit
            assert tail[0].score < hits[2].score
            gaps = [a.score - b.score for a, b in zip(tail, tail[1:], strict=False)]
            fused = [a.scores["rrf"] - b.scores["rrf"] for a, b in zip(tail, tail[1:], strict=False)]
            assert gaps == pytest.approx(fused, abs=1e-9)
    finally:
        pipe.close()


class PrefixScorer:
    """Scores only the first ``allow`` pairs it is given (as a budget cut would), and counts them."""

    def __init__(self, encoder: CrossEncoder, allow: int) -> None:
        self.encoder, self.allow, self.pairs = encoder, allow, 0

    def admit(self) -> None:
        pass

    def score_prefix(self, pairs, deadline):
        from bertsearch.ranker.rerank_budget import BUDGET, ScoredPrefix

        self.pairs += min(len(pairs), self.allow)
        cut = BUDGET if len(pairs) > self.allow else None
        return ScoredPrefix(self.encoder.score_pairs(pairs[: self.allow]), cut)


def test_cached_scores_are_reused_and_the_scored_hits_stay_a_fused_prefix(index_dir, tiny_cross_encoder_dir):
    from bertsearch.ranker.score_cache import ScoreCache

    pipe = open_pipeline(index_dir, reranker=tiny_cross_encoder_dir, config=PipelineConfig(rerank_top_n=8))
    fused = [h.id for h in pipe.search("language", top_k=8, config=PipelineConfig(rerank=False)).hits]
    pipe.scorer = PrefixScorer(pipe.reranker, allow=3)
    pipe.score_cache = ScoreCache(max_entries=100)
    pipe.score_cache.put_many("language", {fused[5]: 99.0})  # cached, but below what a cut leaves unscored
    first = pipe.search("language", top_k=8)
    assert first.rerank.scored == 3 and first.rerank.cached == 0  # fused[5]'s score waits for 3 and 4
    second = pipe.search("language", top_k=8)  # 0-2 cached, 3, 4, 6 newly scored: the prefix reaches 0-6
    pipe.close()
    assert second.rerank.scored == 7 and second.rerank.cached == 4 and pipe.scorer.pairs == 6
    assert {h.id for h in second.hits if "rerank" in h.scores} == set(fused[:7])
    assert second.hits[0].id == fused[5] and second.hits[0].scores["rerank"] == 99.0


def test_the_score_cache_keeps_the_most_recent_entries():
    from bertsearch.ranker.score_cache import ScoreCache

    cache = ScoreCache(max_entries=2)
    cache.put_many("q", {"a": 1.0, "b": 2.0})
    assert cache.get_many("q", ["a"]) == [1.0]  # "a" is now the most recent
    cache.put_many("q", {"c": 3.0})
    assert cache.get_many("q", ["a", "b", "c"]) == [1.0, None, 3.0] and len(cache) == 2
    assert (cache.hits, cache.lookups) == (3, 4)


def test_a_zero_rerank_weight_skips_the_rerank_stage_and_says_so(index_dir, tiny_cross_encoder_dir, tmp_path):
    import shutil

    from bertsearch.ranker.pipeline import ZERO_WEIGHT_NOTE
    from bertsearch.ranker.rerank_budget import ScoredPrefix

    reranker = shutil.copytree(tiny_cross_encoder_dir, tmp_path / "reranker")
    (reranker / "metadata.json").write_text(json.dumps({"rerank_weight": 0.0, "rerank_top_n": 8}))
    pipe = open_pipeline(index_dir, reranker=reranker)

    calls = []

    class Recording:  # what the pipeline asks its scorer to score
        def admit(self):
            pass

        def score_prefix(self, pairs, deadline):
            calls.append(len(pairs))
            return ScoredPrefix(np.zeros(len(pairs), dtype=np.float32))

    pipe.scorer = Recording()
    fused = pipe.search("brewed drinks with caffeine", top_k=8, config=PipelineConfig(rerank=False))
    served = pipe.search("brewed drinks with caffeine", top_k=8)  # the model's own point: weight 0
    assert calls == []
    asked = pipe.search("brewed drinks with caffeine", top_k=8, config=PipelineConfig(rerank_weight=0.5))
    pipe.close()
    assert calls == [8] and asked.reranked  # a request's own weight above 0 does rerank
    assert not pipe.reranks(PipelineConfig()) and pipe.reranks(PipelineConfig(rerank_weight=0.5))
    assert [h.id for h in served.hits] == [h.id for h in fused.hits]
    assert served.reranked is False and served.rerank is None and served.notes == [ZERO_WEIGHT_NOTE]
    assert "rerank" not in served.timings_ms and served.degraded is False
