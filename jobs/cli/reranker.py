"""``bertsearch reranker list | add | promote | rollback``: the versions of a reranker registry."""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bertsearch.jobs.cli.types import one_sided_confidence
from bertsearch.ranker.training.clicks import EXAMINED_BY


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "reranker",
        help="reranker versions: list, add, promote (through the gate), roll back",
        description="A registry folder holds immutable reranker versions and a CURRENT pointer that "
        "`bertsearch serve --reranker REGISTRY` serves, switching without a restart.",
    )
    actions = p.add_subparsers(dest="action", required=True)
    for name, help_text in (
        ("list", "the versions, the served one marked, with their gate decisions"),
        ("add", "copy a trained model folder in as a new version (not served until promoted)"),
        ("promote", "gate a candidate against what is served (hybrid if none) and serve it if it passes"),
        ("rollback", "serve what was served before the current version"),
    ):
        q = actions.add_parser(name, help=help_text, description=help_text)
        q.add_argument("--registry", type=Path, required=True, help="registry folder (created by `add`)")
        if name == "add":
            q.add_argument("model_dir", type=Path, help="MODEL_DIR written by `bertsearch train`")
            q.add_argument("--note", default=None, help="a line recorded in the version's manifest")
        if name == "promote":
            _add_gate_flags(q)
        q.set_defaults(run=_run)


def _add_gate_flags(q: argparse.ArgumentParser) -> None:
    q.add_argument("candidate", help="a version name of the registry, or a model folder (added first)")
    q.add_argument("--dataset", type=Path, default=None, help="BEIR folder with the judged split to gate on")
    q.add_argument("--feedback", type=Path, default=None, metavar="LOG",
                   help="instead of --dataset: gate on the clicks of held-out logged sessions (the served "
                   "index's feedback log; pair it with `train --holdout-days N`)")
    q.add_argument("--feedback-days", type=float, default=None,
                   help="with --feedback: the sessions of the last N days (default: all)")
    q.add_argument("--min-clicks", type=int, default=2,
                   help="with --feedback: clicks that make a document relevant (default 2; as `train`)")
    q.add_argument("--click-confidence", type=one_sided_confidence, default=None, metavar="C",
                   help="with --feedback: the Wilson-bound click rule of `train --click-confidence`")
    q.add_argument("--examined-by", choices=EXAMINED_BY, default="last-click",
                   help="with --feedback: what counts as examined, as `train --examined-by`")
    q.add_argument("--split", default="dev", help="judged split (default dev; never the reported test split)")
    q.add_argument("--index-dir", type=Path, required=True,
                   help="index of the dataset's corpus (its own folder, never the served one); with "
                   "--feedback, the served index the clicks were made on")
    q.add_argument("--metric", default="ndcg@10")
    q.add_argument("--margin", type=float, default=0.0,
                   help="how much better than the served ranking the candidate must be (default 0: better)")
    q.add_argument("--max-p", type=float, default=0.05, help="p-value below which a loss is significant")
    q.add_argument("--stat-test", choices=("student", "fisher"), default="student")
    q.add_argument("--tune-folds", type=int, default=5,
                   help="score each fold of the split at the depth and weight chosen on the other folds "
                   "(default 5; 0: at the point the candidate's folder records)")
    q.add_argument("--allow-test-split", action="store_true", help="gate on a split named test anyway")
    q.add_argument("--force", action="store_true",
                   help="promote even if the gate refuses (the refusal and the override are recorded)")


def _run(args: argparse.Namespace) -> int:
    from bertsearch.ranker.registry import RerankerRegistry

    registry = RerankerRegistry(args.registry)
    if args.action == "list":
        current = registry.current_name()
        versions = registry.versions()
        if not versions:
            print(f"{args.registry}: no versions (add one with `bertsearch reranker add`)")
        for v in versions:
            gate = v.gate["verdict"] if v.gate else "not gated"
            mark = "*" if v.name == current else " "
            parent = v.manifest.get("parent")
            print(f"{mark} {v.name}  {v.manifest.get('base_model')}  parent={parent}  {gate}")
        if current is None:
            print("(no version is served: the service answers with hybrid retrieval)")
        return 0
    if args.action == "add":
        version = registry.add(args.model_dir, note=args.note)
        print(f"added {version.name} ({version.path}); gate and serve it with "
              f"`bertsearch reranker promote {version.name} ...`")  # fmt: skip
        return 0
    if args.action == "rollback":
        target = registry.rollback()
        print(f"now serving {target or 'no reranker (hybrid)'}")
        return 0
    return _promote(args, registry)


def _promote(args: argparse.Namespace, registry) -> int:
    from bertsearch.jobs.evaluation.gate import GateConfig, promote
    from bertsearch.ranker.training.clicks import ClickRule

    since = datetime.now(UTC) - timedelta(days=args.feedback_days) if args.feedback_days else None
    click_rule = ClickRule(min_clicks=args.min_clicks, confidence=args.click_confidence,
                           examined_by=args.examined_by)  # fmt: skip
    if click_rule != ClickRule() and args.feedback is None:
        raise ValueError("--min-clicks, --click-confidence and --examined-by judge clicks: give --feedback")
    config = GateConfig(
        dataset=args.dataset, index_dir=args.index_dir, split=args.split, metric=args.metric,
        feedback=args.feedback, feedback_since=since,
        click_rule=click_rule,
        margin=args.margin, max_p=args.max_p, stat_test=args.stat_test, tune_folds=args.tune_folds,
        allow_test_split=args.allow_test_split,
    )  # fmt: skip
    version, report = promote(registry, args.candidate, config, force=args.force)
    shown = ("verdict", "candidate_mean", "incumbent_mean", "delta", "p_value", "queries", "wins_ties_losses",
             "forced")  # fmt: skip
    print(json.dumps({k: report[k] for k in shown}, indent=2))
    if report["accepted"] or args.force:
        print(f"promoted {version.name}{' (forced)' if report['forced'] else ''}: the service switches to it")
        return 0
    print(f"kept {registry.current_name() or 'hybrid'}; {version.name} stays in the registry, not served")
    return 1
