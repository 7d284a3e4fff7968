"""Toy training data shared by the training tests."""

from __future__ import annotations

from bertsearch.indexer.documents import Document
from bertsearch.ranker.training.examples import TrainingGroup

TOY_QUERIES = {
    "cats": ["purring pets that hunt mice", "small carnivorous mammals"],
    "dogs": ["loyal companions descended from wolves", "herding and guarding animals"],
    "python": ["dynamic typing programming language", "garbage collected scripting"],
    "rust": ["memory safety systems language", "programming without garbage collection"],
    "tea": ["unoxidised camellia leaves", "brewed leaves with caffeine"],
    "coffee": ["roasted beans espresso", "coffee through fine grounds"],
    "volcano": ["magma rises through the crust", "eruption of a mountain"],
    "glacier": ["rivers of ice carving valleys", "slow ice flow downhill"],
}


FILLER = [
    "Minutes of the committee meeting held on Tuesday.",
    "Page intentionally left blank.",
    "Copyright notice and terms of use apply.",
    "Table of contents continues overleaf.",
]


def toy_groups(corpus_records: list[dict], negatives: int = 3) -> list[TrainingGroup]:
    """16 groups: a query, its own document, then ``negatives`` filler passages.

    Filler negatives keep the task learnable by a randomly initialised 2-layer BERT in a dozen
    steps; telling real documents apart takes it far longer and would only slow the test.
    """
    docs = {r["_id"]: Document(r["_id"], r["title"], r["text"]) for r in corpus_records}
    groups = []
    for doc_id, queries in sorted(TOY_QUERIES.items()):
        for n, query in enumerate(queries):
            chosen = [(n + k) % len(FILLER) for k in range(negatives)]
            groups.append(
                TrainingGroup(
                    query_id=f"{doc_id}-{n}",
                    query=query,
                    doc_ids=(doc_id, *(f"filler-{i}" for i in chosen)),
                    passages=(docs[doc_id].body, *(FILLER[i] for i in chosen)),
                )
            )
    return groups


PSEUDO_CORPUS = [
    Document("a", "Glacier retreat in the Alps",
             "Glacier retreat in the Alps has sped up. Meltwater feeds rivers in summer. "
             "Measurements since 1850 show the ice thinning by a metre a year on average."),
    Document("b", "Coffee roasting",
             "Roasting turns green beans brown. Longer roasts taste more bitter and less acidic. "
             "The Maillard reaction creates hundreds of aroma compounds during the roast."),
    Document("c", "", "a lowercase record without punctuation about the dispersion of radio waves in the "
             "ionosphere measured at night by a network of stations across the northern hemisphere"),
    Document("d", "Coffee roasting", "A second article with the same title but other words entirely about "
             "drum roasters and fluid bed roasters used in small shops."),
    Document("e", "Short", "Too short."),
]
