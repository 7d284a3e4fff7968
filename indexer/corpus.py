"""Corpus readers: BEIR folders, JSONL(.gz) files and folders of JSONL files.

A reader never drops a line silently: every line it cannot turn into a :class:`Document`
becomes a :class:`Reject` carrying the file, the line number and the reason, and reading goes on.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO

from bertsearch.indexer.documents import Document

JSONL_SUFFIXES = (".jsonl", ".jsonl.gz")


@dataclass(frozen=True)
class Reject:
    """A source line that could not be indexed, and why."""

    source: str
    line: int
    reason: str
    doc_id: str | None = None

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False)

    def __str__(self) -> str:
        where = f"{self.source}:{self.line}"
        return f"{where}: {self.reason}" + (f" (id {self.doc_id!r})" if self.doc_id else "")


@dataclass(frozen=True)
class Deletion:
    """A record asking for a document id to be removed (``{"_id": ..., "deleted": true}``)."""

    id: str


class CorpusError(ValueError):
    """The source as a whole cannot be read (missing, empty folder, unknown format)."""


def corpus_files(source: str | Path) -> list[Path]:
    """The JSONL files a source stands for.

    A BEIR folder (holding ``corpus.jsonl`` or ``corpus.jsonl.gz``) is its corpus file; any
    other folder is every ``*.jsonl``/``*.jsonl.gz`` file in it, in name order; a file is itself.
    """
    path = Path(source)
    if not path.exists():
        raise CorpusError(f"corpus source {str(path)!r} does not exist")
    if path.is_file():
        if not path.name.endswith(JSONL_SUFFIXES):
            raise CorpusError(f"{str(path)!r} is not a .jsonl or .jsonl.gz file")
        return [path]
    for name in ("corpus.jsonl", "corpus.jsonl.gz"):
        if (path / name).is_file():
            return [path / name]
    files = sorted(p for p in path.iterdir() if p.is_file() and p.name.endswith(JSONL_SUFFIXES))
    if not files:
        raise CorpusError(f"{str(path)!r} holds no corpus.jsonl(.gz) and no *.jsonl / *.jsonl.gz files")
    return files


def files_digest(files: list[Path]) -> str:
    """sha256 over the bytes of ``files`` in order: what a corpus holds, whatever its mtime says.

    A copy, a restore from backup or a fresh checkout gives a file a new mtime but the same
    bytes; an index of it is still current.
    """
    digest = hashlib.sha256()
    for path in files:
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def open_text(path: Path) -> IO[str]:
    """Open a UTF-8 text file, gunzipping ``*.gz`` on the fly."""
    if path.name.endswith(".gz"):
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8")
    return open(path, encoding="utf-8")


def parse_record(line: str) -> Document | Deletion:
    """Turn one JSON line into a Document (or a Deletion); raise ValueError saying what is wrong."""
    try:
        record = json.loads(line)
    except json.JSONDecodeError as err:
        raise ValueError(f"not valid JSON ({err.msg} at column {err.colno})") from None
    if not isinstance(record, dict):
        raise ValueError(f"expected a JSON object, got {type(record).__name__}")
    raw_id = record.get("_id", record.get("id"))
    if isinstance(raw_id, bool) or not isinstance(raw_id, (str, int)) or str(raw_id).strip() == "":
        raise ValueError("no document id: give a non-empty string '_id' or 'id'")
    doc_id = str(raw_id).strip()
    if record.get("deleted") is True:
        return Deletion(doc_id)
    title, text = record.get("title", ""), record.get("text", "")
    if title is None:
        title = ""
    if text is None:
        text = ""
    if not isinstance(title, str) or not isinstance(text, str):
        raise ValueError("'title' and 'text' must be strings")
    if not (title.strip() or text.strip()):
        raise ValueError("empty document: 'title' and 'text' are both empty")
    metadata = record.get("metadata") or {}
    if not isinstance(metadata, dict):
        raise ValueError("'metadata' must be a JSON object")
    return Document(id=doc_id, title=title.strip(), text=text.strip(), metadata=metadata)


def _decompressed(path: Path, raw: IO[bytes]) -> IO[bytes]:
    return gzip.open(raw, "rb") if path.name.endswith(".gz") else raw


class CorpusReader:
    """Iterate over the documents of a source, collecting rejects on the way.

    ``allow_deletes`` admits ``{"_id": ..., "deleted": true}`` records (incremental updates);
    otherwise they are rejected. A repeated id is rejected at its second occurrence, so the
    first version of a document wins. ``bytes_read`` lets a caller drive a progress bar.
    """

    def __init__(self, source: str | Path, *, allow_deletes: bool = False) -> None:
        self.files = corpus_files(source)
        self.allow_deletes = allow_deletes
        self.rejects: list[Reject] = []
        self.total_bytes = sum(f.stat().st_size for f in self.files)
        self.bytes_read = 0
        self.origin: tuple[str, int] = ("", 0)  # file and line of the item last yielded

    def __iter__(self) -> Iterator[Document | Deletion]:
        seen: set[str] = set()
        for path in self.files:
            with open(path, "rb") as raw, _decompressed(path, raw) as stream:
                before = 0
                for number, raw_line in enumerate(stream, start=1):
                    self.bytes_read += raw.tell() - before
                    before = raw.tell()
                    item = self._parse(path, number, raw_line)
                    if item is None:
                        continue
                    if item.id in seen:
                        self._reject(path, number, "duplicate id: an earlier line has it", item.id)
                        continue
                    seen.add(item.id)
                    self.origin = (str(path), number)
                    yield item

    def _parse(self, path: Path, number: int, raw_line: bytes) -> Document | Deletion | None:
        try:
            line = raw_line.decode("utf-8")
        except UnicodeDecodeError as err:
            self._reject(path, number, f"not UTF-8 ({err.reason} at byte {err.start})")
            return None
        if not line.strip():
            return None  # blank lines (a trailing newline) carry nothing to lose
        try:
            item = parse_record(line)
        except ValueError as err:
            self._reject(path, number, str(err))
            return None
        if isinstance(item, Deletion) and not self.allow_deletes:
            self._reject(path, number, "delete record outside an incremental run", item.id)
            return None
        return item

    def _reject(self, path: Path, number: int, reason: str, doc_id: str | None = None) -> None:
        self.rejects.append(Reject(str(path), number, reason, doc_id))
