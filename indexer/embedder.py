"""The bi-encoder: BERT mean pooling + L2 normalisation, for the dense index and its queries."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from bertsearch.indexer.batching import length_sorted_batches
from bertsearch.indexer.models import (
    DEFAULT_MODEL_NAME,
    Precision,
    autocast,
    check_batching,
    resolve_device,
    resolve_model,
    use_bf16,
    weights_fingerprint,
)


class Embedder:
    """Turns texts into unit-length vectors; inner product between them is cosine similarity.

    Cheap to construct; ``load()`` reads the weights. ``model`` is a local folder or a Hugging
    Face id, ``None`` for the packaged MiniLM. Texts are cut to ``max_length`` tokens.
    """

    def __init__(
        self,
        model: str | Path | None = None,
        *,
        max_length: int = 256,
        batch_size: int = 32,
        device: str | None = None,
        precision: Precision = "auto",
    ) -> None:
        check_batching(max_length, batch_size)
        self.model_path = resolve_model(model)
        self.model_name = str(model) if model is not None else DEFAULT_MODEL_NAME
        self.max_length = max_length
        self.batch_size = batch_size
        self.device = resolve_device(device)
        self.precision = precision
        self.bf16 = use_bf16(precision, self.device)
        self._model = None
        self._tokenizer = None

    def load(self) -> Embedder:
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        self._tokenizer = AutoTokenizer.from_pretrained(self.model_path)
        self._model = AutoModel.from_pretrained(self.model_path).to(self.device).eval()
        return self

    @property
    def loaded(self) -> bool:
        return self._model is not None

    @property
    def dim(self) -> int:
        self._require_loaded()
        return int(self._model.config.hidden_size)

    def fingerprint(self) -> str:
        """Identifies these weights; stored in index manifests."""
        return weights_fingerprint(self.model_path)

    def embed(self, texts: Sequence[str], *, progress: bool = False) -> np.ndarray:
        """A float32 array of shape (len(texts), dim), one unit vector per text, in input order."""
        self._require_loaded()
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        batches = length_sorted_batches([len(t) for t in texts], self.batch_size)
        bar = tqdm(total=len(texts), desc="embedding", unit="doc", disable=not progress)
        with torch.inference_mode(), autocast(self.device, self.bf16):
            for batch in batches:
                out[batch] = self._embed_batch([texts[i] for i in batch])
                bar.update(len(batch))
        bar.close()
        return out

    def _embed_batch(self, texts: list[str]) -> np.ndarray:
        encoded = self._tokenizer(
            texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
        ).to(self.device)
        hidden = self._model(**encoded).last_hidden_state.float()
        mask = encoded["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
        return torch.nn.functional.normalize(pooled, dim=-1).cpu().numpy()

    def _require_loaded(self) -> None:
        if self._model is None:
            raise RuntimeError("Embedder.load() must be called before embedding")
