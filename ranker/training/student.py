"""A smaller cross-encoder made from a trained one, for distillation: K of the teacher's layers.

The student keeps the teacher's embeddings, its relevance head and K of its transformer layers,
evenly spaced from the first to the last (for 6 layers and K = 3: layers 0, 2, 5 in the
zero-based numbering, as ``numpy.linspace`` rounds), so it starts close to the teacher and
distillation only has to close the gap. The result is a plain ``save_pretrained`` folder.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def layers_kept(total: int, keep: int) -> list[int]:
    if not 1 <= keep <= total:
        raise ValueError(f"a student keeps between 1 and {total} of the teacher's layers, not {keep}")
    return sorted({int(round(x)) for x in np.linspace(0, total - 1, keep)})


def make_student(teacher: str | Path, keep: int, out: Path) -> list[int]:
    """Write the K-layer student of ``teacher`` to ``out``; returns the teacher layers it kept."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(teacher, num_labels=1)
    encoder = model.base_model.encoder
    kept = layers_kept(len(encoder.layer), keep)
    encoder.layer = torch.nn.ModuleList([encoder.layer[i] for i in kept])
    model.config.num_hidden_layers = len(kept)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(teacher).save_pretrained(out)
    return kept
