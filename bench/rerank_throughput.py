"""Reranker throughput in one process, on the same weights and the same pairs: pairs/s and the
ranking agreement with the fp32 reference, for sentence-transformers' `CrossEncoder.predict`
(its defaults) and bertsearch's `CrossEncoder.score_pairs` in fp32 and, at several lengths, in the
precision serving picks here (bf16 where the CPU/GPU runs it natively, else fp32), and distilled
students (`bertsearch distill`) of the reranker in that precision at the same lengths.

    python bench/rerank_throughput.py --reranker var/models/scifact-judged \
        --dataset var/data/scifact-dev --split test --index-dir var/index/scifact --queries 50 --depth 20 \
        [--students var/models/scifact-student3] [--ndcg]

Pairs: --queries queries of the split (seeded sample) with their BM25 top --depth documents.
Each scorer runs once to warm up on 32 pairs, then scores every pair --repeats times; the best
run counts. Kendall's tau is computed per query against bertsearch fp32 at the model's (the
teacher's) length, then averaged. Run it on a quiet machine: it measures the CPU.

--ndcg also evaluates the reranker and every student at its served operating point (the depth,
weight and length its metadata.json records, the precision serving picks) on the whole split with
the `bertsearch eval` code: nDCG@10 of hybrid + rerank against hybrid, with the paired test.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

import numpy as np
import torch
from scipy.stats import kendalltau

from bertsearch.jobs.datasets.beir import BeirDataset
from bertsearch.ranker.cross_encoder import CrossEncoder
from bertsearch.ranker.factory import open_pipeline


def timed(score, pairs, repeats: int) -> tuple[np.ndarray, float]:
    score(pairs[:32])
    best, scores = float("inf"), None
    for _ in range(repeats):
        started = time.perf_counter()
        scores = np.asarray(score(pairs), dtype=np.float64)
        best = min(best, time.perf_counter() - started)
    return scores, len(pairs) / best


def onnx_scorers(model_dir: Path, max_length: int, folder: Path) -> dict:
    """ONNX Runtime scorers of the same weights, fp32 and dynamically quantized int8 (measured
    here to decide whether a backend is worth shipping; bertsearch does not ship one)."""
    import onnxruntime as ort
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from bertsearch.indexer.batching import token_bounded_batches

    encoder = CrossEncoder(model_dir, precision="fp32", max_length=max_length).load()

    class Logits(torch.nn.Module):
        def __init__(self, model) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids, attention_mask, token_type_ids):
            return self.model(input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids).logits

    names = ["input_ids", "attention_mask", "token_type_ids"]
    sample = encoder.tokenizer(["q", "q"], ["a passage", "a long passage"], padding=True, return_tensors="pt")
    fp32, int8 = folder / "reranker.onnx", folder / "reranker-int8.onnx"
    torch.onnx.export(Logits(encoder.model), tuple(sample[n] for n in names), str(fp32), input_names=names,
                      output_names=["logits"], opset_version=17, dynamo=False,
                      dynamic_axes={**{n: {0: "batch", 1: "tokens"} for n in names}, "logits": {0: "batch"}})
    quantize_dynamic(str(fp32), str(int8), weight_type=QuantType.QInt8)

    def scorer(path: Path):
        options = ort.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

        def score(pairs):
            encoded = encoder._tokenize(pairs)
            lengths = [len(ids) for ids in encoded["input_ids"]]
            out = np.zeros(len(pairs), dtype=np.float32)
            for batch in token_bounded_batches(lengths, encoder.batch_size, encoder.max_batch_tokens):
                features = encoder.tokenizer.pad({k: [v[i] for i in batch] for k, v in encoded.items()},
                                                 return_tensors="np")
                out[batch] = session.run(None, {n: features[n].astype(np.int64) for n in names})[0][:, 0]
            return out

        return score

    return {f"onnxruntime fp32, {max_length} tokens": scorer(fp32),
            f"onnxruntime int8 (dynamic), {max_length} tokens": scorer(int8)}


def served_quality(models: list[Path], args: argparse.Namespace, folder: Path) -> list[dict]:
    """nDCG@10 of hybrid + rerank at each model's served point on the whole split, against hybrid."""
    from bertsearch.jobs.evaluation.config import EvalConfig
    from bertsearch.jobs.evaluation.runner import run_evaluation

    rows = []
    for model in models:
        config = EvalConfig(
            dataset=args.dataset, index_dir=args.index_dir, out=folder / model.name, split=args.split,
            configs=("hybrid", "hybrid+rerank"), reranker=model,
        )  # fmt: skip
        result = run_evaluation(config, progress=False)
        reranked, hybrid = result.config("hybrid+rerank"), result.config("hybrid")
        comparison = next(c for c in result.comparisons if c.name == "hybrid+rerank")
        rows.append({
            "model": str(model), "split": args.split, "queries": len(result.queries),
            "rerank_top_n": reranked.pipeline["rerank_top_n"],
            "rerank_weight": reranked.pipeline["rerank_weight"],
            "max_length": result.identity["reranker"]["max_length"],
            "ndcg@10": round(reranked.means["ndcg@10"], 4),
            "hybrid_ndcg@10": round(hybrid.means["ndcg@10"], 4),
            "p_ndcg@10": comparison.p_values["ndcg@10"],
        })  # fmt: skip
        row = rows[-1]
        print(f"{model.name} at its served point (top {row['rerank_top_n']}, w {row['rerank_weight']}, "
              f"{row['max_length']} tokens): nDCG@10 {row['ndcg@10']:.4f} on {row['queries']} {args.split} "
              f"queries (hybrid {row['hybrid_ndcg@10']:.4f}, p {row['p_ndcg@10']:.3g})")  # fmt: skip
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--reranker", type=Path, required=True)
    parser.add_argument("--dataset", type=Path, required=True)
    parser.add_argument("--split", default="test")
    parser.add_argument("--index-dir", type=Path, required=True)
    parser.add_argument("--queries", type=int, default=50)
    parser.add_argument("--depth", type=int, default=20)
    parser.add_argument("--lengths", default="128,192,256")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--students", default="", help="comma-separated student model folders of --reranker")
    parser.add_argument("--onnx", action="store_true", help="also ONNX Runtime fp32 and int8 (onnxruntime)")
    parser.add_argument("--ndcg", action="store_true", help="also nDCG@10 of each model at its served point")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    queries = BeirDataset(args.dataset).load(args.split).queries
    chosen = random.Random(args.seed).sample(sorted(queries), min(args.queries, len(queries)))
    pipeline = open_pipeline(args.index_dir)
    pairs, groups = [], []
    for query_id in chosen:
        hits = pipeline.lexical.search(queries[query_id], args.depth)
        documents = pipeline.lexical.get([h.id for h in hits])
        found = [(queries[query_id], documents[h.id].body) for h in hits if h.id in documents]
        groups.append(range(len(pairs), len(pairs) + len(found)))
        pairs += found
    pipeline.close()

    served_as = CrossEncoder(args.reranker)  # as serving opens it: its length, precision "auto"
    reference_length, served = served_as.max_length, ("bf16" if served_as.bf16 else "fp32")
    scorers = {}
    from sentence_transformers import CrossEncoder as SentenceTransformersCrossEncoder

    st = SentenceTransformersCrossEncoder(str(args.reranker))
    scorers["sentence-transformers predict (defaults)"] = lambda p: st.predict(p, show_progress_bar=False)
    reference_name = f"bertsearch fp32, {reference_length} tokens"
    scorers[reference_name] = (
        CrossEncoder(args.reranker, precision="fp32", max_length=reference_length).load().score_pairs
    )
    # The length and student rows run at the precision serving picks on this machine ("auto"):
    # bf16 where the CPU/GPU runs it natively, fp32 elsewhere. Where that is fp32, one bf16 row
    # (emulated) shows why auto does not pick it.
    lengths = [int(x) for x in args.lengths.split(",")]
    for length in lengths:
        if served == "fp32" and length == reference_length:
            continue  # that row is the reference itself
        scorers[f"bertsearch {served}, {length} tokens"] = (
            CrossEncoder(args.reranker, precision=served, max_length=length).load().score_pairs
        )
    if served == "fp32":
        scorers[f"bertsearch bf16 (emulated, not served here), {reference_length} tokens"] = (
            CrossEncoder(args.reranker, precision="bf16", max_length=reference_length).load().score_pairs
        )
    for student in (Path(s) for s in args.students.split(",") if s):
        for length in lengths:
            scorers[f"student {student.name} {served}, {length} tokens"] = (
                CrossEncoder(student, precision=served, max_length=length).load().score_pairs
            )
    if args.onnx:
        import tempfile

        scorers.update(onnx_scorers(args.reranker, reference_length, Path(tempfile.mkdtemp())))
    rows, reference = [], None
    for name, score in scorers.items():
        scores, per_second = timed(score, pairs, args.repeats)
        if name == reference_name:
            reference = scores
        rows.append({"scorer": name, "pairs_per_s": round(per_second, 1), "scores": scores})
    base = rows[0]["pairs_per_s"]
    for row in rows:
        scores = row.pop("scores")
        taus = [kendalltau(reference[list(g)], scores[list(g)]).statistic for g in groups if len(g) > 1]
        row["kendall_tau_vs_fp32"] = round(float(np.nanmean(taus)), 4)
        row["x_sentence_transformers"] = round(row["pairs_per_s"] / base, 2)
        speedup, tau = row["x_sentence_transformers"], row["kendall_tau_vs_fp32"]
        print(f"{row['scorer']:<50} {row['pairs_per_s']:>7.1f} pairs/s {speedup:>5.2f}x tau {tau:.4f}")
    report = {"pairs": len(pairs), "queries": len(chosen), "depth": args.depth,
              "reranker": str(args.reranker), "served_precision": served,
              "cpu_capability": torch.backends.cpu.get_cpu_capability(), "rows": rows}  # fmt: skip
    if args.ndcg:
        import tempfile

        models = [args.reranker, *(Path(s) for s in args.students.split(",") if s)]
        report["served_quality"] = served_quality(models, args, Path(tempfile.mkdtemp()))
    if args.out:
        args.out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
