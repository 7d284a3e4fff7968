"""What each ``bertsearch`` subcommand does, as plain functions of parsed arguments."""

from __future__ import annotations

import argparse
import json
import os
import sys

from indexer.corpus import CorpusError
from indexer.snapshot import ModelMismatchError
from indexer.versions import IndexBusyError, IndexNotFoundError
from ranker.cross_encoder import UntrainedRerankerError


class UserError(Exception):
    """A mistake the user can fix; printed without a traceback."""


# Errors whose message already says what to change.
USER_ERRORS = (
    CorpusError,
    IndexNotFoundError,
    ModelMismatchError,
    UntrainedRerankerError,
    ValueError,
    FileNotFoundError,
    IndexBusyError,
)


def positive_ints(name: str, example: str):
    """An argparse type for a comma-separated list of positive integers (sorted, without repeats)."""

    def parse(text: str) -> tuple[int, ...]:
        try:
            values = tuple(sorted({int(part) for part in text.split(",") if part.strip()}))
        except ValueError as err:
            raise argparse.ArgumentTypeError(
                f"give {name} as comma-separated integers, e.g. {example}; got {text!r}"
            ) from err
        if not values or values[0] < 1:
            raise argparse.ArgumentTypeError(f"{name} must be positive integers, got {text!r}")
        return values

    return parse


def index(args: argparse.Namespace) -> int:
    from jobs.index_job import job_from_args, run_build, run_update

    try:
        job = job_from_args(args)
        report = run_update(job) if job.incremental else run_build(job)
    except USER_ERRORS as err:
        raise UserError(str(err)) from err
    print(report.summary())
    if report.rejects:
        print(
            f"{len(report.rejects)} lines rejected (also in {report.path / 'rejects.jsonl'}):",
            file=sys.stderr,
        )
        for reject in report.rejects[:20]:
            print(f"  {reject}", file=sys.stderr)
        if len(report.rejects) > 20:
            print(f"  ... and {len(report.rejects) - 20} more", file=sys.stderr)
    return 0


def search(args: argparse.Namespace) -> int:
    from ranker.factory import open_pipeline
    from ranker.pipeline import PipelineConfig
    from ranker.response import result_to_dict

    try:
        config = PipelineConfig(lexical=not args.no_lexical, dense=not args.no_dense)
        pipeline = open_pipeline(args.index_dir, reranker=args.reranker, config=config)
        result = pipeline.search(args.query, top_k=args.top_k)
    except USER_ERRORS as err:
        raise UserError(str(err)) from err
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


def serve(args: argparse.Namespace) -> int:
    import uvicorn

    from api.settings import ServiceSettings

    if args.index_dir is None:
        raise UserError("give --index-dir or set BERTSEARCH_INDEX_DIR")
    settings = ServiceSettings(index_dir=args.index_dir, reranker=args.reranker)
    try:
        from indexer.versions import IndexDirectory

        IndexDirectory(args.index_dir).current()  # fail here, with the fix, rather than in lifespan
    except IndexNotFoundError as err:
        raise UserError(str(err)) from err
    os.environ.update(settings.to_env())
    print(f"serving {args.index_dir} on http://{args.host}:{args.port} (API docs at /docs)")
    uvicorn.run("api.app:create_app_from_env", factory=True, host=args.host, port=args.port)
    return 0


def sample_corpus(args: argparse.Namespace) -> int:
    from jobs.sample_corpus import write_sample_corpus, write_sample_queries

    count = write_sample_corpus(args.out)
    print(f"wrote {count} documents to {args.out}")
    judged = write_sample_queries(args.out)
    print(f"wrote {judged} judged queries beside it (queries.jsonl, qrels/test.tsv) for `bertsearch eval`")
    return 0
