"""Reading Elasticsearch's score explanations (``_explain``): which query terms weighed how much."""

from __future__ import annotations

import re
from collections.abc import Iterator

# Lucene's BM25 leaf: "weight(body:solar in 3) [PerFieldSimilarity], result of:"
_WEIGHT = re.compile(r"^weight\((\w+):(\S+?) in \d+\)")


def term_weights(explanation: dict) -> Iterator[tuple[str, str, float]]:
    """(field, term, score) of each term weight node of an Elasticsearch score explanation."""
    found = _WEIGHT.match(str(explanation.get("description", "")))
    if found:
        yield found.group(1), found.group(2), float(explanation["value"])
        return
    for detail in explanation.get("details", []):
        yield from term_weights(detail)
