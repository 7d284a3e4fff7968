"""Training pays: a reranker fine-tuned on judged queries ranks held-out queries of the same
collection better than the same model with its untrained head.

The collection is the sample corpus (about 2,200 documents of the Python standard library's
documentation) with its 45 hand-judged queries, split by query into 30 for training and 15
held out; the model is the packaged MiniLM. A few hundred optimizer steps on 2 cores: minutes,
so the test is ``slow``.
"""

from __future__ import annotations

import pytest
import torch

from bertsearch.indexer.build import build_index
from bertsearch.indexer.embedder import Embedder
from bertsearch.indexer.models import resolve_model
from bertsearch.jobs.datasets.sample_corpus import write_sample_corpus, write_sample_queries
from bertsearch.jobs.datasets.split import SplitConfig, split_dataset
from bertsearch.jobs.evaluation.config import EvalConfig
from bertsearch.jobs.evaluation.runner import run_evaluation
from bertsearch.jobs.training.job import RayScaling, TrainJob, run
from bertsearch.ranker.training.examples import MiningConfig
from bertsearch.ranker.training.loop import TrainConfig

pytestmark = pytest.mark.slow


def _held_out_ndcg(data, index, reranker, out) -> float:
    config = EvalConfig(
        dataset=data, index_dir=index, out=out, split="heldout", configs=("hybrid+rerank",),
        reranker=reranker, depth=30, rerank_top_n=20, rerank_weight=1.0,  # the reranker alone decides
    )  # fmt: skip
    return run_evaluation(config, progress=False).config("hybrid+rerank").means["ndcg@10"]


def test_a_fine_tuned_reranker_beats_its_untrained_head_on_held_out_queries(local_ray, tmp_path):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    source = tmp_path / "sample" / "corpus.jsonl"
    write_sample_corpus(source)
    assert write_sample_queries(source) == 45
    data = tmp_path / "data"
    split_dataset(SplitConfig(dataset=source.parent, source="test", dev_fraction=1 / 3, seed=13, out=data,
                              train_name="train", dev_name="heldout"))  # fmt: skip
    index = tmp_path / "index"
    build_index(data, index, Embedder().load(), progress=False)

    # the baseline: the packaged MiniLM with a fresh, seeded relevance head, never trained
    torch.manual_seed(13)
    untrained = tmp_path / "untrained"
    path = resolve_model(None)
    AutoModelForSequenceClassification.from_pretrained(path, num_labels=1).save_pretrained(untrained)
    AutoTokenizer.from_pretrained(path).save_pretrained(untrained)

    trained = tmp_path / "trained"
    outcome = run(
        TrainJob(
            dataset=data, index_dir=index, out=trained, split="train",
            mining=MiningConfig(depth=30, negatives=7, seed=13),
            train=TrainConfig(max_length=128, epochs=8, groups_per_batch=1, learning_rate=1e-4,
                              head_learning_rate=1e-3, warmup_ratio=0.1, seed=13, log_every=1000),
            scaling=RayScaling(workers=1, cpus_per_worker=2), rerank_weight=1.0,
        ),
        progress=False,
    )  # fmt: skip
    steps = sum(epoch["steps"] for epoch in outcome.history)
    assert steps >= 200, f"only {steps} optimizer steps: not the few hundred this test is about"

    before = _held_out_ndcg(data, index, untrained, tmp_path / "eval-untrained")
    after = _held_out_ndcg(data, index, trained, tmp_path / "eval-trained")
    print(f"\nheld-out nDCG@10, 15 queries, {steps} steps: untrained {before:.4f}, fine-tuned {after:.4f}")
    assert after > before + 0.05, f"held-out nDCG@10: untrained head {before:.4f}, fine-tuned {after:.4f}"
