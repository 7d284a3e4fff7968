"""What an evaluation is: the named pipeline configurations, metrics, tests and ``EvalConfig``.

A leaf of ``jobs.evaluation``: the runner, scoring, report and identity modules all read it, and
it imports none of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bertsearch.indexer.models import Precision
from bertsearch.ranker.pipeline import PipelineConfig

TEST_SPLIT = "test"
METRICS = ("ndcg@10", "mrr@10", "recall@100", "map@100")
STAT_TESTS = ("student", "fisher")

# Which stages each configuration name turns on; depth and rerank settings come from EvalConfig.
CONFIGS: dict[str, dict[str, bool]] = {
    "bm25": {"lexical": True, "dense": False, "rerank": False},
    "dense": {"lexical": False, "dense": True, "rerank": False},
    "hybrid": {"lexical": True, "dense": True, "rerank": False},
    "bm25+rerank": {"lexical": True, "dense": False, "rerank": True},
    "dense+rerank": {"lexical": False, "dense": True, "rerank": True},
    "hybrid+rerank": {"lexical": True, "dense": True, "rerank": True},
}
RUNS_DIR = "runs"


def known_configs() -> str:
    return ", ".join(CONFIGS)


def parse_configs(text: str) -> tuple[str, ...]:
    """``"bm25,dense"`` -> ``("bm25", "dense")``; raises ValueError naming the known ones."""
    names = tuple(part.strip() for part in text.split(",") if part.strip())
    if not names:
        raise ValueError(f"no configuration given; known configurations: {known_configs()}")
    return names


def pipeline_config(
    name: str, depth: int, rerank_top_n: int | None = None, rerank_weight: float | None = None
) -> PipelineConfig:
    """The PipelineConfig a configuration name stands for, retrieving ``depth`` candidates a retriever."""
    if name not in CONFIGS:
        raise ValueError(f"unknown configuration {name!r}; known configurations: {known_configs()}")
    stages = CONFIGS[name]
    config = PipelineConfig(**stages, lexical_k=depth, dense_k=depth)
    if stages["rerank"]:
        config = config.with_overrides(rerank_top_n=rerank_top_n, rerank_weight=rerank_weight)
    return config


@dataclass(frozen=True)
class EvalConfig:
    """One evaluation: which dataset split, which index, which configurations, where to write.

    The first configuration is the baseline every other one is compared with. ``depth``
    candidates come from each retriever and ``depth`` hits are scored per query (Recall@100
    needs a depth of at least 100). ``+rerank`` configurations need ``reranker``, a trained
    cross-encoder folder; ``rerank_weight`` overrides the weight its metadata gives its score
    against the retrieval score (None: the model's own). ``precision`` is the encoder's (an
    index built here uses it too).
    ``model``: the encoder to build a missing index with (None: the packaged MiniLM); when given,
    only an index embedded with these weights is reused.
    """

    dataset: Path
    index_dir: Path
    out: Path
    split: str = "test"
    configs: tuple[str, ...] = ("bm25", "dense", "hybrid")
    reranker: Path | None = None
    depth: int = 100
    rerank_top_n: int | None = None
    rerank_weight: float | None = None
    stat_test: str = "student"
    max_p: float = 0.05
    precision: Precision = "auto"
    rerank_max_length: int | None = None  # None: the length the reranker's folder records
    rerank_precision: Precision = "auto"
    model: str | Path | None = None
    query_batch: int = 64
    per_query_metric: str = "ndcg@10"
    top_queries: int = 10
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.configs:
            raise ValueError(f"give at least one configuration; known configurations: {known_configs()}")
        unknown = [name for name in self.configs if name not in CONFIGS]
        if unknown:
            raise ValueError(
                f"unknown configuration{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))}; "
                f"known configurations: {known_configs()}"
            )
        if len(set(self.configs)) != len(self.configs):
            raise ValueError(f"configurations repeat: {', '.join(self.configs)}; name each once")
        rerankers = [name for name in self.configs if CONFIGS[name]["rerank"]]
        if rerankers and self.reranker is None:
            raise ValueError(
                f"{', '.join(rerankers)} rerank with a trained cross-encoder: pass --reranker MODEL_DIR "
                "(train one with `bertsearch train`), or drop the +rerank configurations"
            )
        if not 1 <= self.depth <= 1000:
            raise ValueError(f"depth must be between 1 and 1000, got {self.depth}")
        if self.rerank_top_n is not None and not 1 <= self.rerank_top_n <= self.depth:
            raise ValueError(
                f"rerank_top_n must be between 1 and the depth ({self.depth}), got {self.rerank_top_n}"
            )
        if self.rerank_max_length is not None and self.rerank_max_length < 8:
            raise ValueError(f"rerank_max_length must be at least 8 tokens, got {self.rerank_max_length}")
        if self.stat_test not in STAT_TESTS:
            raise ValueError(f"stat_test must be one of {', '.join(STAT_TESTS)}, not {self.stat_test!r}")
        if not 0.0 < self.max_p < 1.0:
            raise ValueError(f"max_p must be between 0 and 1, got {self.max_p}")
        if self.query_batch < 1:
            raise ValueError(f"query_batch must be at least 1, got {self.query_batch}")
        if self.per_query_metric not in METRICS:
            raise ValueError(
                f"per_query_metric must be one of {', '.join(METRICS)}, not {self.per_query_metric!r}"
            )
        if self.top_queries < 0:
            raise ValueError(f"top_queries must be non-negative, got {self.top_queries}")

    def pipeline_configs(self) -> dict[str, PipelineConfig]:
        return {
            name: pipeline_config(name, self.depth, self.rerank_top_n, self.rerank_weight)
            for name in self.configs
        }


def check_choice_split(split: str, allow_test_split: bool, *, what: str) -> None:
    """Refuse to choose anything (an epoch, a weight, a depth) on a split named ``test``.

    A figure reported on the split a choice was made on is no longer a test result; where that
    is really meant (a collection without any other judged split), ``allow_test_split`` says so
    and the choice records it.
    """
    if split.strip().lower() == TEST_SPLIT and not allow_test_split:
        raise ValueError(
            f"{what} {split!r}: choosing on the test split makes its results no longer a test; "
            "carve a dev split with `bertsearch split`, or pass --allow-test-split to do it anyway "
            "(it is recorded in the model folder)"
        )
