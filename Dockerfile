# syntax=docker/dockerfile:1
# The bertsearch query service (and CLI), CPU only.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# The CPU build of torch first, from PyTorch's CPU index: `pip install .` then finds torch
# satisfied instead of pulling the far larger CUDA build from PyPI. Its own layer, so code
# changes do not download it again.
RUN --mount=type=cache,target=/root/.cache/pip \
    pip install --index-url https://download.pytorch.org/whl/cpu torch==2.13.0

COPY . .
RUN --mount=type=cache,target=/root/.cache/pip \
    pip install ".[cpu]" \
    && useradd --create-home --uid 10001 bertsearch \
    && mkdir -p /data/index \
    && chown bertsearch:bertsearch /data/index

USER bertsearch
ENV BERTSEARCH_INDEX_DIR=/data/index
VOLUME ["/data/index"]
EXPOSE 8000

CMD ["bertsearch", "serve", "--index-dir", "/data/index", "--host", "0.0.0.0", "--port", "8000"]
