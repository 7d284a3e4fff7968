"""The one place a user's mistake becomes a one-line message and exit status 2 (see ``main``)."""

from __future__ import annotations

from bertsearch.indexer.corpus import CorpusError
from bertsearch.indexer.snapshot import ModelMismatchError
from bertsearch.indexer.versions import IndexBusyError, IndexNotFoundError
from bertsearch.ranker.cross_encoder import UntrainedRerankerError


class UserError(Exception):
    """A mistake the user can fix, raised by the command line itself; printed without a traceback."""


# Errors whose message already says what to change. Domain code raises these (ValueError for a
# setting out of range, FileNotFoundError for a missing input); only the command line maps them.
USER_ERRORS = (
    UserError,
    CorpusError,
    IndexNotFoundError,
    ModelMismatchError,
    UntrainedRerankerError,
    ValueError,
    FileNotFoundError,
    IndexBusyError,
)
