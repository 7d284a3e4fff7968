"""``bertsearch search`` and ``serve``: query an index from the terminal, or serve it over HTTP."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from bertsearch.jobs.cli.errors import UserError


def register(sub: argparse._SubParsersAction) -> None:
    _add_search(sub)
    _add_explain(sub)
    _add_serve(sub)


def _add_search(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("search", help="search an index from the command line")
    p.add_argument("query")
    p.add_argument("--index-dir", type=Path, required=True)
    p.add_argument("--top-k", type=int, default=10)
    p.add_argument("--reranker", default=None, help="trained cross-encoder folder")
    p.add_argument("--no-lexical", action="store_true", help="turn BM25 retrieval off")
    p.add_argument("--no-dense", action="store_true", help="turn dense retrieval off")
    p.add_argument("--json", action="store_true", help="print the same JSON as POST /search")
    p.set_defaults(run=search)


def _add_explain(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("explain", help="why a document ranks where it does for a query (as POST /explain)")
    p.add_argument("query")
    p.add_argument("id", help="the document's id")
    p.add_argument("--index-dir", type=Path, required=True)
    p.add_argument("--reranker", default=None, help="trained cross-encoder folder, or a reranker registry")
    p.add_argument("--steps", type=int, default=16, help="integrated-gradients steps (cost; default 16)")
    p.add_argument("--json", action="store_true", help="print the same JSON as POST /explain")
    p.set_defaults(run=explain)


def _add_serve(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="serve search over HTTP")
    p.add_argument(
        "--index-dir", type=Path, default=os.environ.get("BERTSEARCH_INDEX_DIR"),
        help="index directory (or BERTSEARCH_INDEX_DIR)",
    )
    p.add_argument(
        "--reranker", default=os.environ.get("BERTSEARCH_RERANKER"),
        help="trained cross-encoder folder, or a reranker registry whose CURRENT version is served and "
        "followed without a restart (`bertsearch reranker`); or BERTSEARCH_RERANKER",
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    g = p.add_argument_group("Ray Serve (scale out: replicas of the service and a batching reranker)")
    g.add_argument("--ray-serve", action="store_true",
                   help="serve on Ray Serve (a local Ray, or the cluster at RAY_ADDRESS), not in one process")
    g.add_argument("--replicas", type=int, default=2, help="service replicas (default 2)")
    g.add_argument("--max-replicas", type=int, default=None,
                   help="autoscale the service between --replicas and this many replicas")
    g.add_argument("--replica-cpus", type=float, default=0.25, help="CPUs reserved per service replica")
    g.add_argument("--reranker-replicas", type=int, default=1, help="reranker replicas (default 1)")
    g.add_argument("--reranker-cpus", type=float, default=1.0, help="CPUs per reranker replica")
    g.add_argument("--reranker-gpus", type=float, default=None,
                   help="GPUs per reranker replica (default: 1 where the cluster has GPUs, else 0)")
    p.set_defaults(run=serve)


def search(args: argparse.Namespace) -> int:
    from bertsearch.ranker.factory import open_pipeline
    from bertsearch.ranker.pipeline import PipelineConfig
    from bertsearch.ranker.response import result_to_dict

    config = PipelineConfig(lexical=not args.no_lexical, dense=not args.no_dense)
    pipeline = open_pipeline(args.index_dir, reranker=args.reranker, config=config)
    result = pipeline.search(args.query, top_k=args.top_k)
    answer = result_to_dict(result, args.query)
    if args.json:
        print(json.dumps(answer, indent=2, ensure_ascii=False))
        return 0
    for note in answer["notes"]:
        print(f"note: {note}", file=sys.stderr)
    for rank, hit in enumerate(answer["hits"], start=1):
        stages = " ".join(f"{k}={v:.4g}" for k, v in hit["scores"].items())
        print(f"{rank:>3}. {hit['id']}  {hit['title'][:80]}\n     {stages}\n     {hit['snippet'][:160]}")
    timings = " ".join(f"{k}={v:.1f}ms" for k, v in answer["timings_ms"].items())
    print(f"timings: {timings}", file=sys.stderr)
    return 0


def explain(args: argparse.Namespace) -> int:
    from bertsearch.ranker.explain import explain as explain_hit
    from bertsearch.ranker.factory import open_pipeline

    pipeline = open_pipeline(args.index_dir, reranker=args.reranker)
    try:
        answer = explain_hit(pipeline, args.query, args.id, steps=args.steps)
    finally:
        pipeline.close()
    if args.json:
        print(json.dumps(answer, indent=2, ensure_ascii=False))
        return 0
    print(f"{answer['id']}  {answer['title'][:80]}: final rank {answer['final_rank'] or 'not a candidate'}"
          f" of {answer['candidates']}")  # fmt: skip
    for stage, view in answer["stages"].items():
        rrf = f"  rrf +{view['rrf_contribution']:.4f}" if "rrf_contribution" in view else ""
        print(f"  {stage:<7} score {view['score']:.4g}  rank {view['rank']} of {view['of']}{rrf}")
    for match in answer["matched_terms"]:
        print(f"  term {match['term']!r}: bm25 {match['score']:.3f} in {match['field']} "
              f"(occurs in {', '.join(match['fields']) or 'neither title nor text'})")  # fmt: skip
    words = answer["attributions"]
    if words:
        top = sorted(words["document"], key=lambda w: -w["score"])[:10]
        print(f"  reranker logit {words['score']:.3f} (no words: {words['reference_score']:.3f});"
              f" {words['ms']:.0f} ms, {words['steps']} steps")  # fmt: skip
        print("  query words:    " + ", ".join(f"{w['word']} {w['score']:+.3f}" for w in words["query"]))
        print("  document words: " + ", ".join(f"{w['word']} {w['score']:+.3f}" for w in top))
    print(f"timings: {answer['ms']}", file=sys.stderr)
    return 0


def serve(args: argparse.Namespace) -> int:
    import uvicorn

    from bertsearch.api.settings import ServiceSettings
    from bertsearch.indexer.versions import IndexDirectory

    if args.index_dir is None:
        raise UserError("give --index-dir or set BERTSEARCH_INDEX_DIR")
    settings = ServiceSettings(index_dir=args.index_dir, reranker=args.reranker)
    IndexDirectory(args.index_dir).current()  # fail here, with the fix, rather than in lifespan
    if args.ray_serve:
        return _serve_on_ray(args, settings)
    os.environ.update(settings.to_env())
    print(f"serving {args.index_dir} on http://{args.host}:{args.port} (API docs at /docs)")
    uvicorn.run("bertsearch.api.app:create_app_from_env", factory=True, host=args.host, port=args.port)
    return 0


def _serve_on_ray(args: argparse.Namespace, settings) -> int:
    """The same service on Ray Serve; ``settings`` (flags over BERTSEARCH_* variables) go to every replica."""
    from bertsearch.jobs.runtime import join_or_start_ray
    from bertsearch.jobs.serving.ray_serve import ServeLayout, run

    layout = ServeLayout(
        replicas=args.replicas,
        max_replicas=args.max_replicas,
        ingress_cpus=args.replica_cpus,
        reranker_replicas=args.reranker_replicas,
        reranker_cpus=args.reranker_cpus,
        reranker_gpus=args.reranker_gpus,
    )
    join_or_start_ray()
    rerankers = layout.reranker_replicas if settings.reranker else 0
    print(f"serving {args.index_dir} on Ray Serve at http://{args.host}:{args.port}: "
          f"{layout.replicas} service replicas, {rerankers} reranker replicas")
    run(settings, layout, host=args.host, port=args.port)
    return 0
