"""A tiny judged BEIR dataset over the shared toy corpus."""

from __future__ import annotations

from pathlib import Path

from support.files import write_jsonl

QUERIES = {
    "q1": "purring cats that hunt mice",
    "q2": "a programming language with garbage collection and memory safety guarantees",
    "q3": "brewed caffeine drink",
    "q4": "magma erupts through the crust of a volcano when pressure builds up underground",
    "q5": "ice rivers",
    "q6": "loyal dogs",
}
QRELS = {
    "q1": {"cats": 1},
    "q2": {"rust": 2, "python": 1, "coffee": 0},
    "q3": {"coffee": 1, "tea": 1},
    "q4": {"volcano": 1},
    "q5": {"glacier": 1},
    "q6": {"dogs": 1},
}


def write_dataset(folder: Path, corpus: list[dict], *, splits=("test",)) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    write_jsonl(folder / "corpus.jsonl", corpus)
    write_jsonl(folder / "queries.jsonl", [{"_id": q, "text": t} for q, t in QUERIES.items()])
    (folder / "qrels").mkdir(exist_ok=True)
    for split in splits:
        lines = ["query-id\tcorpus-id\tscore"]
        lines += [f"{q}\t{d}\t{g}" for q, docs in QRELS.items() for d, g in docs.items()]
        (folder / "qrels" / f"{split}.tsv").write_text("\n".join(lines) + "\n")
    return folder
