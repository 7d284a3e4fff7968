"""Write an evaluation's report: report.md (tables), report.json (every number) and PNG plots.

Plots are drawn with matplotlib's Agg backend (no display needed):
``metrics.png`` (each metric per configuration with its 95% bootstrap interval),
``deltas.png`` (the distribution of per-query differences against the baseline) and
``recall.png`` (Recall@k against k).
"""

from __future__ import annotations

import json
from pathlib import Path

from bertsearch.indexer.dense import DENSE_STAGE
from bertsearch.indexer.lexical import LEXICAL_STAGE
from bertsearch.jobs.evaluation.config import RUNS_DIR
from bertsearch.jobs.evaluation.results import EvaluationResult
from bertsearch.ranker.cross_encoder import RERANK_STAGE
from bertsearch.ranker.fusion import FUSION_STAGE

REPORT_MD = "report.md"
REPORT_JSON = "report.json"
METRICS_PNG = "metrics.png"
DELTAS_PNG = "deltas.png"
RECALL_PNG = "recall.png"
LATENCY_STAGES = ("encode", DENSE_STAGE, LEXICAL_STAGE, FUSION_STAGE, "fetch", RERANK_STAGE, "total")


def write_report(result: EvaluationResult, out: str | Path) -> list[Path]:
    """Write every report file of ``result`` into ``out``; returns their paths."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / REPORT_JSON, out / REPORT_MD]
    paths[0].write_text(json.dumps(result.to_dict(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    paths += plot_all(result, out)
    paths[1].write_text(markdown(result), encoding="utf-8")
    return paths


# -- markdown -----------------------------------------------------------------------------------


def markdown(result: EvaluationResult) -> str:
    ident = result.identity
    dataset = ident.get("dataset", {})
    lines = [
        f"# Evaluation: {dataset.get('name', '?')} / {dataset.get('split', '?')}",
        "",
        f"{dataset.get('queries', '?')} judged queries, {dataset.get('judgments', '?')} judgments; "
        f"depth {ident.get('depth', '?')}; baseline **{result.baseline}**; "
        f"paired {_test_name(result.stat_test)} against the baseline, "
        f"marked † where p ≤ {result.max_p}.",
        "",
    ]
    if ident.get("command"):
        lines += ["```", ident["command"], "```", ""]
    lines += _metrics_table(result)
    lines += _wins_table(result)
    lines += _query_tables(result)
    lines += _slices_table(result)
    lines += _recall_table(result)
    lines += _latency_table(result)
    lines += [
        "## Plots",
        "",
        f"![metrics with 95% confidence intervals]({METRICS_PNG})",
        "",
        f"![per-query {result.per_query_metric} differences]({DELTAS_PNG})",
        "",
        f"![Recall@k]({RECALL_PNG})",
        "",
    ]
    lines += _identity_section(result)
    return "\n".join(lines) + "\n"


def _metrics_table(result: EvaluationResult) -> list[str]:
    comparisons = {c.name: c for c in result.comparisons}
    head = "| config | " + " | ".join(_label(m) for m in result.metrics) + " |"
    lines = [
        "## Metrics",
        "",
        f"Mean over queries; 95% bootstrap interval in brackets; p: paired test against {result.baseline}.",
        "",
        head,
        "|---" * (len(result.metrics) + 1) + "|",
    ]
    for scores in result.configs:
        cells = []
        for metric in result.metrics:
            low, high = scores.ci95[metric]
            cell = f"{scores.means[metric]:.4f} [{low:.3f}, {high:.3f}]"
            comparison = comparisons.get(scores.name)
            if comparison is not None:
                p_value = comparison.p_values[metric]
                cell += f" p={_p(p_value)}" + ("†" if comparison.significant[metric] else "")
            cells.append(cell)
        lines.append(f"| {scores.name} | " + " | ".join(cells) + " |")
    notes = [note for scores in result.configs for note in scores.notes]
    lines.append("")
    for note in dict.fromkeys(notes):
        lines += [f"> note: {note}", ""]
    return lines


def _wins_table(result: EvaluationResult) -> list[str]:
    if not result.comparisons:
        return []
    lines = [
        f"## Per query against {result.baseline}",
        "",
        "Queries where the configuration scores higher / the same / lower than the baseline.",
        "",
        "| config | " + " | ".join(f"{_label(m)} W/T/L" for m in result.metrics) + " |",
        "|---" * (len(result.metrics) + 1) + "|",
    ]
    for comparison in result.comparisons:
        cells = []
        for metric in result.metrics:
            wtl = comparison.wins_ties_losses[metric]
            cells.append(f"{wtl['wins']} / {wtl['ties']} / {wtl['losses']}")
        lines.append(f"| {comparison.name} | " + " | ".join(cells) + " |")
    return lines + [""]


def _query_tables(result: EvaluationResult) -> list[str]:
    lines = []
    metric = _label(result.per_query_metric)
    for comparison in result.comparisons:
        for title, rows in (("helps", comparison.helped), ("hurts", comparison.hurt)):
            lines += [f"### Queries {comparison.name} {title} most ({metric})", ""]
            if not rows:
                lines += ["none", ""]
                continue
            lines += [
                f"| query | text | {result.baseline} | {comparison.name} | Δ |",
                "|---|---|---|---|---|",
            ]
            for row in rows:
                lines.append(
                    f"| {row.id} | {_cell(row.text, 90)} | {row.baseline:.3f} | {row.value:.3f} "
                    f"| {row.delta:+.3f} |"
                )
            lines.append("")
    return lines


def _slices_table(result: EvaluationResult) -> list[str]:
    metric = result.per_query_metric
    lines = [
        f"## {_label(metric)} by query length",
        "",
        f"Buckets at the tertiles of the split's query lengths (words); Δ against {result.baseline}.",
        "",
        "| bucket | words | queries | " + " | ".join(s.name for s in result.configs) + " |",
        "|---" * (len(result.configs) + 3) + "|",
    ]
    for piece in result.slices:
        base = piece.means[result.baseline][metric]
        cells = []
        for scores in result.configs:
            value = piece.means[scores.name][metric]
            if piece.queries == 0:
                cells.append("–")
            elif scores.name == result.baseline:
                cells.append(f"{value:.4f}")
            else:
                cells.append(f"{value:.4f} ({value - base:+.4f})")
        words = f"{piece.min_words}–{piece.max_words}" if piece.queries else "–"
        lines.append(f"| {piece.bucket} | {words} | {piece.queries} | " + " | ".join(cells) + " |")
    return lines + [""]


def _recall_table(result: EvaluationResult) -> list[str]:
    cutoffs = list(result.configs[0].recall_curve)
    lines = [
        "## Recall@k",
        "",
        "| config | " + " | ".join(str(k) for k in cutoffs) + " |",
        "|---" * (len(cutoffs) + 1) + "|",
    ]
    for scores in result.configs:
        lines.append(
            f"| {scores.name} | " + " | ".join(f"{scores.recall_curve[k]:.3f}" for k in cutoffs) + " |"
        )
    return lines + [""]


def _latency_table(result: EvaluationResult) -> list[str]:
    stages = [s for s in LATENCY_STAGES if any(s in c.latency_ms for c in result.configs)]
    lines = [
        "## Latency",
        "",
        "Milliseconds per query, mean / p95 (queries run in batches through `search_many`: batched "
        "encode and dense times are shared evenly among a batch's queries). "
        "Wall: seconds for the whole split.",
        "",
        "| config | wall s | queries/s | " + " | ".join(stages) + " |",
        "|---" * (len(stages) + 3) + "|",
    ]
    queries = result.identity.get("dataset", {}).get("queries") or len(result.queries)
    for scores in result.configs:
        cells = []
        for stage in stages:
            timing = scores.latency_ms.get(stage)
            cells.append(f"{timing['mean']:.2f} / {timing['p95']:.2f}" if timing else "–")
        rate = queries / scores.wall_seconds if scores.wall_seconds > 0 else float("nan")
        lines.append(
            f"| {scores.name} | {scores.wall_seconds:.1f} | {rate:.1f} | " + " | ".join(cells) + " |"
        )
    return lines + [""]


def _identity_section(result: EvaluationResult) -> list[str]:
    ident = result.identity
    if not ident:
        return []
    index = ident.get("index", {})
    manifest = index.get("manifest", {})
    encoder = ident.get("encoder", {})
    machine = ident.get("machine", {})
    reranker = ident.get("reranker")
    lines = [
        "## What was evaluated",
        "",
        f"- dataset: `{ident['dataset']['path']}`, split `{ident['dataset']['split']}` "
        f"(qrels sha256 `{ident['dataset']['qrels_sha256'][:16]}`)",
        f"- index: version `{manifest.get('version')}` of `{manifest.get('source')}`, "
        f"{manifest.get('documents')} documents, dense `{manifest.get('dense', {}).get('kind')}`, "
        f"lexical `{manifest.get('lexical', {}).get('backend')}`"
        + (" (built by this run)" if index.get("built_by_this_run") else ""),
        f"- encoder: `{encoder.get('model')}` (weights `{encoder.get('fingerprint')}`), max length "
        f"{encoder.get('max_length')}, precision {encoder.get('precision')} (bf16: {encoder.get('bf16')})",
        f"- reranker: `{reranker['path']}` (weights `{reranker['fingerprint']}`)"
        if reranker
        else "- reranker: none",
        f"- machine: {machine.get('cpu')}, {machine.get('cpus')} CPUs, GPU: {machine.get('cuda') or 'none'}",
        "- software: " + ", ".join(f"{k} {v}" for k, v in ident.get("software", {}).items()),
        f"- runs: `{RUNS_DIR}/<config>.trec`; every number: `{REPORT_JSON}`",
    ]
    skipped = ident["dataset"].get("skipped_queries")
    if skipped:
        lines.append(f"- left out (judged, but nothing relevant): {', '.join(skipped)}")
    return lines + [""]


def _label(metric: str) -> str:
    name, _, k = metric.partition("@")
    pretty = {"ndcg": "nDCG", "mrr": "MRR", "recall": "Recall", "map": "MAP"}.get(name, name)
    return f"{pretty}@{k}" if k else pretty


def _test_name(test: str) -> str:
    return {"student": "Student's t-test", "fisher": "Fisher randomisation test"}.get(test, test)


def _p(value: float) -> str:
    return f"{value:.3f}" if value >= 0.001 else f"{value:.1e}"


def _cell(text: str, width: int) -> str:
    text = " ".join(text.split()).replace("|", "\\|")
    return text if len(text) <= width else text[: width - 1] + "…"


# -- plots --------------------------------------------------------------------------------------


def plot_all(result: EvaluationResult, out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")  # files only: never needs a display
    import matplotlib.pyplot as plt

    paths = []
    for name, draw in ((METRICS_PNG, _plot_metrics), (DELTAS_PNG, _plot_deltas), (RECALL_PNG, _plot_recall)):
        figure = draw(result, plt)
        path = out / name
        figure.savefig(path, dpi=120, bbox_inches="tight")
        plt.close(figure)
        paths.append(path)
    return paths


def _plot_metrics(result: EvaluationResult, plt):
    import numpy as np

    metrics = list(result.metrics)
    count = len(result.configs)
    width = 0.8 / count
    figure, axes = plt.subplots(figsize=(1.8 + 1.6 * len(metrics) + 0.3 * count, 4))
    x = np.arange(len(metrics))
    for i, scores in enumerate(result.configs):
        means = np.array([scores.means[m] for m in metrics])
        low = np.array([scores.ci95[m][0] for m in metrics])
        high = np.array([scores.ci95[m][1] for m in metrics])
        errors = np.vstack([np.clip(means - low, 0, None), np.clip(high - means, 0, None)])
        axes.bar(x + (i - (count - 1) / 2) * width, means, width, yerr=errors, capsize=3, label=scores.name)
    axes.set_xticks(x, [_label(m) for m in metrics])
    axes.set_ylim(0, 1)
    axes.set_ylabel("mean over queries")
    axes.set_title(f"{_dataset_label(result)}: metrics with 95% bootstrap intervals")
    axes.legend(loc="upper left", fontsize="small")
    axes.grid(axis="y", alpha=0.3)
    return figure


def _plot_deltas(result: EvaluationResult, plt):
    import numpy as np

    metric = result.per_query_metric
    panels = max(1, len(result.comparisons))
    figure, axes = plt.subplots(1, panels, figsize=(4.5 * panels, 3.6), squeeze=False)
    bins = np.linspace(-1.025, 1.025, 42)  # a bin centred on 0 holds exactly the ties
    base = result.config(result.baseline)
    if not result.comparisons:
        axes[0][0].text(0.5, 0.5, "one configuration: nothing to compare", ha="center", va="center")
        axes[0][0].set_axis_off()
    for axis, comparison in zip(axes[0], result.comparisons, strict=False):
        other = result.config(comparison.name)
        deltas = np.array(
            [other.per_query[metric][q] - base.per_query[metric][q] for q in base.per_query[metric]]
        )
        axis.hist(deltas, bins=bins, color="tab:blue", alpha=0.8)
        axis.axvline(0, color="black", linewidth=0.8)
        wtl = comparison.wins_ties_losses[metric]
        axis.set_title(
            f"{comparison.name} − {result.baseline}\nW/T/L {wtl['wins']}/{wtl['ties']}/{wtl['losses']}",
            fontsize="medium",
        )
        axis.set_xlabel(f"Δ {_label(metric)} per query")
        axis.set_ylabel("queries")
    figure.suptitle(f"{_dataset_label(result)}: per-query differences", fontsize="medium")
    figure.tight_layout()
    return figure


def _plot_recall(result: EvaluationResult, plt):
    figure, axes = plt.subplots(figsize=(5.5, 4))
    for scores in result.configs:
        ks = list(scores.recall_curve)
        axes.plot(ks, [scores.recall_curve[k] for k in ks], marker="o", markersize=3, label=scores.name)
    axes.set_xscale("log")
    cutoffs = list(result.configs[0].recall_curve)
    axes.set_xticks(cutoffs, [str(k) for k in cutoffs])
    axes.minorticks_off()
    axes.set_xlabel("k")
    axes.set_ylabel("Recall@k")
    axes.set_ylim(0, 1)
    axes.set_title(f"{_dataset_label(result)}: Recall@k")
    axes.grid(alpha=0.3)
    axes.legend(fontsize="small")
    return figure


def _dataset_label(result: EvaluationResult) -> str:
    dataset = result.identity.get("dataset", {})
    return f"{dataset.get('name', '?')} {dataset.get('split', '')}".strip()
