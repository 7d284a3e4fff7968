"""Domain-adaptive pre-training: BERT's masked-language-model objective on a corpus, without Ray.

``jobs.training.pretrain`` runs it on Ray Train workers (DDP). The corpus becomes token chunks
(:func:`chunk_documents`: title + text cut into windows of ``max_length`` tokens, so a long
document is read whole, not truncated). Each epoch a seeded permutation of the chunks is cut into
equal shards per worker; every batch is masked by transformers' ``DataCollatorForLanguageModeling``
(15 % of the tokens, BERT's 80/10/10 rule) under a seed of its own, and the loss on the masked
positions is back-propagated under ``ranker.training.loop``'s AdamW and warm-up + linear-decay
schedule. As in that loop, all randomness is seeded from ``seed``, the epoch, the step and the
rank, so a run resumed from an epoch's checkpoint ends with the weights of one never interrupted.

The folder written (:func:`save_mlm_model`) is a ``save_pretrained`` masked-LM checkpoint that
also keeps the base encoder's pooler, which the MLM head does not use: the cross-encoder's
classification head reads the pooled output, so fine-tuning from this folder
(``bertsearch train --base-model``) starts from the pooler the base model had, not a random one.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bertsearch.indexer.documents import Document
from bertsearch.indexer.models import Precision, autocast, use_bf16
from bertsearch.ranker.training.loop import (
    MODEL_SUBDIR,
    Shard,
    check_training_settings,
    epoch_order,
    sum_across_workers,
)

log = logging.getLogger(__name__)
IGNORE_INDEX = -100  # the label of a position the loss skips (transformers' convention)


@dataclass(frozen=True)
class PretrainConfig:
    """Hyper-parameters of one masked-LM run (per worker unless said otherwise).

    ``batch_size``: chunks per worker per optimizer step (the effective batch is that times the
    number of workers). ``max_length``: tokens per chunk, [CLS] and [SEP] included.
    ``head_learning_rate``: the masked-LM head's rate (None: ``learning_rate``). A model without
    masked-LM weights (the packaged MiniLM) starts that head fresh, and at an encoder's rate it
    learns little in a short run while its errors flow into the encoder.
    ``mlm_probability``: share of a chunk's tokens that are masked and predicted.
    ``max_steps_per_epoch`` caps an epoch (smoke runs). ``kill_after_epoch`` makes every worker
    SIGKILL itself right after that epoch's checkpoint: it exists to test resuming, and is not a
    hyper-parameter.
    """

    base_model: str | None = None
    max_length: int = 256
    epochs: int = 1
    batch_size: int = 16
    learning_rate: float = 5e-5
    head_learning_rate: float | None = None
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    max_grad_norm: float = 1.0
    mlm_probability: float = 0.15
    precision: Precision = "auto"
    seed: int = 13
    max_steps_per_epoch: int | None = None
    log_every: int = 20
    kill_after_epoch: int | None = None

    def __post_init__(self) -> None:
        check_training_settings(self, ("epochs", "batch_size", "log_every"))
        if not 0 < self.mlm_probability < 1:
            raise ValueError(f"mlm_probability must be in (0, 1), got {self.mlm_probability}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def hyperparameters(self) -> dict[str, Any]:
        """What decides the weights: a resumed run must match these (not logging, not test hooks)."""
        # head_learning_rate only when set, so runs from before it existed still match theirs
        unset = {"head_learning_rate"} if self.head_learning_rate is None else set()
        return {k: v for k, v in self.to_dict().items() if k not in {"log_every", "kill_after_epoch", *unset}}


@dataclass(frozen=True)
class TokenChunks:
    """A corpus as token-id windows, each with its special tokens ([CLS] ... [SEP]), stored flat:
    chunk ``i`` is ``ids[offsets[i]:offsets[i + 1]]`` (one array, cheap to hand to Ray workers)."""

    ids: np.ndarray  # int32
    offsets: np.ndarray  # int64, one more than there are chunks
    documents: int  # documents read, including any too short to make a chunk

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, index: int) -> np.ndarray:
        return self.ids[self.offsets[index] : self.offsets[index + 1]]

    @property
    def tokens(self) -> int:
        return int(len(self.ids))


def chunk_documents(
    documents: Iterable[Document], tokenizer, max_length: int, *, batch_size: int = 256
) -> TokenChunks:
    """Each document's title + text (``Document.body``) as consecutive windows of at most
    ``max_length`` tokens with the tokenizer's special tokens, in corpus order: every token of a
    document is in exactly one of its chunks. Documents are tokenized ``batch_size`` at a time."""
    before, after = _special_wrapping(tokenizer)
    room = max_length - len(before) - len(after)
    if room < 1:
        raise ValueError(f"max_length {max_length} leaves no room for text between the special tokens")
    pieces: list[np.ndarray] = []
    lengths = [0]
    documents = iter(documents)
    count = 0
    while batch := list(islice(documents, batch_size)):
        count += len(batch)
        # verbose=False: a document longer than the model's limit is expected here (it is cut below)
        encoded = tokenizer([d.body for d in batch], add_special_tokens=False, verbose=False)["input_ids"]
        for ids in encoded:
            for start in range(0, len(ids), room):
                chunk = [*before, *ids[start : start + room], *after]
                pieces.append(np.asarray(chunk, dtype=np.int32))
                lengths.append(len(chunk))
    return TokenChunks(
        ids=np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.int32),
        offsets=np.cumsum(lengths, dtype=np.int64),
        documents=count,
    )


def _special_wrapping(tokenizer) -> tuple[list[int], list[int]]:
    """The special token ids the tokenizer puts before and after one text ([CLS] and [SEP] for BERT)."""
    bare = tokenizer("a", add_special_tokens=False)["input_ids"]
    full = tokenizer("a")["input_ids"]
    for start in range(len(full) - len(bare) + 1):
        if full[start : start + len(bare)] == bare:
            return full[:start], full[start + len(bare) :]
    raise ValueError("cannot tell where this tokenizer puts its special tokens")


def masking(tokenizer, mlm_probability: float):
    """transformers' masked-LM collator: pads a batch of chunks, masks ``mlm_probability`` of the
    tokens that are not special (80 % become [MASK], 10 % a random token, 10 % stay), and labels
    the masked positions with their original ids, every other position with -100."""
    from transformers import DataCollatorForLanguageModeling

    return DataCollatorForLanguageModeling(tokenizer, mlm_probability=mlm_probability, return_tensors="pt")


def mask_batch(collator, chunks: Sequence[Sequence[int]], seed: int) -> dict[str, torch.Tensor]:
    """``chunks`` padded and masked by ``collator`` under ``seed``: the same seed, the same masks.

    The collator draws from torch's global generator; it runs on a forked one here, so masking
    neither depends on nor disturbs the dropout randomness of training.
    """
    features = [{"input_ids": [int(t) for t in chunk]} for chunk in chunks]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return dict(collator(features))


def batch_seed(seed: int, epoch: int, step: int, rank: int) -> int:
    """The masking seed of one batch: distinct per (epoch, step, rank), the same on a resumed run."""
    return int(np.random.SeedSequence([seed, epoch, step, rank]).generate_state(1)[0])


def mlm_steps_per_epoch(chunks: int, workers: int, config: PretrainConfig) -> int:
    """Optimizer steps in one epoch; raises ValueError when there are too few chunks for one."""
    per_step = workers * config.batch_size
    steps = chunks // per_step
    if steps < 1:
        raise ValueError(
            f"{chunks} chunks cannot fill one step of {per_step} ({workers} workers x "
            f"{config.batch_size} chunks per batch); lower --batch-size/--workers or give more documents"
        )
    if config.max_steps_per_epoch is not None:
        steps = min(steps, config.max_steps_per_epoch)
    return steps


@contextlib.contextmanager
def _quiet_transformers() -> Iterator[None]:
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # our own log line says which weights are new
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)


def load_mlm_model(weights: str | Path) -> tuple[torch.nn.Module, list[str]]:
    """The masked-LM model of ``weights`` (a folder or hub id) and the names of the weights it
    lacked, newly initialised (a sentence encoder such as the packaged MiniLM has no MLM head:
    its transform and bias start fresh, the decoder is tied to the word embeddings)."""
    from transformers import AutoModelForMaskedLM

    with _quiet_transformers():
        model, info = AutoModelForMaskedLM.from_pretrained(str(weights), output_loading_info=True)
    return model, sorted(info["missing_keys"])


def encoder_extras(weights: str | Path, model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The weights of ``weights``' encoder that the masked-LM ``model`` has no place for (BERT's
    pooler), named as in a full checkpoint (``bert.pooler.dense.weight``), for
    :func:`save_mlm_model` to keep. Weights the encoder itself lacked are not kept."""
    from transformers import AutoModel

    with _quiet_transformers():
        encoder, info = AutoModel.from_pretrained(str(weights), output_loading_info=True)
    has = set(model.base_model.state_dict())
    fresh = set(info["missing_keys"])
    return {
        f"{model.base_model_prefix}.{name}": tensor.detach().cpu().clone()
        for name, tensor in encoder.state_dict().items()
        if name not in has and name not in fresh
    }


