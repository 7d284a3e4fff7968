"""The BERT cross-encoder: reads a query and a document together and scores their relevance."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from bertsearch.indexer.batching import token_bounded_batches
from bertsearch.indexer.models import (
    Precision,
    autocast,
    check_batching,
    resolve_device,
    resolve_model,
    use_bf16,
)
from bertsearch.ranker.model_dir import ModelRecord

RERANK_STAGE = "rerank"


class UntrainedRerankerError(ValueError):
    """The model has no trained relevance head, so its scores would be noise."""


class CrossEncoder:
    """BERT sequence classification with one output, in Hugging Face ``save_pretrained`` format.

    ``load()`` refuses a checkpoint without a trained one-logit head (a plain BERT or a bi-encoder
    such as MiniLM) unless ``allow_untrained_head=True``, which only training uses.
    Scores are raw logits: higher is more relevant; compare them within one query.

    A model folder written by ``bertsearch train`` carries ``metadata.json``
    (:class:`~bertsearch.ranker.model_dir.ModelRecord`); from it come the ``max_length`` it was
    trained with (unless one is given here), ``rerank_weight``, the weight of its score against
    the retrieval score that was tuned on a dev split (1.0 when the file does not say: the
    reranker alone decides), and ``rerank_top_n``, the number of fused candidates that weight was
    tuned on (50 when the file does not say).
    """

    def __init__(
        self,
        model: str | Path | None,
        *,
        max_length: int | None = None,
        batch_size: int = 64,
        max_batch_tokens: int = 2048,
        device: str | None = None,
        precision: Precision = "auto",
        allow_untrained_head: bool = False,
    ) -> None:
        self.model_path = resolve_model(model)
        self.record = ModelRecord.read(self.model_path) or ModelRecord()
        if max_length is None:
            max_length = self.record.max_length
        check_batching(max_length, batch_size)
        self.max_length = max_length
        self.rerank_weight = self.record.serving_weight
        self.rerank_top_n = self.record.serving_top_n
        self.batch_size = batch_size
        if max_batch_tokens < max_length:
            raise ValueError(
                f"max_batch_tokens ({max_batch_tokens}) must hold one pair of max_length {max_length}"
            )
        self.max_batch_tokens = max_batch_tokens
        self.device = resolve_device(device)
        self.bf16 = use_bf16(precision, self.device)
        self.allow_untrained_head = allow_untrained_head
        self.model = None
        self.tokenizer = None

    def load(self) -> CrossEncoder:
        from transformers import AutoModelForSequenceClassification, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        verbosity = hf_logging.get_verbosity()
        hf_logging.set_verbosity_error()  # our own check below says more than the "newly initialized" note
        try:
            model, info = AutoModelForSequenceClassification.from_pretrained(
                self.model_path, num_labels=1, output_loading_info=True
            )
        finally:
            hf_logging.set_verbosity(verbosity)
        missing_head = any(key.startswith(("classifier.", "score.")) for key in info["missing_keys"])
        if missing_head and not self.allow_untrained_head:
            raise UntrainedRerankerError(
                f"{self.model_path!r} has no trained relevance head (its classifier weights are missing), "
                "so its scores would be random. Train one with `bertsearch train` and pass its output folder."
            )
        self.tokenizer = AutoTokenizer.from_pretrained(self.model_path)
        self.model = model.to(self.device).eval()
        return self

    def score(self, query: str, texts: Sequence[str]) -> np.ndarray:
        """Relevance of each text to ``query`` (float32, input order)."""
        return self.score_pairs([(query, text) for text in texts])

    def score_pairs(self, pairs: Sequence[tuple[str, str]]) -> np.ndarray:
        """Relevance of each (query, text) pair, tokenized once and scored in batches of similar
        token length (at most ``batch_size`` pairs and ``max_batch_tokens`` padded tokens each)."""
        if self.model is None:
            raise RuntimeError("CrossEncoder.load() must be called before scoring")
        out = np.zeros(len(pairs), dtype=np.float32)
        if not pairs:
            return out
        encoded = self._tokenize(pairs)
        lengths = [len(ids) for ids in encoded["input_ids"]]
        with torch.inference_mode(), autocast(self.device, self.bf16):
            for batch in token_bounded_batches(lengths, self.batch_size, self.max_batch_tokens):
                features = self.tokenizer.pad(
                    {key: [values[i] for i in batch] for key, values in encoded.items()}, return_tensors="pt"
                ).to(self.device)
                out[batch] = self.model(**features).logits[:, 0].float().cpu().numpy()
        return out

    def _tokenize(self, pairs: Sequence[tuple[str, str]], **padding):
        return self.tokenizer(
            [q for q, _ in pairs],
            [t for _, t in pairs],
            truncation="longest_first",
            max_length=self.max_length,
            **padding,
        )

    def logits(self, pairs: Sequence[tuple[str, str]]) -> torch.Tensor:
        """The model's raw output for a batch of pairs (with gradients when not in inference mode)."""
        encoded = self._tokenize(pairs, padding=True, return_tensors="pt").to(self.device)
        return self.model(**encoded).logits[:, 0]

