"""Fine-tuning the cross-encoder: training examples, hard-negative mining, pseudo-queries, losses, loop.

Nothing here starts Ray or reads a dataset folder: ``jobs.training`` does that and hands these
pieces plain data (queries, judgments, a loaded SearchPipeline).
"""