def save_mlm_model(
    folder: str | Path, model: torch.nn.Module, tokenizer, extras: dict[str, torch.Tensor]
) -> Path:
    """Write ``folder/model``: the masked-LM weights plus ``extras`` (``save_pretrained`` format,
    fp32 bit for bit) and the tokenizer; returns that folder."""
    model_dir = Path(folder) / MODEL_SUBDIR
    model.save_pretrained(model_dir, state_dict={**model.state_dict(), **extras})
    tokenizer.save_pretrained(model_dir)
    return model_dir


class MaskedLMObjective(torch.nn.Module):
    """The masked-LM loss of a batch, with the vocabulary projection run on the masked positions
    only: for BERT's MLM head (hidden x 30k words) that projection costs about as much as the
    whole encoder per token, and 85 % of the positions carry no label. Wrap this module, not the
    model, in DDP, so that the gradients of every call are synchronised."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask, labels) -> torch.Tensor:
        selected = labels != IGNORE_INDEX
        head = getattr(self.model, "cls", None)  # BertForMaskedLM's MLM head
        if head is None:  # another architecture: its own full forward pass
            output = self.model(input_ids=input_ids, attention_mask=attention_mask, labels=labels)
            return output.loss if bool(selected.any()) else output.logits.sum() * 0.0
        hidden = self.model.base_model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        if not bool(selected.any()):  # still use every parameter: DDP waits for each one's gradient
            return head(hidden[:1, :1]).sum() * 0.0
        logits = head(hidden[selected])
        return torch.nn.functional.cross_entropy(logits.float(), labels[selected])


# Long: one loop over the steps of an epoch, with the loss, token and timing bookkeeping beside it.
def run_mlm_epoch(
    objective: torch.nn.Module,
    collator,
    chunks: TokenChunks,
    config: PretrainConfig,
    optimizer,
    scheduler,
    *,
    epoch: int,
    steps: int,
    shard: Shard,
) -> dict[str, Any]:
    """Train one epoch on this worker's shard of ``chunks``; returns the epoch's record: the
    masked-LM loss (mean over every masked token of all workers), steps, chunks, tokens (not
    padding) and masked tokens of all workers, seconds, tokens/s. ``objective`` is a
    :class:`MaskedLMObjective`, possibly inside DistributedDataParallel."""
    torch.manual_seed(config.seed * 1_000_003 + epoch * 101 + shard.rank)  # dropout of this epoch and rank
    order = epoch_order(len(chunks), config.seed, epoch)
    bf16 = use_bf16(config.precision, shard.device)
    objective.train()
    started = time.perf_counter()
    loss_sum, masked, tokens = 0.0, 0, 0
    for step in range(steps):
        first = (step * shard.world + shard.rank) * config.batch_size
        batch = mask_batch(
            collator,
            [chunks[i] for i in order[first : first + config.batch_size]],
            batch_seed(config.seed, epoch, step, shard.rank),
        )
        batch = {key: value.to(shard.device) for key, value in batch.items()}
        with autocast(shard.device, bf16):
            loss = objective(batch["input_ids"], batch["attention_mask"], batch["labels"])
        loss.backward()
        torch.nn.utils.clip_grad_norm_(objective.parameters(), config.max_grad_norm)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        batch_masked = int((batch["labels"] != IGNORE_INDEX).sum())
        loss_sum += float(loss.detach()) * batch_masked
        masked += batch_masked
        tokens += int(batch["attention_mask"].sum())
        if shard.rank == 0 and (step + 1) % config.log_every == 0:
            rate = tokens * shard.world / (time.perf_counter() - started)
            print(
                f"[pretrain] epoch {epoch} step {step + 1}/{steps} mlm loss {loss_sum / max(1, masked):.4f} "
                f"lr {scheduler.get_last_lr()[0]:.2e} ~{rate:.0f} tokens/s",
                flush=True,
            )
    seconds = time.perf_counter() - started
    loss_total, masked_total, tokens_total = sum_across_workers([loss_sum, masked, tokens], shard.device)
    return {
        "epoch": epoch,
        "mlm_loss": loss_total / masked_total if masked_total > 0 else math.nan,
        "steps": steps,
        "chunks": steps * config.batch_size * shard.world,
        "tokens": int(tokens_total),
        "masked_tokens": int(masked_total),
        "train_seconds": round(seconds, 3),
        "tokens_per_s": round(tokens_total / seconds, 1),
    }


def check_max_length(weights: str | Path, max_length: int) -> None:
    """Refuse a chunk length the model has no position embeddings for (ValueError)."""
    from transformers import AutoConfig

    positions = getattr(AutoConfig.from_pretrained(str(weights)), "max_position_embeddings", None)
    if positions is not None and max_length > positions:
        raise ValueError(f"--max-length {max_length} is more than the {positions} positions the model has")
