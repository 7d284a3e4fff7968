"""Training orchestration on Ray Train: the train job, the Ray fit and its workers, the per-epoch
dev evaluation, the mined groups kept for resuming, and epoch averaging."""
