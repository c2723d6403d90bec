"""The shared attention core: torch only, no domain words.

- :func:`attend` — the single attention entry point (scores, masks, normalisers,
  top-k, local windows, dropout).
- :func:`sparsemax`, :func:`entmax15` — sparse normalisers with exact zeros.
- :class:`MultiHeadAttention` — per-head projections of any size on :func:`attend`.
- positional encodings and attention diagnostics.
"""

from .attend import NORMALIZERS, SCORES, attend
from .diagnostics import active_count, attention_entropy, coverage, head_output_share
from .multihead import MultiHeadAttention
from .positional import (
    LearnedPositionalEmbedding,
    RelativePositionBias,
    periodic_encoding,
    sincos_2d_encoding,
    sinusoidal_encoding,
    sinusoidal_encoding_at,
)
from .scores import AdditiveScore, BilinearScore, CosineScore, bilinear_scores, cosine_scores, dot_scores
from .sparsemax import entmax15, sparsemax

__all__ = [
    "attend", "SCORES", "NORMALIZERS", "sparsemax", "entmax15",
    "AdditiveScore", "BilinearScore", "CosineScore", "dot_scores", "cosine_scores", "bilinear_scores",
    "MultiHeadAttention", "attention_entropy", "coverage", "head_output_share", "active_count",
    "sinusoidal_encoding", "sinusoidal_encoding_at", "periodic_encoding", "sincos_2d_encoding",
    "LearnedPositionalEmbedding", "RelativePositionBias",
]
