"""Why the cross-encoder scored a (query, document) pair as it did: word attributions.

Integrated gradients (Sundararajan et al., 2017) over the input embeddings, computed by Captum's
``LayerIntegratedGradients``: the path from a reference input to the real one is cut into
``steps`` points, and each token's attribution is the path integral of the score's gradient
times the embedding difference, summed over the embedding dimensions. The reference keeps
[CLS], [SEP] and every position and segment as they are and replaces each word piece by [PAD],
so the attributions of all tokens add up (up to ``convergence_delta``) to the score of the pair
minus the score of a pair with no words in it. Word pieces are summed into the words of the
original text (by character offsets), so a person reads words, not "##ing".

Positive attributions pushed the score up, negative ones down. ``bench/explain_faithfulness.py``
measures whether deleting the most-attributed words lowers the score more than deleting random
ones (docs/explain.md).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from bertsearch.indexer.models import autocast
from bertsearch.ranker.cross_encoder import CrossEncoder

DEFAULT_STEPS = 16


@dataclass(frozen=True)
class WordAttribution:
    """One word of the query or the document: ``text[start:end]`` and its attribution."""

    word: str
    start: int
    end: int
    score: float


@dataclass(frozen=True)
class PairAttribution:
    score: float  # the cross-encoder's logit for the pair, from the attribution's own forward pass
    reference_score: float  # the logit of the reference (no words)
    query: tuple[WordAttribution, ...]
    document: tuple[WordAttribution, ...]
    steps: int
    convergence_delta: float  # sum of attributions minus (score - reference_score)
    truncated: bool  # the pair was longer than the model's max_length: the document was cut
    seconds: float

    def to_dict(self) -> dict:
        return {
            "method": "integrated gradients", "score": self.score, "reference_score": self.reference_score,
            "query": _plain(self.query), "document": _plain(self.document), "steps": self.steps,
            "convergence_delta": self.convergence_delta, "truncated": self.truncated,
            "ms": round(self.seconds * 1000, 1),
        }  # fmt: skip


def _plain(words: tuple[WordAttribution, ...]) -> list[dict]:
    return [{"word": w.word, "start": w.start, "end": w.end, "score": round(w.score, 5)} for w in words]


def attribute(encoder: CrossEncoder, query: str, text: str, *, steps: int = DEFAULT_STEPS) -> PairAttribution:
    """Word attributions of the pair (``query``, ``text``) for ``encoder``'s score."""
    from captum.attr import LayerIntegratedGradients

    if encoder.model is None:
        raise RuntimeError("CrossEncoder.load() must be called before explaining")
    if not 2 <= steps <= 256:
        raise ValueError(f"steps must be between 2 and 256, got {steps}")
    started = time.perf_counter()
    tokenizer, model = encoder.tokenizer, encoder.model
    encoded = tokenizer(query, text, truncation="longest_first", max_length=encoder.max_length,
                        return_offsets_mapping=True, return_tensors="pt")  # fmt: skip
    full_length = len(tokenizer(query, text, verbose=False)["input_ids"])
    offsets = encoded.pop("offset_mapping")[0].tolist()
    sequence_ids = encoded.sequence_ids(0)
    word_ids = encoded.word_ids(0)
    encoded = encoded.to(encoder.device)
    ids = encoded["input_ids"]
    reference = ids.clone()
    is_word = torch.tensor([s is not None for s in sequence_ids], device=ids.device)
    reference[0, is_word] = tokenizer.pad_token_id

    def forward(input_ids, token_type_ids, attention_mask):
        with autocast(encoder.device, encoder.bf16):
            out = model(input_ids=input_ids, token_type_ids=token_type_ids, attention_mask=attention_mask)
        return out.logits[:, 0].float()

    extra = (encoded["token_type_ids"], encoded["attention_mask"])
    integrated = LayerIntegratedGradients(forward, model.base_model.embeddings)
    attributions, delta = integrated.attribute(
        inputs=ids, baselines=reference, additional_forward_args=extra, n_steps=steps,
        internal_batch_size=steps, return_convergence_delta=True,
    )  # fmt: skip
    per_token = attributions.sum(dim=-1)[0].float().tolist()
    with torch.inference_mode():
        both = forward(torch.cat([ids, reference]), *(t.repeat(2, 1) for t in extra))
    score, reference_score = both.tolist()
    return PairAttribution(
        score=score,
        reference_score=reference_score,
        query=_words(query, 0, per_token, offsets, sequence_ids, word_ids),
        document=_words(text, 1, per_token, offsets, sequence_ids, word_ids),
        steps=steps,
        convergence_delta=float(delta[0]),
        truncated=full_length > encoder.max_length,
        seconds=time.perf_counter() - started,
    )


def _words(text, sequence, per_token, offsets, sequence_ids, word_ids) -> tuple[WordAttribution, ...]:
    """Word pieces of one side of the pair, summed into the words they came from."""
    spans: dict[int, list] = {}
    for score, (start, end), seq, word in zip(per_token, offsets, sequence_ids, word_ids, strict=True):
        if seq != sequence or word is None:
            continue
        span = spans.setdefault(word, [start, end, 0.0])
        span[0], span[1], span[2] = min(span[0], start), max(span[1], end), span[2] + score
    return tuple(WordAttribution(text[s:e], s, e, score) for s, e, score in (spans[w] for w in sorted(spans)))
