"""The sample corpus: the documentation of the Python standard library that is running this code.

Every machine with Python has it, so the quick start needs no download and ships no copied text.
One document per module, public class, function and method with a docstring.
"""

from __future__ import annotations

import importlib
import inspect
import json
import warnings
from collections.abc import Iterator
from pathlib import Path

from bertsearch.jobs.datasets.sample_queries import SAMPLE_QUERIES

MODULES = tuple(
    """
    abc argparse array ast base64 bisect calendar collections colorsys concurrent.futures
    configparser contextlib copy csv dataclasses datetime decimal difflib email.message enum filecmp
    fnmatch fractions functools getopt glob gzip hashlib heapq hmac html html.parser http.client
    http.cookies http.server imaplib inspect io ipaddress itertools json logging logging.handlers
    lzma mailbox math mimetypes multiprocessing.pool operator os os.path pathlib pickle platform
    poplib pprint queue random re sched secrets selectors shelve shlex shutil signal smtplib socket
    socketserver sqlite3 ssl statistics string struct subprocess tarfile tempfile textwrap threading
    time timeit tokenize traceback types typing unittest unittest.mock urllib.parse urllib.request
    uuid warnings weakref xml.dom.minidom xml.etree.ElementTree zipfile zlib
    """.split()
)
MIN_DOC_CHARS = 40


def _doc(obj: object) -> str:
    try:
        return inspect.getdoc(obj) or ""
    except Exception:  # some C objects raise on attribute access; they simply have no document
        return ""


def _members(module_name: str) -> Iterator[dict]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        module = importlib.import_module(module_name)
    text = _doc(module)
    if len(text) >= MIN_DOC_CHARS:
        yield {
            "_id": module_name,
            "title": f"{module_name} module",
            "text": text,
            "metadata": {"kind": "module"},
        }
    for name, obj in sorted(vars(module).items()):
        if name.startswith("_") or getattr(obj, "__module__", None) != module.__name__:
            continue
        if not (inspect.isclass(obj) or inspect.isfunction(obj) or inspect.isbuiltin(obj)):
            continue
        qualified = f"{module_name}.{name}"
        text = _doc(obj)
        if len(text) >= MIN_DOC_CHARS:
            kind = "class" if inspect.isclass(obj) else "function"
            yield {"_id": qualified, "title": qualified, "text": text, "metadata": {"kind": kind}}
        if inspect.isclass(obj):
            for attr, member in sorted(vars(obj).items()):
                text = _doc(member)
                if attr.startswith("_") or not callable(member) or len(text) < MIN_DOC_CHARS:
                    continue
                yield {
                    "_id": f"{qualified}.{attr}",
                    "title": f"{qualified}.{attr}",
                    "text": text,
                    "metadata": {"kind": "method"},
                }


def write_sample_corpus(path: str | Path) -> int:
    """Write the sample corpus as JSONL to ``path``; return the number of documents."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    seen: set[str] = set()
    count = 0
    with open(path, "w", encoding="utf-8") as out:
        for module_name in MODULES:
            try:
                records = list(_members(module_name))
            except ImportError:
                continue  # a Python built without this module (no ssl, no sqlite3): fewer documents
            for record in records:
                if record["_id"] in seen:
                    continue
                seen.add(record["_id"])
                out.write(json.dumps(record, ensure_ascii=False) + "\n")
                count += 1
    return count


def write_sample_queries(corpus_path: str | Path) -> int:
    """Write the judged sample queries beside the corpus at ``corpus_path`` (a BEIR folder then).

    ``queries.jsonl`` and ``qrels/test.tsv``, holding only the queries whose answer is in that
    corpus. Returns how many were written.
    """
    corpus_path = Path(corpus_path)
    with open(corpus_path, encoding="utf-8") as corpus:
        ids = {json.loads(line)["_id"] for line in corpus}
    judged = [
        (f"s{n:02d}", doc_id, text) for n, (doc_id, text) in enumerate(SAMPLE_QUERIES, 1) if doc_id in ids
    ]
    folder = corpus_path.parent
    with open(folder / "queries.jsonl", "w", encoding="utf-8") as out:
        for query_id, _, text in judged:
            out.write(json.dumps({"_id": query_id, "text": text}) + "\n")
    (folder / "qrels").mkdir(exist_ok=True)
    rows = [f"{query_id}\t{doc_id}\t1" for query_id, doc_id, _ in judged]
    header = "query-id\tcorpus-id\tscore\n"
    (folder / "qrels" / "test.tsv").write_text(header + "".join(row + "\n" for row in rows), encoding="utf-8")
    return len(judged)
