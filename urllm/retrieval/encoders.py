"""The user-embedding port of retrieval.

A user encoder is any registered system with ``user_embeddings`` (``graph``, ``sasrec``, the built-in
``svd``: :class:`urllm.retrieval.svd.PureSVD`); :func:`urllm.systems.fitted_embedder` makes the one
``retrieval.encoder`` names.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np

from urllm.data.schema import Record


class UserEmbedder(Protocol):
    """The user-embedding port: the domain view of each record's user, from its history only."""

    def user_embeddings(self, records: Sequence[Record], domain: int) -> np.ndarray:
        """(len(records), D) float32."""
