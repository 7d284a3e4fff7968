"""Read a BEIR-layout dataset: its corpus path, queries and the qrels of a split.

```
DATASET/corpus.jsonl[.gz]    documents (read by bertsearch.indexer.corpus)
DATASET/queries.jsonl        {"_id", "text"}
DATASET/qrels/<split>.tsv    "query-id<TAB>corpus-id<TAB>score", with a header line
```

Grades are integers; a grade above 0 is relevant, 0 is judged non-relevant. Every error names
what the dataset does hold, so the fix is in the message.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

from bertsearch.indexer.corpus import CorpusError, corpus_files, open_text

QUERIES_FILE = "queries.jsonl"
QRELS_DIR = "qrels"
QRELS_HEADER = ("query-id", "corpus-id", "score")

Qrels = dict[str, dict[str, int]]


class DatasetError(ValueError):
    """The dataset is missing a file or a split, or a file is malformed."""


@dataclass(frozen=True)
class JudgedQueries:
    """The queries of one split that have at least one relevant document, with their qrels.

    ``skipped`` lists judged query ids left out because none of their documents is relevant
    (every grade 0): no ranking can score on them, and trec_eval leaves them out too.
    """

    split: str
    queries: dict[str, str]
    qrels: Qrels
    skipped: tuple[str, ...] = ()

    def __len__(self) -> int:
        return len(self.queries)


class BeirDataset:
    """A BEIR folder. Cheap to construct: files are read by the methods that need them."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise DatasetError(f"dataset folder {str(self.root)!r} does not exist")

    @property
    def name(self) -> str:
        return self.root.resolve().name

    @property
    def corpus_path(self) -> Path:
        """The corpus file (``corpus.jsonl`` or ``corpus.jsonl.gz``)."""
        try:
            files = corpus_files(self.root)
        except CorpusError as err:
            raise DatasetError(str(err)) from err
        if len(files) != 1 or not files[0].name.startswith("corpus."):
            raise DatasetError(
                f"{str(self.root)!r} has no corpus.jsonl or corpus.jsonl.gz; it holds {_listing(self.root)}"
            )
        return files[0]

    def splits(self) -> list[str]:
        """The split names that have a ``qrels/<split>.tsv`` file, sorted."""
        folder = self.root / QRELS_DIR
        if not folder.is_dir():
            return []
        return sorted(p.stem for p in folder.glob("*.tsv") if p.is_file())

    def qrels_path(self, split: str) -> Path:
        path = self.root / QRELS_DIR / f"{split}.tsv"
        if not path.is_file():
            available = ", ".join(self.splits()) or "none (no qrels/*.tsv files)"
            raise DatasetError(
                f"dataset {str(self.root)!r} has no split {split!r}; available splits: {available}"
                + (". Carve a dev split with `bertsearch split`" if split == "dev" else "")
            )
        return path

    def queries(self) -> dict[str, str]:
        """Every query of ``queries.jsonl``, judged or not, by id."""
        path = self.root / QUERIES_FILE
        if not path.is_file():
            raise DatasetError(f"{str(self.root)!r} has no {QUERIES_FILE}; it holds {_listing(self.root)}")
        queries: dict[str, str] = {}
        with open_text(path) as handle:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                    queries[str(record["_id"])] = str(record["text"])
                except (json.JSONDecodeError, KeyError, TypeError) as err:
                    raise DatasetError(
                        f"{path}:{number}: expected a JSON object with '_id' and 'text' ({err})"
                    ) from None
        return queries

    def qrels(self, split: str) -> Qrels:
        """The judgments of ``split``: query id -> document id -> integer grade."""
        return read_qrels(self.qrels_path(split))

    def load(self, split: str) -> JudgedQueries:
        """The queries of ``split`` with a relevant document, their texts and qrels."""
        qrels = self.qrels(split)
        queries = self.queries()
        missing = sorted(q for q in qrels if q not in queries)
        if missing:
            raise DatasetError(
                f"qrels/{split}.tsv judges {len(missing)} queries that {QUERIES_FILE} lacks "
                f"(first: {missing[:5]})"
            )
        judged = {q: docs for q, docs in qrels.items() if any(grade > 0 for grade in docs.values())}
        skipped = tuple(sorted(set(qrels) - set(judged)))
        if not judged:
            raise DatasetError(f"qrels/{split}.tsv has no relevant judgment (no grade above 0)")
        return JudgedQueries(
            split=split,
            queries={q: queries[q] for q in judged},
            qrels=judged,
            skipped=skipped,
        )


def read_qrels(path: Path) -> Qrels:
    """Read a BEIR qrels TSV (header optional). Raises DatasetError naming the bad line."""
    qrels: Qrels = {}
    with open_text(path) as handle:
        for number, row in enumerate(csv.reader(handle, delimiter="\t"), start=1):
            if not row or not "".join(row).strip():
                continue
            if number == 1 and tuple(cell.strip() for cell in row) == QRELS_HEADER:
                continue
            if len(row) != 3:
                raise DatasetError(f"{path}:{number}: expected 3 tab-separated columns, got {len(row)}")
            query_id, doc_id, grade = (cell.strip() for cell in row)
            try:
                qrels.setdefault(query_id, {})[doc_id] = int(grade)
            except ValueError:
                raise DatasetError(f"{path}:{number}: grade {grade!r} is not an integer") from None
    return qrels


def write_qrels(path: Path, qrels: Qrels) -> None:
    """Write qrels as a BEIR TSV with its header, queries and documents in the given order."""
    with open(path, "w", encoding="utf-8", newline="") as out:
        out.write("\t".join(QRELS_HEADER) + "\n")
        for query_id, docs in qrels.items():
            for doc_id, grade in docs.items():
                out.write(f"{query_id}\t{doc_id}\t{grade}\n")


def _listing(folder: Path) -> str:
    names = sorted(p.name + ("/" if p.is_dir() else "") for p in folder.iterdir())
    return ", ".join(names) if names else "nothing"
